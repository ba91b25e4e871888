"""Batching by a length budget: items of similar length together, padded size (count x longest) bounded.

Training (``data.LengthBudgetBatchSampler``) fills batches in a shuffled order up to the budget
(``budget_batches``); inference sorts its inputs and cuts them where padding costs least
(``length_batches``), and every runtime of a trained model (PyTorch, ONNX) runs long inputs in the
same overlapping segments (``forward_batches``). A leaf without torch or Lightning, so that
transcription imports neither for it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence, Sized
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TypeVar

import numpy as np

#: feature frames per batch of inference (80 s of audio at a 10 ms hop): benchmarks/RESULTS.md, "Deployment"
DEFAULT_MAX_FRAMES = 8_000


def budget_batches(
    order: Sequence[int], lengths: Sequence[int], max_frames: int, max_batch_size: int | None = None
) -> list[list[int]]:
    """Cut ``order`` into consecutive batches whose padded size (count x longest) fits ``max_frames``.

    An item longer than the budget gets a batch of its own rather than being dropped.
    """
    batches: list[list[int]] = []
    batch: list[int] = []
    longest = 0
    for index in order:
        longest_with = max(longest, lengths[index])
        full = max_batch_size is not None and len(batch) >= max_batch_size
        if batch and (full or longest_with * (len(batch) + 1) > max_frames):
            batches.append(batch)
            batch, longest_with = [], lengths[index]
        batch.append(index)
        longest = longest_with
    if batch:
        batches.append(batch)
    return batches


#: what a batch's every step costs besides its items' own work, in items: a recurrent model runs the
#: whole batch for as many steps as its longest input has, and each step has a fixed cost (the
#: BLSTM through onnxruntime on a CPU: ~0.5-1 item); it decides how far padding is traded for fewer
#: batches (benchmarks/RESULTS.md, "Deployment": 20 % padding on AN4 dev100 before, 6 % with it)
STEP_COST = 1.0
#: on a GPU a step's cost hardly grows with the batch: fewest batches first, then least padding
GPU_STEP_COST = 1e6
#: the most items one inference batch takes (as many as are read at once, ``transcripts.DEFAULT_CHUNK``)
MAX_INFERENCE_BATCH = 256


def batch_cost(lengths: Sequence[int], step_cost: float = STEP_COST) -> float:
    """What one batch of items of these lengths costs to run: ``longest x (count + step_cost)``."""
    return max(lengths) * (len(lengths) + step_cost)


def length_batches(lengths: Sequence[int], max_frames: int, step_cost: float = STEP_COST) -> list[list[int]]:
    """Indices of ``lengths`` in batches of similar length within the budget (shortest first).

    A batch costs ``longest x (count + step_cost)``; the cuts of the sorted order are those of least
    total cost (a dynamic program), so padding is spent only where it saves whole batches. An item
    longer than the budget gets a batch of its own.
    """
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    sorted_lengths = np.array([lengths[i] for i in order], dtype=np.float64)
    best = np.zeros(len(order) + 1)  # best[j]: the least cost of the first j items
    first = np.zeros(len(order) + 1, dtype=np.int64)  # where the last batch of the first j items begins
    for end in range(1, len(order) + 1):
        longest = sorted_lengths[end - 1]
        fits = int(max_frames // longest) if longest > 0 else end
        begins = np.arange(max(0, end - max(1, min(fits, MAX_INFERENCE_BATCH))), end)
        costs = best[begins] + longest * (end - begins + step_cost)
        pick = int(np.argmin(costs))  # ties: the earliest begin, i.e. the larger batch
        best[end], first[end] = costs[pick], begins[pick]
    batches = []
    end = len(order)
    while end > 0:
        batches.append(order[first[end] : end])
        end = int(first[end])
    return batches[::-1]


#: an input longer than SEGMENT_FRAMES + 2 x SEGMENT_CONTEXT feature frames (70 s of audio) goes through
#: the model in segments of SEGMENT_FRAMES (a minute), each read with SEGMENT_CONTEXT frames (5 s) of its
#: neighbours on both sides whose outputs are dropped: memory stays flat for an hour of audio (a segment
#: per worker in flight, ``forward_batches``), and the bidirectional layers see context around every
#: kept frame (accuracy against one pass: benchmarks/RESULTS.md)
SEGMENT_FRAMES = 6000
SEGMENT_CONTEXT = 500

Rows = TypeVar("Rows", bound=Sized)  # a torch.Tensor or a numpy array: sliced along its first axis


def forward_batches(
    inputs: Sequence[Rows],
    forward: Callable[[list[Rows]], list[Rows]],
    join: Callable[[list[Rows]], Rows],
    max_frames: int,
    rows_per_frame: int = 1,
    stride: int = 1,
    step_cost: float = STEP_COST,
    workers: int = 1,
) -> Iterator[tuple[list[int], list[Rows]]]:
    """A model's outputs for ``inputs`` (each (rows, ...): a waveform's samples or feature frames),
    batch by batch: ``(indices, outputs)``. The same rule for every runtime and array type:

    - inputs up to ``SEGMENT_FRAMES + 2 x SEGMENT_CONTEXT`` feature frames go through ``forward`` (a
      list of inputs -> their outputs, (output frames, ...) each) in batches of similar length whose
      padded size fits ``max_frames`` feature frames of ``rows_per_frame`` rows (1, or a hop of samples);
    - a longer input goes alone, in segments of ``SEGMENT_FRAMES`` read with ``SEGMENT_CONTEXT`` frames
      of context on both sides, whose outputs within the context are dropped and the rest ``join``-ed.
      Segments start on output frames (``stride`` feature frames each), so the result has the frames
      of one pass.

    ``step_cost`` is ``length_batches``' (``GPU_STEP_COST`` for a model on a GPU). ``workers`` > 1 runs
    that many batches at once on threads (a ``forward`` that releases the GIL and uses one core per
    call: onnxruntime with one intra-op thread); batches then come in the order they finish.
    """
    budget = max_frames * rows_per_frame
    limit = (SEGMENT_FRAMES + 2 * SEGMENT_CONTEXT) * rows_per_frame
    whole = [i for i, rows in enumerate(inputs) if len(rows) <= limit]
    lengths = [len(inputs[i]) for i in whole]
    batches = [[whole[i] for i in batch] for batch in length_batches(lengths, budget, step_cost)]
    costs = [batch_cost([len(inputs[i]) for i in batch], step_cost) for batch in batches]
    yield from concurrently(lambda b: forward([inputs[i] for i in b]), batches, costs, workers)
    for i, rows in enumerate(inputs):
        if len(rows) > limit:
            yield [i], [_segmented(rows, forward, join, budget, rows_per_frame, stride, step_cost, workers)]


Item = TypeVar("Item")
Result = TypeVar("Result")


def concurrently(
    function: Callable[[Item], Result], items: Sequence[Item], costs: Sequence[float], workers: int
) -> Iterator[tuple[Item, Result]]:
    """``(item, function(item))`` for every item, ``workers`` at a time on threads, dearest first (the
    longest batches first, so that no core idles at the end while another finishes a long one), in the
    order they finish; one worker: in the given order, on the calling thread."""
    if workers <= 1 or len(items) <= 1:
        for item in items:
            yield item, function(item)
        return
    queue = sorted(range(len(items)), key=lambda i: -costs[i])
    executor = ThreadPoolExecutor(min(workers, len(items)))
    running: dict[Future[Result], Item] = {}
    try:
        while queue or running:
            while queue and len(running) < workers:  # no more in flight than workers: outputs wait for no one
                item = items[queue.pop(0)]
                running[executor.submit(function, item)] = item
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                yield running.pop(future), future.result()
    finally:  # also when the caller stops early or a batch fails: no batch left running
        for future in running:
            future.cancel()
        executor.shutdown(wait=True)


def _segmented(
    rows: Rows,
    forward: Callable[[list[Rows]], list[Rows]],
    join: Callable[[list[Rows]], Rows],
    budget: int,
    rows_per_frame: int,
    stride: int,
    step_cost: float,
    workers: int = 1,
) -> Rows:
    """One long input's outputs, computed in overlapping segments (``forward_batches``)."""
    step = rows_per_frame * stride  # rows of the model's input per output frame
    core = max(1, SEGMENT_FRAMES * rows_per_frame // step) * step
    context = -(-SEGMENT_CONTEXT * rows_per_frame // step) * step
    total = len(rows)
    segments = []  # (first row read, last row read + 1, first output kept, outputs kept or None: all)
    for start in range(0, total, core):
        begin, end = max(0, start - context), min(total, start + core + context)
        segments.append((begin, end, (start - begin) // step, core // step if start + core < total else None))
    outputs: list[Rows | None] = [None] * len(segments)
    batches = length_batches([end - begin for begin, end, _, _ in segments], budget, step_cost)
    costs = [batch_cost([segments[i][1] - segments[i][0] for i in batch], step_cost) for batch in batches]

    def run(batch: list[int]) -> list[Rows]:
        return forward([rows[segments[i][0] : segments[i][1]] for i in batch])  # type: ignore[index]

    for batch, batch_outputs in concurrently(run, batches, costs, workers):
        for i, output in zip(batch, batch_outputs):
            first, kept = segments[i][2], segments[i][3]
            outputs[i] = output[first : None if kept is None else first + kept]  # type: ignore[index]
    return join(outputs)  # type: ignore[arg-type]  # all set
