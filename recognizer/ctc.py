"""CTC conventions every layer shares: the blank's index, the frames a transcript needs, the word
separator of lexicons and character LMs, and the best path. A leaf: it imports nothing from the project, so data,
tokenizer, decoding and the LM builder can all depend on it without depending on each other."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: label index of the CTC blank; the tokenizer's labels start at 1
BLANK = 0
#: how the blank is shown in token lists
BLANK_SYMBOL = "<blank>"
#: the word separator token of flashlight/wav2letter lexicons and of character n-gram LMs (the space)
WORD_BOUNDARY = "|"
#: the unknown-word token of n-gram LMs
UNK = "<unk>"


def min_ctc_frames(labels: Sequence[int]) -> int:
    """Fewest frames CTC needs for a label sequence: one per label plus a blank between repeats."""
    return len(labels) + sum(a == b for a, b in zip(labels, labels[1:]))


def best_path(
    log_probs: np.ndarray, lengths: Sequence[int] | np.ndarray, blank: int = BLANK
) -> list[tuple[list[int], float]]:
    """Greedy CTC decoding of (batch, time, vocab) scores: each frame's best label, repeats merged and
    blanks dropped, with the path's summed score. Frames past each length are ignored (padding may hold
    anything, even -inf). Every runtime's greedy decoding is this function."""
    best = log_probs.argmax(axis=-1)  # (batch, time)
    valid = np.arange(best.shape[1])[None, :] < np.asarray(lengths)[:, None]
    previous = np.concatenate([np.full((best.shape[0], 1), blank, dtype=best.dtype), best[:, :-1]], axis=1)
    keep = (best != blank) & (best != previous) & valid
    picked = np.take_along_axis(log_probs, best[..., None], axis=-1)[..., 0]
    scores = np.where(valid, picked, 0.0).sum(axis=1, dtype=np.float64)  # float64: padding does not round it
    return [(row[mask].tolist(), float(score)) for row, mask, score in zip(best, keep, scores)]
