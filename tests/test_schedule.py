"""The learning-rate schedule: step-based warmup and cosine decay, following the clock under a time budget."""

import math

import pytest
import torch

from recognizer.lightning_module import lr_multiplier, warmup_cosine

WARMUP, TOTAL, MIN = 10, 1000, 0.02


class FakeClock:
    """Training seconds elapsed, set by the test."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def __call__(self) -> float:
        return self.seconds


def test_without_a_budget_the_schedule_follows_the_steps():
    schedule = warmup_cosine(WARMUP, TOTAL, MIN)
    assert schedule(0) == pytest.approx(1 / WARMUP) and schedule(WARMUP - 1) == 1.0  # linear warmup
    assert schedule(WARMUP) == 1.0
    midway = (WARMUP + TOTAL) // 2
    assert schedule(midway) == pytest.approx(MIN + (1 - MIN) * 0.5 * (1 + math.cos(math.pi * 0.5)), abs=1e-3)
    assert schedule(TOTAL) == pytest.approx(MIN) and schedule(2 * TOTAL) == pytest.approx(MIN)
    assert warmup_cosine(WARMUP, math.inf, MIN)(10**6) == 1.0  # unknown length: no decay


def test_with_a_budget_the_decay_ends_when_the_time_is_up_after_few_steps():
    clock = FakeClock()
    schedule = warmup_cosine(WARMUP, TOTAL, MIN, budget_s=100.0, elapsed=clock)
    step = WARMUP + 20  # 2 % of the steps
    assert schedule(step) == pytest.approx(lr_multiplier(step, 0.0, WARMUP, TOTAL, MIN))  # no time spent yet
    clock.seconds = 50.0  # half the budget: half the decay, whatever the steps say
    assert schedule(step) == pytest.approx(MIN + (1 - MIN) * 0.5, abs=1e-9)
    clock.seconds = 100.0
    assert schedule(step) == pytest.approx(MIN)  # the final learning rate at max_time
    clock.seconds = 130.0  # overrun (the last batch, a validation pass): stays there
    assert schedule(step) == pytest.approx(MIN)
    # Steps ahead of the clock: the steps decide.
    clock.seconds = 1.0
    assert schedule(TOTAL) == pytest.approx(MIN)
    # An unknown number of steps (max_epochs -1): the clock alone.
    clock.seconds = 100.0
    assert warmup_cosine(WARMUP, math.inf, MIN, 100.0, clock)(step) == pytest.approx(MIN)


def test_warmup_counts_steps_only():
    clock = FakeClock()
    clock.seconds = 100.0
    schedule = warmup_cosine(WARMUP, TOTAL, MIN, budget_s=100.0, elapsed=clock)
    assert [schedule(step) for step in range(WARMUP)] == pytest.approx([(s + 1) / WARMUP for s in range(WARMUP)])


def test_lambda_lr_reads_the_clock_at_each_scheduler_step():
    clock = FakeClock()
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=1.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(2, 10**6, MIN, 60.0, clock))
    lrs = []
    for step in range(6):
        clock.seconds = 15.0 * step  # slow steps: the budget runs out after 5 of a million
        optimizer.step()
        scheduler.step()
        lrs.append(optimizer.param_groups[0]["lr"])
    assert lrs[0] == pytest.approx(1.0)  # the end of warmup (step 2 reads the clock at 15 s, 1/4: ~0.85)
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))
    assert lrs[3] > 0.1 and lrs[4] == pytest.approx(MIN) and lrs[5] == pytest.approx(MIN)  # 60 s: the final lr


def test_a_budget_needs_a_clock():
    with pytest.raises(ValueError, match="a time budget needs a clock"):
        warmup_cosine(WARMUP, TOTAL, MIN, budget_s=60.0)
