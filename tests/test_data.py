import itertools
import threading
import time

import numpy as np
import pytest

from recognizer import batching
from recognizer.batching import GPU_STEP_COST, budget_batches, concurrently, forward_batches, length_batches
from recognizer.data import LengthBudgetBatchSampler
from recognizer.decoding import greedy_decode, min_ctc_frames


def test_budget_batches_respect_the_budget():
    lengths = [10, 20, 30, 40, 50, 300]
    batches = budget_batches(range(6), lengths, max_frames=100)
    assert batches == [[0, 1, 2], [3, 4], [5]]  # the over-long item gets a batch of its own
    for batch in batches[:-1]:
        assert len(batch) * max(lengths[i] for i in batch) <= 100


def _cost(batches, lengths, step_cost):
    return sum(max(lengths[i] for i in batch) * (len(batch) + step_cost) for batch in batches)


@pytest.mark.parametrize("step_cost", [0.0, 1.0, 4.0, GPU_STEP_COST])
def test_length_batches_cut_where_padding_costs_least(step_cost):
    lengths = [(i * 37) % 100 + 1 for i in range(60)] + [500]
    batches = length_batches(lengths, max_frames=400, step_cost=step_cost)
    assert sorted(i for batch in batches for i in batch) == list(range(61))
    assert batches[-1] == [60]  # longer than the budget: alone
    longest = [max(lengths[i] for i in batch) for batch in batches]
    assert longest == sorted(longest)  # shortest first
    for batch in batches[:-1]:
        assert len(batch) * max(lengths[i] for i in batch) <= 400
    order = sorted(range(61), key=lengths.__getitem__)
    greedy = budget_batches(order, lengths, max_frames=400)
    assert _cost(batches, lengths, step_cost) <= _cost(greedy, lengths, step_cost)
    if step_cost == GPU_STEP_COST:  # a GPU's batches: no more of them than the greedy cut's
        assert len(batches) <= len(greedy)


def test_length_batches_are_the_cheapest_cuts():
    lengths = [3, 9, 4, 10, 1, 5, 8]
    order = sorted(range(7), key=lengths.__getitem__)
    every = []  # every way to cut the sorted order into consecutive batches within the budget
    for cuts in itertools.product([False, True], repeat=6):
        batches, start = [], 0
        for end, cut in enumerate([*cuts, True], start=1):
            if cut:
                batches.append(order[start:end])
                start = end
        if all(len(b) * max(lengths[i] for i in b) <= 30 for b in batches):
            every.append(_cost(batches, lengths, 1.0))
    assert _cost(length_batches(lengths, 30, 1.0), lengths, 1.0) == min(every)
    assert length_batches([], 30) == []
    assert length_batches([0, 0, 2], 30) == [[0, 1], [2]]  # empty inputs cost nothing apart


def test_concurrently_runs_every_item_once_dearest_first_and_at_most_workers_at_a_time():
    lock, running, most, started = threading.Lock(), [0], [0], []

    def work(item):
        with lock:
            started.append(item)
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.01 * (item % 3))
        with lock:
            running[0] -= 1
        return item * item

    items = list(range(12))
    costs = [(i * 7) % 12 for i in items]
    found = list(concurrently(work, items, costs, workers=3))
    assert sorted(found) == [(i, i * i) for i in items]
    assert most[0] == 3
    assert set(started[:3]) == set(sorted(items, key=lambda i: -costs[i])[:3])  # the dearest go first
    assert list(concurrently(work, items, costs, workers=1)) == [(i, i * i) for i in items]  # in order, here


