"""CTC prefix beam search without a language model: the ``beam`` decoder, its options and its stream.

Per frame every hypothesis yields candidates: *stay* (the same prefix, through a blank or a repeat of
its last label) and *extend* with each non-blank label ``c`` (through a blank-ended path only when
``c`` is the last label, the CTC rule); equal prefixes are merged, and the ``beam_size`` best are kept.
The loops are compiled (``beam_kernel``, numba) and run on the CPU, one utterance after the other.
Runs of confident blank frames are best collapsed before the search (``recognizer.decoding.frames``,
on by default in the ``beam`` decoder, :class:`BeamDecoder`).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..ctc import BLANK
from .base import Decoder, Hypothesis, option, register
from .frames import collapse_blank_frames
from .lm_tables import no_scorer

__all__ = ["BeamDecoder", "BeamOptions", "Hypothesis", "PrefixBeamStream", "prefix_beam_search"]

#: hypotheses kept per frame by the ``beam`` decoder
DEFAULT_BEAM_SIZE = 8
#: frames whose blank probability is at least this are collapsed before a search (None: off)
DEFAULT_BLANK_SKIP = 0.999
#: labels below this log-probability (p = 0.03 %) are not tried at a frame (None: every label):
#: benchmarks/RESULTS.md, "Decoding speed"
DEFAULT_TOKEN_MIN_LOGP = -8.0
#: prefixes further below a frame's best than this (nats) are dropped (None: none):
#: benchmarks/RESULTS.md, "Decoding speed"
DEFAULT_PRUNE_THRESHOLD: float | None = None
#: hypotheses returned per utterance
DEFAULT_NBEST = 1
BEAM_SIZE_HELP = "hypotheses kept per frame"
TOKEN_MIN_LOGP_HELP = (
    "beam and lm: per frame, try only labels with at least this log-probability (always the best); None: all"
)


@dataclass
class _Stats:
    """Work counters, for tests and tuning."""

    candidates: int = 0  # candidates formed (stays and extensions), summed over frames
    full_frames: int = 0  # (utterance, frame) pairs expanded


def _check(beam_size: int, nbest: int, token_beam: int | None, prune_threshold: float | None) -> None:
    """The search's settings, checked once for the function and the decoder's options."""
    if beam_size < 1 or nbest < 1:
        raise ValueError(f"nbest and beam_size must be at least 1, got {nbest} and {beam_size}")
    if token_beam is not None and token_beam < 1:
        raise ValueError(f"token_beam must be at least 1 (or None for every label), got {token_beam}")
    if prune_threshold is not None and not prune_threshold > 0:
        raise ValueError(f"prune_threshold must be positive (or None for none), got {prune_threshold}")


def _check_blank(blank: int, vocab: int) -> None:
    """The kernels index frames by the blank without bounds checks."""
    if not 0 <= blank < vocab:
        raise ValueError(f"blank must be a label in [0, {vocab}), got {blank}")


def _kernel_settings(
    token_beam: int | None, token_min_logp: float | None, prune_threshold: float | None
) -> tuple[int, float, float]:
    """The optional settings as the kernels take them (no None)."""
    from .beam_kernel import ALL_LABELS

    # Python ints and floats whatever was passed (numpy scalars, ...): each new type would compile anew
    return (
        ALL_LABELS if token_beam is None else int(token_beam),
        -math.inf if token_min_logp is None else float(token_min_logp),
        math.inf if prune_threshold is None else float(prune_threshold),
    )


def prefix_beam_search(
    log_probs: Tensor,
    lengths: Tensor,
    beam_size: int = DEFAULT_BEAM_SIZE,
    nbest: int = DEFAULT_NBEST,
    token_beam: int | None = None,
    blank: int = BLANK,
    token_min_logp: float | None = None,
    prune_threshold: float | None = None,
) -> list[list[Hypothesis]]:
    """CTC prefix beam search (no language model), on the CPU whatever the device of ``log_probs``.

    Args:
        log_probs: (batch, time, vocab) log-probabilities; frames past an utterance's length are
            ignored (they may hold anything).
        lengths: (batch,) number of valid frames per utterance.
        beam_size: prefixes kept per utterance and frame. ``beam_size == 1`` is best-path decoding:
            candidates are then scored by their best single path (max instead of sum over paths, a
            Viterbi prefix search), which with one hypothesis follows the per-frame argmax exactly,
            so the result equals ``greedy_decode`` and the score is the best path's log-probability.
            (A summing search with one hypothesis can drift from the best path: the merged mass of
            a prefix may beat the single best path's prefix.)
        nbest: hypotheses returned per utterance (at most ``beam_size``).
        token_beam: per frame, extend prefixes only with the ``token_beam`` most probable non-blank
            labels (``None``: all). Merging into prefixes already in the beam stays exact. With
            ``token_beam >= beam_size + 1`` the result is the same as without pruning (barring
            ties): a label outside the top ``beam_size + 1`` is beaten, for the same prefix, by at
            least ``beam_size`` candidates.
        blank: index of the CTC blank.
        token_min_logp: per frame, extend prefixes only with the non-blank labels whose log-probability
            is at least this (always the most probable non-blank; ``None``: no floor). Peaky CTC frames
            leave one or two labels above a floor of -8 (p = 0.03 %), and the search's work follows.
        prune_threshold: per frame, keep only the prefixes whose score is within this many nats of the
            utterance's best (``None``: all ``beam_size``). A peaky model's beam then holds a few live
            prefixes at most frames, and the search's work shrinks with it.

    Returns:
        Per utterance, up to ``nbest`` hypotheses, best first. ``score`` is log(p_blank +
        p_nonblank) of the prefix at the last frame, i.e. the log of its total CTC probability over
        the paths the search kept (exact when the beam never prunes); for ``beam_size == 1`` the
        best path's log-probability.
    """
    return _prefix_beam_search(
        log_probs,
        lengths,
        beam_size,
        nbest,
        token_beam,
        blank,
        token_min_logp=token_min_logp,
        prune_threshold=prune_threshold,
    )[0]


def _prefix_beam_search(
    log_probs: Tensor,
    lengths: Tensor,
    beam_size: int = 8,
    nbest: int = 1,
    token_beam: int | None = None,
    blank: int = BLANK,
    viterbi: bool | None = None,
    token_min_logp: float | None = None,
    prune_threshold: float | None = None,
    scorer: tuple | None = None,
) -> tuple[list[list[Hypothesis]], _Stats]:
    """``prefix_beam_search`` plus work counters; ``viterbi=None`` means ``beam_size == 1``; ``scorer``:
    an LM and lexicon (``lm_tables.make_scorer``; None: none)."""
    from . import beam_kernel

    if log_probs.dim() != 3:
        raise ValueError(f"log_probs must be (batch, time, vocab), got shape {tuple(log_probs.shape)}")
    if lengths.shape != log_probs.shape[:1]:
        raise ValueError(f"lengths must be ({log_probs.shape[0]},), one per utterance, got {tuple(lengths.shape)}")
    _check(beam_size, nbest, token_beam, prune_threshold)
    _check_blank(blank, log_probs.shape[2])
    # float64 whatever the model's dtype (the scores accumulate over thousands of frames), contiguous:
    # the kernel is compiled for one type and layout
    array = np.ascontiguousarray(log_probs.detach().to("cpu", torch.float64).numpy())
    lengths_array = np.ascontiguousarray(lengths.detach().to("cpu", torch.int64).numpy())
    labels, counts, scores, candidates, steps = beam_kernel.search(
        array,
        lengths_array,
        int(beam_size),
        int(min(nbest, beam_size)),
        int(blank),
        *_kernel_settings(token_beam, token_min_logp, prune_threshold),
        beam_size == 1 if viterbi is None else viterbi,
        no_scorer() if scorer is None else scorer,
    )
    results = [
        [
            Hypothesis(labels=row[:count].tolist(), score=float(score))
            for row, count, score in zip(rows, row_counts, row_scores)
            if score > -math.inf
        ]
        for rows, row_counts, row_scores in zip(labels, counts, scores)
    ]
    return results, _Stats(candidates=int(candidates), full_frames=int(steps))


@dataclass(frozen=True)
class BeamOptions:
    """Settings of the prefix beam search (and, with more of its own, of the LM decoder's search)."""

    beam_size: int = option(DEFAULT_BEAM_SIZE, BEAM_SIZE_HELP, flag="--beam")
    token_beam: int | None = option(None, "labels tried per frame, most probable first (default: all)")
    token_min_logp: float | None = option(DEFAULT_TOKEN_MIN_LOGP, TOKEN_MIN_LOGP_HELP)
    prune_threshold: float | None = option(
        DEFAULT_PRUNE_THRESHOLD, "beam: drop prefixes this many nats below a frame's best (None: keep beam_size)"
    )
    blank_skip: float | None = option(
        DEFAULT_BLANK_SKIP,
        "beam and lm: collapse runs of frames whose blank probability is at least this before the search; "
        "1 to search every frame",
    )
    nbest: int = option(DEFAULT_NBEST, "alternatives per input (JSON output)")

    def __post_init__(self) -> None:
        _check(self.beam_size, self.nbest, self.token_beam, self.prune_threshold)
        if self.blank_skip is not None and not 0.0 < self.blank_skip <= 1.0:
            raise ValueError(f"blank_skip must be a probability in (0, 1] (or None for off), got {self.blank_skip}")


#: a hypothesis' labels as a linked list from its last label back, ``(label, rest, length)``; None: the
#: empty prefix. Prefixes that grew from one hypothesis share its node.
Labels = tuple[int, Any, int] | None


def _unlink(labels: Labels) -> list[int]:
    out = []
    while labels is not None:
        out.append(labels[0])
        labels = labels[1]
    return out[::-1]


def _length(labels: Labels) -> int:
    return 0 if labels is None else labels[2]


def _common_node(nodes: list[Labels]) -> Labels:
    """The longest prefix that every list in ``nodes`` grew from (by node identity): its work is the
    lists' ends after it, not their whole length."""
    if not nodes:
        return None
    shortest = min(_length(node) for node in nodes)
    for _ in range(max(_length(node) for node in nodes) - shortest):
        nodes = [node[1] if _length(node) > shortest else node for node in nodes]  # type: ignore[index]
    while any(node is not nodes[0] for node in nodes):
        nodes = [node[1] for node in nodes]  # type: ignore[index]
    return nodes[0]


class PrefixBeamStream:
    """The ``beam`` decoder's search (blank collapse, label floor, prefix beam search) over one input
    whose log-probabilities arrive in pieces: ``advance`` with the next frames, ``best`` and ``agreed``
    for the reading so far, ``finish`` at the end, ``copy`` to read ahead without changing the stream.

    Fed an input's frames in any pieces, it keeps the beam ``BeamDecoder.search`` keeps over the whole
    input: the same frames are searched by the same step (a run of confident blank frames is held
    back until it ends, since its collapsed frame carries the whole run's blank score). Labels are
    kept as linked lists, so a frame costs the same however long the transcript is."""

    def __init__(self, options: BeamOptions, blank: int = BLANK, scorer: tuple | None = None) -> None:
        from . import beam_kernel

        self.options, self.blank = options, blank
        self.kernel: Any = beam_kernel  # numba's dispatchers take the kernels' arguments untyped
        self.settings = _kernel_settings(options.token_beam, options.token_min_logp, options.prune_threshold)
        self.scorer = no_scorer() if scorer is None else scorer
        # the kernel's nine arrays and its live count; each step makes new arrays, so copies may share them
        start = int(self.scorer[beam_kernel.LM_INTS][beam_kernel.START])
        self.beam: tuple[Any, ...] = beam_kernel.empty_beam(options.beam_size, blank, start)
        self.labels: list[Labels] = [None]
        self.held: Tensor | None = None  # the first frame of a run of confident blanks, not searched yet
        self.run_blank = torch.zeros(())  # the blank log-probabilities of the run's later frames, summed

    def advance(self, log_probs: Tensor) -> None:
        """The next (frames, vocab) log-probabilities."""
        # the blank runs in the input's dtype, as ``collapse_blank_frames`` finds and sums them
        log_probs = log_probs.detach().cpu()
        if log_probs.dtype not in (torch.float32, torch.float64):
            log_probs = log_probs.float()
        skip = self.options.blank_skip
        confident = (log_probs[:, self.blank] >= math.log(skip)).tolist() if skip is not None else []
        for t in range(log_probs.shape[0]):
            if skip is not None and confident[t]:
                if self.held is None:
                    self.held, self.run_blank = log_probs[t], log_probs.new_zeros(())
                else:
                    self.run_blank = self.run_blank + log_probs[t, self.blank]
                continue
            self._flush()
            self._search(log_probs[t])

    def finish(self) -> None:
        """The input has ended: search the frame still held back."""
        self._flush()

    def copy(self) -> PrefixBeamStream:
        other = copy.copy(self)
        other.labels = list(self.labels)
        return other

    def best(self) -> list[int]:
        """The labels of the most probable prefix so far, were the input to end here (with a scorer, its
        last word and the end of the sentence scored)."""
        if not self.labels:
            return []
        pb, pnb, last, _, _, _, lm, state, node, live = self.beam
        order, _ = self.kernel.final_order(
            pb, pnb, last, lm, state, node, live, self.options.beam_size == 1, self.scorer
        )
        return _unlink(self.labels[int(order[0])])

    def agreed(self) -> list[int]:
        """The labels every prefix in the beam begins with: later frames only extend them."""
        return _unlink(_common_node(self.labels))

    def _flush(self) -> None:
        if self.held is not None:
            held, self.held = self.held + self.run_blank, None
            self._search(held)

    def _search(self, lp: Tensor) -> None:
        _check_blank(self.blank, lp.shape[0])
        *beam, source, appended, live, _ = self.kernel.step(
            *self.beam,
            np.ascontiguousarray(lp.double().numpy()),
            self.blank,
            self.options.beam_size,
            *self.settings,
            self.options.beam_size == 1,
            self.scorer,
        )
        self.beam = (*beam, live)
        self.labels = [
            self.labels[slot] if label < 0 else (label, self.labels[slot], _length(self.labels[slot]) + 1)
            for slot, label in zip(source[:live].tolist(), appended[:live].tolist())
        ]


@register
class BeamDecoder(Decoder):
    """``beam``: :func:`prefix_beam_search`, after collapsing confident blank runs (``blank_skip``)."""

    name = "beam"
    summary = "prefix beam search"
    Options = BeamOptions
    device = "cpu"  # the search is compiled for the CPU (``beam_kernel``)
    options: BeamOptions

    def search(self, log_probs: Tensor, lengths: Tensor) -> list[list[Hypothesis]]:
        if self.options.blank_skip is not None:
            log_probs, lengths = collapse_blank_frames(log_probs, lengths, self.options.blank_skip)
        return prefix_beam_search(
            log_probs,
            lengths,
            beam_size=self.options.beam_size,
            nbest=self.options.nbest,
            token_beam=self.options.token_beam,
            token_min_logp=self.options.token_min_logp,
            prune_threshold=self.options.prune_threshold,
        )

    def stream(self) -> PrefixBeamStream:
        return PrefixBeamStream(self.options)
