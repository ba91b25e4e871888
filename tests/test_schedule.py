"""The learning-rate schedule: step-based warmup and cosine decay; under a time budget, over the epochs
planned from the measured pace, with the clock as a safety net."""

import io
import math
import random

import pytest
import torch

from recognizer.schedule import BudgetPlan, lr_multiplier, warmup_cosine

WARMUP, TOTAL, MIN = 10, 1000, 0.02


def cosine(progress: float) -> float:
    return MIN + (1 - MIN) * 0.5 * (1 + math.cos(math.pi * progress))


def test_without_a_budget_the_schedule_follows_the_steps():
    schedule = warmup_cosine(WARMUP, TOTAL, MIN)
    assert schedule(0) == pytest.approx(1 / WARMUP) and schedule(WARMUP - 1) == 1.0  # linear warmup
    assert schedule(WARMUP) == 1.0
    midway = (WARMUP + TOTAL) // 2
    assert schedule(midway) == pytest.approx(cosine(0.5), abs=1e-3)
    assert schedule(TOTAL) == pytest.approx(MIN) and schedule(2 * TOTAL) == pytest.approx(MIN)
    assert warmup_cosine(WARMUP, math.inf, MIN)(10**6) == 1.0  # unknown length: no decay


def test_the_floor_moves_the_decay_on_but_not_the_warmup():
    step = WARMUP + 20  # 2 % of the steps
    assert lr_multiplier(step, WARMUP, TOTAL, MIN, floor=0.5) == pytest.approx(cosine(0.5))
    assert lr_multiplier(step, WARMUP, TOTAL, MIN, floor=1.3) == pytest.approx(MIN)  # stays at the end
    assert lr_multiplier(TOTAL, WARMUP, TOTAL, MIN, floor=0.1) == pytest.approx(MIN)  # steps ahead: they decide
    assert lr_multiplier(step, WARMUP, math.inf, MIN, floor=1.0) == pytest.approx(MIN)
    assert [lr_multiplier(s, WARMUP, TOTAL, MIN, floor=1.0) for s in range(WARMUP)] == pytest.approx(
        [(s + 1) / WARMUP for s in range(WARMUP)]
    )
    total = [TOTAL]
    schedule = warmup_cosine(WARMUP, lambda: total[0], MIN)  # read at each step: a plan that changes
    assert schedule(TOTAL // 2) > MIN
    total[0] = TOTAL // 2
    assert schedule(TOTAL // 2) == pytest.approx(MIN)


def simulate(
    epoch_seconds: list[float],
    budget_s: float = 100.0,
    every: int = 2,
    max_epochs: int = 1000,
    steps: int = 10,
    validation_s: float = 0.0,
) -> tuple[list[float], BudgetPlan, float]:
    """A budgeted run as Lightning drives it: LambdaLR steps, the Timer stops at the budget, the plan is
    updated after every epoch and stops the run at its last epoch. Epoch i's steps take
    ``epoch_seconds[i]`` in all, plus ``validation_s`` at the end of a validated epoch.
    Returns the learning rate after every step, the plan, and the seconds spent."""
    clock = [0.0]
    plan = BudgetPlan(budget_s, every, max_epochs, total_steps=max_epochs * steps)
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=1.0)
    schedule = warmup_cosine(WARMUP, lambda: plan.total_steps, MIN, lambda: plan.floor(clock[0]))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    lrs: list[float] = []
    for epoch, seconds in enumerate(epoch_seconds):
        if plan.epochs is not None and epoch >= plan.epochs:
            break
        for _ in range(steps):
            clock[0] += seconds / steps
            optimizer.step()
            scheduler.step()
            lrs.append(optimizer.param_groups[0]["lr"])
            if clock[0] >= budget_s:  # Lightning's Timer, after a batch
                return lrs, plan, clock[0]
        if (epoch + 1) % every == 0:
            clock[0] += validation_s
        plan.update(epoch + 1, clock[0], (epoch + 1) * steps)
    return lrs, plan, clock[0]


def test_runs_whose_clocks_differ_take_the_same_steps_at_the_same_learning_rates():
    """Two runs of one recipe on machines of the same speed, epochs of 4 s +- 2 %: the same plan, the
    same learning rate at every step, the decay ended on the last step, and within the budget."""
    runs = []
    for seed in (0, 1):
        jitter = random.Random(seed)
        runs.append(simulate([4.0 * (1 + jitter.uniform(-0.02, 0.02)) for _ in range(100)], validation_s=0.5))
    (lrs, plan, spent), (other_lrs, other_plan, other_spent) = runs
    assert plan.epochs == other_plan.epochs and lrs == other_lrs and spent != other_spent
    # measured over epochs 3-4 (after a tenth of the budget): 4.25 s an epoch, 98 s -> 22 epochs
    assert plan.epochs == 22 and plan.epochs % plan.every == 0 and len(lrs) == plan.epochs * 10
    assert lrs[-1] == pytest.approx(MIN, rel=0.01) and spent <= 100.0
    assert all(a >= b for a, b in zip(lrs[WARMUP:], lrs[WARMUP + 1 :]))


def test_the_decay_does_not_depend_on_when_the_plan_was_made():
    """Two runs of a recipe on machines of different speed, whose batches per epoch vary (a length-budget
    sampler with speed perturbation): one plans after 8 epochs, the other after 10. When both plan all of
    max_epochs, the decay keeps the length counted at the start, so their learning rates never differ."""
    first, second = (BudgetPlan(1740.0, 2, 60, total_steps=60 * 37) for _ in range(2))
    first.since, second.since = (6, 160.0), (8, 170.0)
    first.update(8, 212.0, 8 * 37 - 3)
    second.update(10, 211.0, 10 * 37 + 2)
    assert first.epochs == second.epochs == 60 and first.total_steps == second.total_steps == 60 * 37
    third = BudgetPlan(1740.0, 2, 60, total_steps=60 * 37)  # a slower machine: fewer epochs, same steps each
    third.since = (6, 300.0)
    third.update(8, 400.0, 8 * 37 + 5)
    assert third.epochs == 34 and third.total_steps == 34 * 37  # 8 + 2 x (1705 - 400) s // 100 s per cycle


def test_a_run_that_slows_down_shortens_its_plan_and_still_ends_the_decay():
    # 4 s epochs until the plan, then 6 s: 22 epochs would take 128 s of a 100 s budget
    lrs, plan, spent = simulate([4.0] * 6 + [6.0] * 100)
    assert plan.epochs is not None and plan.epochs < 22 and plan.epochs % 2 == 0
    assert lrs[-1] == pytest.approx(MIN, abs=0.01) and spent <= 100.0
    # and one that slows down within its last epochs: the clock takes over and ends the decay at max_time
    lrs, plan, spent = simulate([4.0] * 20 + [40.0] * 10)
    assert spent == pytest.approx(100.0, abs=0.5) and lrs[-1] == pytest.approx(MIN, abs=0.01)


def test_a_budget_too_short_to_plan_decays_by_the_clock_over_its_second_half():
    # the second validated epoch, which would end the pace measurement, ends after the budget
    lrs, plan, spent = simulate([45.0] * 5, steps=100)
    assert plan.epochs is None and spent == pytest.approx(100.0, abs=0.5)
    assert lrs[20] == pytest.approx(1.0)  # after warmup, before half the budget: the peak
    assert lrs[-1] == pytest.approx(MIN, abs=0.01)


def test_a_cycle_too_long_for_another_still_spends_the_budget_and_ends_the_decay():
    # the plan is made at 68 s, and no further 34 s cycle fits: the run goes on until the Timer stops it
    lrs, plan, spent = simulate([17.0] * 10, steps=100)
    assert plan.epochs == 6 and spent == pytest.approx(100.0, abs=0.5)
    assert lrs[-1] == pytest.approx(MIN, abs=0.01)


def test_a_run_shorter_than_its_warmup_ends_its_decay_with_it():
    assert lr_multiplier(4, WARMUP, 5, MIN) == pytest.approx(5 / WARMUP)  # warmup is still linear
    assert lr_multiplier(WARMUP, WARMUP, 5, MIN) == pytest.approx(MIN)  # and then no peak: the steps have ended
    assert lr_multiplier(WARMUP, WARMUP, WARMUP, MIN) == pytest.approx(MIN)


def test_max_epochs_that_fit_in_the_budget_are_the_plan():
    lrs, plan, spent = simulate([4.0] * 100, max_epochs=10)
    assert plan.epochs == 10 and len(lrs) == 100 and spent == pytest.approx(40.0)
    assert lrs == pytest.approx([warmup_cosine(WARMUP, 100, MIN)(step) for step in range(1, 101)])


def test_the_plan_survives_a_checkpoint():
    _, plan, _ = simulate([4.0] * 8)
    restored = BudgetPlan(100.0, 2, 1000, total_steps=10000)
    restored.load_state_dict(torch.load(_saved(plan.state_dict()), weights_only=True))
    assert restored == plan


def test_a_resumed_plan_follows_the_new_run_settings():
    _, plan, _ = simulate([4.0] * 8)  # 4 s epochs from epoch 2: 24 epochs planned, 240 steps
    assert plan.epochs == 24 and plan.total_steps == 240
    fewer = BudgetPlan(100.0, 2, 10, total_steps=100)  # resumed with max_epochs 10: the decay ends by then
    fewer.load_state_dict(plan.state_dict())
    assert (fewer.epochs, fewer.total_steps, fewer.since) == (10, 100, plan.since)
    longer = BudgetPlan(200.0, 2, 1000, total_steps=10000)  # resumed with twice the budget: plans again
    longer.load_state_dict(plan.state_dict())
    assert longer.epochs is None and longer.total_steps == 10000 and longer.since == plan.since
    assert longer.update(8, 32.0, 80) is not None and longer.epochs == 48  # (196 - 32) s / 8 s per cycle


def _saved(state: dict) -> io.BytesIO:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return buffer