def test_concurrently_passes_a_failure_on_and_leaves_nothing_running():
    done = []

    def work(item):
        time.sleep(0.02)
        if item == 2:
            raise ValueError("batch 2")
        done.append(item)
        return item

    with pytest.raises(ValueError, match="batch 2"):
        list(concurrently(work, list(range(20)), [0] * 20, workers=2))
    settled = len(done)
    time.sleep(0.1)
    assert len(done) == settled < 20  # no batch went on after the failure
    before = threading.active_count()
    results = concurrently(work, [0, 1, 3, 4], [0] * 4, workers=2)
    next(results)
    results.close()  # a caller that stops early
    assert threading.active_count() <= before


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_forward_batches_on_threads_give_the_outputs_of_one(workers, monkeypatch):
    """Batches on several threads, and a long input's segments, give each input the same outputs."""
    monkeypatch.setattr(batching, "SEGMENT_FRAMES", 40)
    monkeypatch.setattr(batching, "SEGMENT_CONTEXT", 10)
    rng = np.random.default_rng(0)
    inputs = [rng.normal(size=(n, 2)) for n in [5, 30, 17, 12, 200, 8, 25, 3]]

    def forward(rows):  # a "model" with no context: every second row, doubled
        time.sleep(0.002 * (len(rows[0]) % 3))  # batches finish out of order
        return [2 * r[1::2] for r in rows]

    found = {}
    for batch, outputs in forward_batches(inputs, forward, np.concatenate, 40, stride=2, workers=workers):
        for i, output in zip(batch, outputs):
            found[i] = output
    assert sorted(found) == list(range(len(inputs)))
    for i, rows in enumerate(inputs):  # the long one (200 rows) too: its segments joined in order
        assert np.array_equal(found[i], 2 * rows[1::2])


def _sampler(**kwargs):
    lengths = [(i * 37) % 100 + 1 for i in range(200)]
    return LengthBudgetBatchSampler(lengths, max_frames=400, seed=3, **kwargs)


def test_sampler_is_deterministic_by_seed_and_changes_per_epoch():
    a, b = _sampler(), _sampler()
    assert list(a) == list(b)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first
    assert sorted(i for batch in a for i in batch) == list(range(200))


def test_sampler_batches_similar_lengths():
    sampler = _sampler()
    spreads = [max(sampler.lengths[i] for i in b) - min(sampler.lengths[i] for i in b) for b in sampler]
    assert sum(spreads) / len(spreads) < 25  # vs ~100 for random batches


def test_sorted_epochs_run_shortest_first_then_shuffle():
    sampler = _sampler(sorted_epochs=2)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        longest = [max(sampler.lengths[i] for i in batch) for batch in sampler]
        assert sorted(i for batch in sampler for i in batch) == list(range(200))
        assert (longest == sorted(longest)) == (epoch < 2)
    plain = _sampler()
    plain.set_epoch(2)
    assert list(sampler) == list(plain)  # later epochs: the same batches as without it
    with pytest.raises(ValueError, match="sorted_epochs"):
        _sampler(sorted_epochs=-1)


@pytest.mark.parametrize("equal_shards", [True, False])
def test_ddp_shards(equal_shards):
    shards = [list(_sampler(num_replicas=3, rank=r, equal_shards=equal_shards)) for r in range(3)]
    covered = sorted(i for shard in shards for batch in shard for i in batch)
    if equal_shards:  # training: same number of steps on every rank
        assert len({len(s) for s in shards}) == 1
        assert set(covered) == set(range(200))
    else:  # evaluation: every utterance exactly once
        assert covered == list(range(200))


def test_greedy_merges_repeats_and_drops_blanks():
    import torch

    path = torch.tensor([[1, 1, 0, 1, 2, 2, 0, 0], [3, 0, 3, 3, 1, 1, 1, 1]])
    log_probs = torch.nn.functional.one_hot(path, 4).float().log()
    assert greedy_decode(log_probs, torch.tensor([8, 4])) == [[1, 1, 2], [3, 3]]


def test_min_ctc_frames_counts_repeats():
    assert min_ctc_frames([1, 1, 2, 2, 2, 3]) == 6 + 3
    assert min_ctc_frames([]) == 0


def test_lightning_reshuffles_the_batches_every_epoch():
    """Lightning sets the epoch through ``batch_sampler.sampler``; the batches must change with it."""
    from lightning_fabric.utilities.data import _set_sampler_epoch
    from torch.utils.data import DataLoader

    from recognizer.data import LengthBudgetBatchSampler

    sampler = LengthBudgetBatchSampler([5, 9, 3, 7, 1, 8, 2, 6, 4, 10] * 4, 20, seed=0)
    loader = DataLoader(list(range(40)), batch_sampler=sampler)
    first = list(sampler)
    _set_sampler_epoch(loader, 1)
    assert sampler.epoch == 1 and list(sampler) != first
