"""The learning-rate schedule: linear warmup, then a cosine decay to a floor over the steps of the run.

Without a time budget the run's length is known (``max_epochs``) and the decay spans its steps. Under a
time budget (``max_time``) it is not, so the run plans it (``BudgetPlan``): it measures its pace (seconds
per epoch, validation included) over the first validation cycle after a tenth of the budget, fixes the
number of whole validation cycles that fit, and stops there. The decay follows the plan's steps rather
than the clock, so runs that plan the same epochs take the same steps at the same learning rates and end
with the same weights (two runs of one recipe no longer part because their clocks differ by a second).
The clock only steps in when a run falls far behind its plan (the machine slowed down), so that the
decay still ends at ``max_time``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

#: the share of the budget spent before the run measures its pace: the first epochs are slower (caches,
#: allocator warmup), and a longer measurement is a steadier one
PLAN_AFTER = 0.1
#: the share of the budget the plan fills: room for epochs a little slower than the measured ones
PLAN_MARGIN = 0.98
#: without a plan, the decay follows the clock over the budget's second half (a run too short to plan)
CLOCK_WITHOUT_PLAN = 0.5
#: with a plan, the clock takes over only in the budget's last tenth, and only if the steps lag behind it
CLOCK_WITH_PLAN = 0.9


def lr_multiplier(step: int, warmup_steps: int, total_steps: float, min_ratio: float, floor: float = 0.0) -> float:
    """LR multiplier after ``step`` optimizer steps: linear warmup over ``warmup_steps``, then cosine decay
    to ``min_ratio`` at ``total_steps``. The decay's progress is at least ``floor`` (the clock's share, under
    a time budget). Warmup counts steps only; with an unknown (infinite) number of steps and no floor the
    multiplier stays at 1 after warmup."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = 0.0
    if math.isfinite(total_steps):  # a run no longer than its warmup ends the decay with it
        progress = (step - warmup_steps) / (total_steps - warmup_steps) if total_steps > warmup_steps else 1.0
    progress = min(1.0, max(progress, floor))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def warmup_cosine(
    warmup_steps: int,
    total_steps: float | Callable[[], float],
    min_ratio: float,
    floor: Callable[[], float] | None = None,
) -> Callable[[int], float]:
    """``lr_multiplier`` as LambdaLR's function of the step. ``total_steps`` may be a function, read at each
    step (a budgeted run's plan); so is ``floor``, the least progress of the decay (``BudgetPlan.floor``)."""

    def schedule(step: int) -> float:
        total = total_steps() if callable(total_steps) else total_steps
        return lr_multiplier(step, warmup_steps, total, min_ratio, floor() if floor is not None else 0.0)

    return schedule


def clock_share(elapsed_s: float, budget_s: float, start: float) -> float:
    """The decay's progress by the clock when it takes over at ``start`` of the budget: 0 until then, 1 when
    the budget is spent."""
    return max(0.0, (elapsed_s / budget_s - start) / (1 - start))


@dataclass
class BudgetPlan:
    """The epochs a run under a time budget trains, planned from its measured pace.

    Call ``update`` after every epoch (its validation included). Plans end on a validated epoch
    (``every``: the validation interval), so the last epoch is one the checkpoints can choose, unless
    ``max_epochs`` (the user's own limit) ends the run first.

    Args:
        budget_s: the time budget (``max_time``) in seconds.
        every: epochs per validation cycle.
        max_epochs: the trainer's limit; -1 for none.
        total_steps: optimizer steps until ``max_epochs`` (infinite without it): the decay's length until
            the plan is made.

    A plan of ``n`` epochs decays over ``n`` times the steps of an epoch as ``total_steps`` counts them (the
    same in every run of a recipe), not as measured: with a length-budget sampler and speed perturbation
    the batches of an epoch vary a little, and a measured count would make the decay, and so the weights,
    depend on the epoch at which the plan was made.
    """

    budget_s: float
    every: int
    max_epochs: int
    total_steps: float
    epochs: int | None = None  # the plan: the epochs the run trains, once made
    since: tuple[int, float] | None = None  # (epochs done, seconds) where the measured pace starts
    epoch_steps: float | None = field(init=False)  # optimizer steps per epoch, from total_steps and max_epochs

    def __post_init__(self) -> None:
        finite = self.max_epochs > 0 and math.isfinite(self.total_steps)
        self.epoch_steps = self.total_steps / self.max_epochs if finite else None

    def floor(self, elapsed_s: float) -> float:
        """The least progress of the decay after ``elapsed_s`` seconds of training."""
        return clock_share(elapsed_s, self.budget_s, CLOCK_WITHOUT_PLAN if self.epochs is None else CLOCK_WITH_PLAN)

    def update(self, epochs_done: int, elapsed_s: float, steps_done: int) -> str | None:
        """After an epoch: make the plan, or shorten it when the run has fallen behind it. Returns a line
        for the log when the plan changed."""
        if epochs_done % self.every or epochs_done == 0:
            return None
        if self.since is None or (self.epochs is None and elapsed_s < PLAN_AFTER * self.budget_s):
            self.since = (epochs_done, elapsed_s)  # the pace is measured from here on
            return None
        pace = (elapsed_s - self.since[1]) / (epochs_done - self.since[0])
        if self.epochs is not None and elapsed_s + (self.epochs - epochs_done) * pace <= self.budget_s:
            return None  # on plan
        # At least one more cycle: a plan that stopped here would end the run early with its learning rate
        # barely decayed; if that cycle does not fit, the Timer stops it and the clock ends the decay.
        cycles = max(1, math.floor((PLAN_MARGIN * self.budget_s - elapsed_s) / (pace * self.every)))
        epochs = epochs_done + cycles * self.every
        if self.max_epochs >= 0:
            epochs = min(epochs, self.max_epochs)
        if self.epochs is not None:
            epochs = min(epochs, self.epochs)  # only ever shortened: the decay never moves back
        made = self.epochs is None
        self._plan(epochs, steps_done / epochs_done)
        return (
            f"time budget: {'planned' if made else 'behind plan, now'} {epochs} epochs "
            f"({pace:.1f} s each, validation included; {elapsed_s:.0f} s of {self.budget_s:.0f} s spent after "
            f"{epochs_done}): the learning rate decays over {self.total_steps} steps"
        )

    def _plan(self, epochs: int, measured_epoch_steps: float) -> None:
        """Fix the plan at ``epochs``; the decay spans their steps (as counted at the start when it can)."""
        self.epochs = epochs
        per_epoch = self.epoch_steps if self.epoch_steps is not None else measured_epoch_steps
        self.total_steps = round(per_epoch * epochs)

    def state_dict(self) -> dict[str, Any]:
        """The plan for a checkpoint (plain values): a resumed run keeps it."""
        return {
            "budget_s": self.budget_s,
            "epochs": self.epochs,
            "since": list(self.since) if self.since else None,
            "total_steps": self.total_steps,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume a saved plan under this run's settings: the same budget keeps it (cut to a smaller
        ``max_epochs``); another budget plans again from the pace measured so far, at the next validation."""
        self.since = (int(state["since"][0]), float(state["since"][1])) if state["since"] else None
        if state.get("budget_s", self.budget_s) != self.budget_s or state["epochs"] is None:
            return  # this run's own total_steps (by max_epochs) until the new plan
        epochs = state["epochs"] if self.max_epochs < 0 else min(state["epochs"], self.max_epochs)
        self._plan(epochs, float(state["total_steps"]) / state["epochs"])
