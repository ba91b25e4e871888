"""Batching by a length budget: items of similar length together, padded size (count x longest) bounded.

Training (``data.LengthBudgetBatchSampler``) and transcription cut batches the same way. A leaf without
Lightning, so that transcription does not import it.
"""

from __future__ import annotations

from collections.abc import Sequence


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


def length_batches(lengths: Sequence[int], max_frames: int) -> list[list[int]]:
    """Indices of ``lengths`` in batches of similar length within the budget (shortest first)."""
    return budget_batches(sorted(range(len(lengths)), key=lengths.__getitem__), lengths, max_frames)
