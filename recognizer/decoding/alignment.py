"""CTC forced alignment (batched Viterbi), character and word spans, and frame-to-unit conversion.

``forced_align`` finds, for each utterance, the single most likely frame-level CTC path that spells
a known transcript; ``align_chars`` turns one such path into character spans with posteriors,
``align_words`` groups them into words, and ``scale_spans`` converts encoder frames to seconds
(audio), ``place_spans`` to the ink's points.

Conventions as in ``greedy``: log-probabilities (batch, time, vocab), lengths (batch,), blank 0.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch

from ..ctc import BLANK, min_ctc_frames


class AlignmentError(ValueError):
    """A transcript that cannot be aligned to its frames; the message names the utterance."""


@dataclass
class CharSpan:
    """One character of an alignment: frames [start, end) and the mean posterior of ``token`` there.

    ``start``/``end`` are encoder frames (ints) from ``align_chars``; ``scale_spans`` turns them into
    seconds or points (floats).
    """

    token: int
    char: str
    start: float
    end: float
    score: float


@dataclass
class WordSpan:
    """One word: from its first character's start to its last character's end, with a confidence in [0, 1]."""

    word: str
    start: float
    end: float
    confidence: float


def _as_list(labels: Sequence[int] | torch.Tensor) -> list[int]:
    return labels.tolist() if isinstance(labels, torch.Tensor) else [int(x) for x in labels]


def forced_align(
    log_probs: torch.Tensor,
    lengths: torch.Tensor,
    targets: Sequence[Sequence[int]] | Sequence[torch.Tensor],
    blank: int = BLANK,
    names: Sequence[str] | None = None,
) -> list[torch.Tensor]:
    """Viterbi CTC alignment of each transcript to its log-probabilities, for the whole batch at once.

    Args:
        log_probs: (batch, time, vocab) log-probabilities; frames past an utterance's length are ignored.
        lengths: (batch,) frames per utterance.
        targets: one label sequence per utterance (no blanks).
        blank: the blank index.
        names: optional utterance ids for error messages (default: the batch index).

    Returns:
        Per utterance, an int64 tensor of its ``lengths[b]`` frame labels (blanks included) on the
        input's device: the same path as ``torchaudio.functional.forced_align`` gives one utterance
        at a time. Ties go to the earlier choice (stay, then advance, then skip the blank; at the
        end, the last label over the final blank), as torchaudio's, except that where advancing and
        skipping tie above staying this picks one of them, where torchaudio falls back to staying.

    One Python loop over time (then one back) serves the whole batch, so it suits a GPU; memory is
    about 7 bytes per (frame, utterance, extended label) in float32 for emissions and backpointers.

    Raises:
        AlignmentError: before any computation, if a transcript needs more frames than it has
            (one per label plus one between adjacent repeats), holds the blank or an index outside
            the vocabulary, or a length exceeds the padded time axis.
    """
    batch, frames, vocab = log_probs.shape
    device = log_probs.device
    labels = [_as_list(t) for t in targets]
    frame_counts = [int(n) for n in lengths.tolist()]
    if len(labels) != batch or len(frame_counts) != batch:
        raise AlignmentError(
            f"{batch} utterances of log-probabilities but {len(labels)} transcripts and {len(frame_counts)} lengths"
        )
    if names is not None and len(names) != batch:
        raise AlignmentError(f"{batch} utterances but {len(names)} names")
    for b, (seq, n) in enumerate(zip(labels, frame_counts)):
        name = f"utterance {names[b]!r}" if names is not None else f"utterance {b}"
        if not 0 <= n <= frames:
            raise AlignmentError(f"{name}: length {n} outside the {frames} frames of the batch")
        bad = [x for x in seq if x == blank or not 0 <= x < vocab]
        if bad:
            raise AlignmentError(f"{name}: labels {bad} are the blank ({blank}) or outside the vocabulary of {vocab}")
        needed = min_ctc_frames(seq)
        if n < needed:
            repeats = needed - len(seq)
            raise AlignmentError(
                f"{name}: {n} frames cannot hold {len(seq)} labels with {repeats} adjacent repeats "
                f"(CTC needs at least {needed} frames)"
            )
    if batch == 0:
        return []
    if frames == 0:
        return [torch.zeros(0, dtype=torch.long, device=device) for _ in range(batch)]

    # Extended labels: blank, l1, blank, l2, ..., blank; shorter transcripts are padded with blank
    # states that can never be reached from a valid end state, so they never enter a path.
    max_labels = max(len(seq) for seq in labels)
    states = 2 * max_labels + 1
    padded = torch.full((batch, max_labels), blank, dtype=torch.long)
    for b, seq in enumerate(labels):
        padded[b, : len(seq)] = torch.tensor(seq, dtype=torch.long)
    extended = torch.full((batch, states), blank, dtype=torch.long)
    extended[:, 1::2] = padded
    # Skipping the blank between two labels (s-2 -> s) is allowed only if they differ.
    can_skip = torch.zeros(batch, states, dtype=torch.bool)
    can_skip[:, 3::2] = padded[:, 1:] != padded[:, :-1]
    extended, can_skip = extended.to(device), can_skip.to(device)

    # Half precision would lose the sum over thousands of frames.
    dtype = torch.promote_types(log_probs.dtype, torch.float32)
    emissions = log_probs.to(dtype).gather(2, extended[:, None, :].expand(batch, frames, states))
    emissions = emissions.transpose(0, 1).contiguous()  # (T, B, S): one contiguous slab per step
    skip_bias = torch.where(can_skip, 0.0, torch.tensor(-math.inf, dtype=dtype, device=device))
    active = torch.arange(frames, device=device)[:, None] < torch.tensor(frame_counts, device=device)[None, :]  # (T, B)
    all_active = min(frame_counts)  # before this frame no utterance has ended: no masking needed

    # Two leading -inf columns make "from s-1" and "from s-2" views of one buffer, updated in place.
    alpha = torch.full((batch, states + 2), -math.inf, dtype=dtype, device=device)
    stay, advance, before = alpha[:, 2:], alpha[:, 1:-1], alpha[:, :-2]
    stay[:, :2] = emissions[0, :, :2]
    take_advance = torch.zeros(frames, batch, states, dtype=torch.bool, device=device)
    take_skip = torch.zeros(frames, batch, states, dtype=torch.bool, device=device)
    for t in range(1, frames):
        skip = before + skip_bias
        # Strict comparisons keep ties on the earlier choice (stay, then advance), as torchaudio does.
        torch.gt(advance, stay, out=take_advance[t])
        best = torch.maximum(advance, stay)
        torch.gt(skip, best, out=take_skip[t])
        best = torch.maximum(skip, best).add_(emissions[t])
        if t < all_active:
            stay.copy_(best)
        else:
            # Finished utterances keep their last column, which is where their backtrack starts.
            stay.copy_(torch.where(active[t][:, None], best, stay))
    back = take_advance.to(torch.int8).masked_fill_(take_skip, 2).view(frames, batch * states)

    # End in the final blank only if it scores strictly better than the last label (torchaudio's rule).
    last = torch.tensor([2 * len(seq) for seq in labels], device=device)
    end_label = stay.gather(1, (last - 1).clamp_min(0)[:, None]).squeeze(1)
    end_blank = stay.gather(1, last[:, None]).squeeze(1)
    state = torch.where((last > 0) & ~(end_blank > end_label), last - 1, last)

    # Backtrack on flat (utterance, state) indices so each frame is one ``take``.
    position = state + torch.arange(batch, device=device) * states
    steps = active.to(torch.int8)
    visited = [position]
    for t in range(frames - 1, 0, -1):
        step = back[t].take(position)
        if t >= all_active:
            step = step * steps[t]
        position = position - step
        visited.append(position)
    paths = extended.view(-1).take(torch.stack(visited[::-1], dim=1))
    return [paths[b, :n] for b, n in enumerate(frame_counts)]


def align_chars(path: torch.Tensor, log_probs: torch.Tensor, tokenizer, blank: int = BLANK) -> list[CharSpan]:
    """Character spans of one utterance's frame path.

    Args:
        path: (frames,) frame labels, e.g. one ``forced_align`` (or greedy argmax) output.
        log_probs: (time, vocab) log-probabilities of that utterance, time >= frames (padding ignored).
        tokenizer: maps a token to its character (``tokenizer.tokens``).

    Consecutive equal non-blank frames form one span (CTC merges them); blank frames belong to no
    character, so spans need not touch. ``score`` is the mean posterior of the token over its frames.
    """
    path = path.detach().cpu().long()
    if path.numel() == 0:
        return []
    posteriors = log_probs[: path.numel()].detach().cpu().double().gather(1, path[:, None]).squeeze(1).exp()
    starts = torch.ones_like(path, dtype=torch.bool)
    starts[1:] = path[1:] != path[:-1]
    run_starts = starts.nonzero().squeeze(1)
    run_ends = torch.cat([run_starts[1:], torch.tensor([path.numel()])])
    sums = torch.zeros(run_starts.numel(), dtype=torch.float64).index_add_(0, starts.cumsum(0) - 1, posteriors)
    tokens = tokenizer.tokens
    spans = []
    for token, start, end, total in zip(
        path[run_starts].tolist(), run_starts.tolist(), run_ends.tolist(), sums.tolist()
    ):
        if token != blank:
            spans.append(CharSpan(token, tokens[token], start, end, total / (end - start)))
    return spans


def align_words(chars: Sequence[CharSpan], separator: str = " ") -> list[WordSpan]:
    """Group character spans into words at ``separator`` characters (which belong to no word).

    Word confidence is the geometric mean of its characters' scores, i.e. exp(mean log score): it
    stays in [0, 1], does not shrink with word length as a product would, and one doubtful
    character pulls it down more than an arithmetic mean would, without ignoring the other
    characters as a minimum does.
    """
    words: list[WordSpan] = []
    group: list[CharSpan] = []

    def flush() -> None:
        if group:
            log_mean = sum(math.log(max(c.score, 1e-300)) for c in group) / len(group)
            words.append(WordSpan("".join(c.char for c in group), group[0].start, group[-1].end, math.exp(log_mean)))
            group.clear()

    for char in chars:
        if char.char == separator:
            flush()
        else:
            group.append(char)
    flush()
    return words


Span = TypeVar("Span", CharSpan, WordSpan)


def place_spans(spans: Sequence[Span], boundaries: Sequence[float] | np.ndarray | torch.Tensor) -> list[Span]:
    """Copies of ``spans`` with start/end looked up in ``boundaries``, where encoder frame j spans
    ``[boundaries[j], boundaries[j + 1])`` in input units: for front-ends whose frames are not evenly
    spaced (``Frontend.frame_boundaries``, e.g. ink curves); ``scale_spans`` is the even case."""
    last = len(boundaries) - 1
    return [
        dataclasses.replace(
            s, start=float(boundaries[min(int(s.start), last)]), end=float(boundaries[min(int(s.end), last)])
        )
        for s in spans
    ]


def scale_spans(spans: Sequence[Span], unit: float) -> list[Span]:
    """Copies of ``spans`` with start/end multiplied by ``unit``: input units per encoder frame, i.e. the
    front-end's ``frame_unit`` (seconds per audio frame) times the encoder's stride."""
    return [dataclasses.replace(s, start=s.start * unit, end=s.end * unit) for s in spans]
