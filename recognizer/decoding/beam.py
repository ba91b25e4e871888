"""CTC prefix beam search without a language model, vectorized over batch and beam.

Hypotheses live in fixed-size tensors of shape (batch, beam): log p_blank / log p_nonblank of the
prefix, its length, last label and a rolling hash of its label sequence (plus the hash of the prefix
without its last label). Only the time loop is in Python. Label sequences are not copied from frame
to frame: each frame records a back-pointer (which hypothesis a slot came from) and the label it
appended, and the n-best sequences are read back once at the end.

Per frame every hypothesis yields candidates: *stay* (the same prefix, through a blank or a repeat of
its last label) and *extend* with each non-blank label ``c`` (through a blank-ended path only when
``c`` is the last label, the CTC rule). Two candidates can only be the same prefix when one is
"A extended with c" and the other is "B stays" with ``B == A + c`` (the beam's prefixes are distinct,
and so are the extensions of distinct prefixes); such pairs are found by comparing A's hash with B's
parent hash and merged into B, which is what makes this a *prefix* beam search. Runs of confident
blank frames are best collapsed before the search (``recognizer.decoding.frames``, on by default in
the ``beam`` decoder, :class:`BeamDecoder`).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..ctc import BLANK
from .base import Decoder, Hypothesis, option, register
from .frames import collapse_blank_frames

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

# Odd 64-bit multiplier (the FNV-64 prime); int64 arithmetic wraps, so the hash is the polynomial
# sum of (label + 1) * BASE**k modulo 2**64. Two different prefixes (of any lengths) collide, and would be
# merged, only with probability ~2**-64 per pair: not a practical concern.
_HASH_BASE = 1099511628211
_NO_PARENT = -3  # the empty prefix's "parent": no prefix hashes to it (in practice)
_NEG_INF = float("-inf")


@dataclass
class _Beams:
    """Search state, every field (batch, beam)."""

    pb: Tensor  # log p(prefix, path ends in blank)
    pnb: Tensor  # log p(prefix, path ends in its last label)
    last: Tensor  # last label, ``blank`` for the empty prefix
    length: Tensor
    hash: Tensor
    parent: Tensor  # hash of the prefix without its last label

    def head(self, rows: int, slots: int) -> _Beams:
        """The first ``rows`` utterances' first ``slots`` hypotheses (a view)."""
        return _Beams(*(getattr(self, f)[:rows, :slots] for f in self.__dataclass_fields__))

    def put_head(self, other: _Beams) -> None:
        """Write ``other`` over the first rows and slots; the rows' slots after it become empty."""
        rows, slots = other.pb.shape
        for f in self.__dataclass_fields__:
            getattr(self, f)[:rows, :slots] = getattr(other, f)
        self.pb[:rows, slots:] = _NEG_INF
        self.pnb[:rows, slots:] = _NEG_INF

    def live(self) -> int:
        """Hypotheses in the widest row's beam: the best come first (``_expand`` sorts them), and a
        slot whose prefix has probability 0 is empty."""
        return int((self.pnb.logaddexp(self.pb) > _NEG_INF).sum(1).max()) if self.pb.numel() else 0


@dataclass
class _Stats:
    """Work counters, for tests and tuning."""

    candidates: int = 0  # candidate scores ranked by topk, summed over frames
    full_frames: int = 0  # (utterance, frame) pairs expanded


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
    """CTC prefix beam search (no language model) on the device of ``log_probs``.

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
            leave one or two labels above a floor of -8 (p = 0.03 %), and the search's work follows:
            each frame is as wide as its widest running utterance needs (the others' extra labels are
            masked, so an utterance's result does not depend on its batch).
        prune_threshold: per frame, keep only the prefixes whose score is within this many nats of the
            utterance's best (``None``: all ``beam_size``). A peaky model's beam then holds a few live
            prefixes at most frames, and the search's work shrinks with it: each frame expands only as
            many slots as the widest running beam has live.

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


@torch.inference_mode()  # cheaper per operation than no_grad: the time loop runs many small ones
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
) -> tuple[list[list[Hypothesis]], _Stats]:
    """``prefix_beam_search`` plus work counters; ``viterbi=None`` means ``beam_size == 1``."""
    if log_probs.dim() != 3:
        raise ValueError(f"log_probs must be (batch, time, vocab), got shape {tuple(log_probs.shape)}")
    if beam_size < 1 or nbest < 1:
        raise ValueError(f"beam_size and nbest must be >= 1, got {beam_size} and {nbest}")
    if token_beam is not None and token_beam < 1:
        raise ValueError(f"token_beam must be >= 1 or None, got {token_beam}")
    if prune_threshold is not None and not prune_threshold > 0:
        raise ValueError(f"prune_threshold must be positive or None, got {prune_threshold}")
    if viterbi is None:
        viterbi = beam_size == 1
    plus = torch.maximum if viterbi else torch.logaddexp

    if log_probs.dtype not in (torch.float32, torch.float64):
        log_probs = log_probs.float()  # half precision would make the accumulated scores drift
    # Longest first: the utterances still running at a frame are then the first rows, which the loop
    # takes as views instead of gathering them.
    order = torch.argsort(lengths.detach().cpu(), descending=True, stable=True)
    log_probs, lengths = log_probs[order.to(log_probs.device)], lengths.detach().cpu()[order]
    device, dtype = log_probs.device, log_probs.dtype
    batch, frames, vocab = log_probs.shape
    K = beam_size
    lengths_cpu = lengths.clamp(0, frames)
    frames_used = int(lengths_cpu.max()) if batch else 0
    # Utterances still running at each frame: the first ``running[t]`` rows (longest first).
    running = (torch.arange(frames_used)[:, None] < lengths_cpu[None, :]).sum(1).tolist()
    tokens, token_lp, widths = _labels_to_try(log_probs, lengths_cpu, frames_used, token_beam, token_min_logp, blank)
    stats = _Stats()

    beams = _empty_beams(batch, K, blank, device, dtype)
    # Back-pointers: the slot a hypothesis came from and the label it appended (-1: none).
    source = torch.arange(K, device=device).expand(frames_used, batch, K).clone()
    appended = torch.full((frames_used, batch, K), -1, device=device, dtype=torch.long)

    slots = 1  # hypotheses the widest running beam holds: only the empty prefix at first
    for t in range(frames_used):
        n, w = running[t], widths[t]
        new, src, app, n_cand = _expand(
            beams.head(n, slots),
            log_probs[:n, t],
            tokens[:n, t, :w],
            token_lp[:n, t, :w],
            blank,
            plus,
            K,
            prune_threshold,
        )
        beams.put_head(new)
        source[t, :n, : src.shape[1]], appended[t, :n, : src.shape[1]] = src, app
        # at least one slot: a frame of NaNs (a diverged model) leaves none live, and the search goes on empty
        slots = max(1, new.live()) if prune_threshold is not None else new.pb.shape[1]
        stats.candidates += n_cand
        stats.full_frames += n

    results = _read_back(beams, source, appended, min(nbest, K), plus)
    unsorted: list[list[Hypothesis]] = [[] for _ in results]
    for position, index in enumerate(order.tolist()):
        unsorted[index] = results[position]
    return unsorted, stats


def _labels_to_try(
    log_probs: Tensor,
    lengths: Tensor,
    frames_used: int,
    token_beam: int | None,
    token_min_logp: float | None,
    blank: int,
) -> tuple[Tensor, Tensor, list[int]]:
    """The labels each frame may extend with and their log-probabilities, (batch, time, labels), for all
    frames at once (most probable first when pruned), and how many of them each frame tries: the first
    ``widths[t]``, as many as its widest running utterance needs (the others' extra labels are -inf)."""
    batch, frames, vocab = log_probs.shape
    nonblank = torch.tensor([c for c in range(vocab) if c != blank], device=log_probs.device, dtype=torch.long)
    if token_min_logp is not None or (token_beam is not None and token_beam < nonblank.numel()):
        token_lp, token_index = log_probs.index_select(2, nonblank).topk(
            min(token_beam or vocab, nonblank.numel()), dim=2
        )
        tokens = nonblank[token_index]
    else:
        tokens = nonblank.expand(batch, frames, -1)
        token_lp = log_probs.index_select(2, nonblank)
    widths = [tokens.shape[2]] * frames_used
    if token_min_logp is not None and frames_used and tokens.shape[2]:
        valid = torch.arange(frames, device=log_probs.device)[None, :] < lengths.to(log_probs.device)[:, None]
        above = token_lp >= token_min_logp
        above[:, :, 0] = True  # the most probable label (sorted first)
        widths = (above & valid[:, :, None]).sum(2).amax(0)[:frames_used].tolist()  # the widest running row
        token_lp = token_lp.masked_fill(~above, _NEG_INF)
    return tokens, token_lp, widths


def _empty_beams(batch: int, K: int, blank: int, device: torch.device, dtype: torch.dtype) -> _Beams:
    """The search's start: the empty prefix alone in each utterance's beam."""
    beams = _Beams(
        pb=torch.full((batch, K), _NEG_INF, device=device, dtype=dtype),
        pnb=torch.full((batch, K), _NEG_INF, device=device, dtype=dtype),
        last=torch.full((batch, K), blank, device=device, dtype=torch.long),
        length=torch.zeros((batch, K), device=device, dtype=torch.long),
        hash=torch.zeros((batch, K), device=device, dtype=torch.long),
        parent=torch.full((batch, K), _NO_PARENT, device=device, dtype=torch.long),
    )
    beams.pb[:, 0] = 0.0
    return beams


def _expand(
    beams: _Beams,
    lp: Tensor,
    tokens: Tensor,
    token_lp: Tensor,
    blank: int,
    plus,
    beam_size: int,
    prune_threshold: float | None = None,
) -> tuple[_Beams, Tensor, Tensor, int]:
    """One full frame: candidates, merge of equal prefixes, the best ``beam_size`` per utterance, best
    first, and of those only the ones within ``prune_threshold`` of the best (the others empty)."""
    rows, K = beams.pb.shape
    vocab = lp.shape[1]
    neg_inf = torch.tensor(_NEG_INF, device=lp.device, dtype=lp.dtype)
    total = plus(beams.pb, beams.pnb)
    valid = total > _NEG_INF
    lp_last = lp.gather(1, beams.last)
    stay_pb = total + lp[:, blank, None]
    stay_pnb = torch.where(beams.length > 0, beams.pnb + lp_last, neg_inf)

    n_tok = tokens.shape[1]
    same = tokens[:, None, :] == beams.last[:, :, None]  # CTC: a repeat needs a blank in between
    extend = torch.where(same, beams.pb[:, :, None], total[:, :, None]) + token_lp[:, None, :]

    # Merge "A extended with c" into "B stays" where B == A + c, i.e. B's parent hash is A's hash;
    # empty slots get keys that never match. One (K x K) comparison per utterance, [row, B, A].
    match = torch.where(valid, beams.parent, -1)[:, :, None] == torch.where(valid, beams.hash, -2)[:, None, :]
    merged, a = match.view(torch.uint8).max(dim=2)  # B's prefix without its last label is unique
    merged = merged.bool()
    a_last = beams.last.gather(1, a)
    into = torch.where(a_last == beams.last, beams.pb.gather(1, a), total.gather(1, a)) + lp_last
    stay_pnb = torch.where(merged, plus(stay_pnb, into), stay_pnb)
    # Drop the merged extensions; unmatched slots write to a spare column.
    flat = torch.where(merged, a * vocab + beams.last, K * vocab)
    taken = torch.zeros((rows, K * vocab + 1), device=lp.device, dtype=torch.bool)
    taken.scatter_(1, flat, True)
    taken = taken[:, : K * vocab].view(rows, K, vocab).gather(2, tokens[:, None, :].expand(rows, K, n_tok))
    extend = extend.masked_fill(taken, _NEG_INF)

    scores = torch.cat([plus(stay_pb, stay_pnb), extend.reshape(rows, K * n_tok)], dim=1)
    best, index = scores.topk(min(beam_size, scores.shape[1]), dim=1)
    if prune_threshold is not None:
        best = best.masked_fill(best < best[:, :1] - prune_threshold, _NEG_INF)
    is_ext = index >= K
    offset = (index - K).clamp(min=0)
    src = torch.where(is_ext, offset // n_tok, index)
    label = torch.where(is_ext, tokens.gather(1, offset % n_tok), -1)
    src_hash = beams.hash.gather(1, src)
    pruned = best == _NEG_INF
    new = _Beams(
        pb=torch.where(is_ext | pruned, neg_inf, stay_pb.gather(1, src)),
        pnb=torch.where(is_ext, best, stay_pnb.gather(1, src).masked_fill(pruned, _NEG_INF)),
        last=torch.where(is_ext, label, beams.last.gather(1, src)),
        length=beams.length.gather(1, src) + is_ext.long(),
        hash=torch.where(is_ext, src_hash * _HASH_BASE + label + 1, src_hash),
        parent=torch.where(is_ext, src_hash, beams.parent.gather(1, src)),
    )
    return new, src, label, rows * scores.shape[1]


def _read_back(beams: _Beams, source: Tensor, appended: Tensor, nbest: int, plus) -> list[list[Hypothesis]]:
    """Follow the back-pointers of the ``nbest`` best hypotheses per utterance to their labels."""
    score, slot = plus(beams.pb, beams.pnb).topk(nbest, dim=1)
    score, slot = score.cpu(), slot.cpu()
    source, appended = source.cpu(), appended.cpu()
    labels = torch.empty((source.shape[0],) + slot.shape, dtype=torch.long)
    for t in range(source.shape[0] - 1, -1, -1):
        labels[t] = appended[t].gather(1, slot)
        slot = source[t].gather(1, slot)
    by_utterance = labels.permute(1, 2, 0).numpy()  # (batch, nbest, time)
    return [
        [
            Hypothesis(labels=row[row >= 0].tolist(), score=float(s))
            for row, s in zip(utterance, scores.tolist())
            if s > _NEG_INF
        ]
        for utterance, scores in zip(by_utterance, score)
    ]


@dataclass(frozen=True)
class BeamOptions:
    """Settings of the prefix beam search (and, with more of its own, of the LM decoder's search)."""

    beam_size: int = option(DEFAULT_BEAM_SIZE, BEAM_SIZE_HELP, flag="--beam")
    token_beam: int | None = option(None, "labels tried per frame, most probable first (default: all)")
    token_min_logp: float | None = option(
        DEFAULT_TOKEN_MIN_LOGP,
        "beam and lm: per frame, try only labels with at least this log-probability (always the best); None: all",
    )
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
        if self.nbest < 1 or self.beam_size < 1:
            raise ValueError(f"nbest and beam_size must be at least 1, got {self.nbest} and {self.beam_size}")
        if self.token_beam is not None and self.token_beam < 1:
            raise ValueError(f"token_beam must be at least 1 (or None for every label), got {self.token_beam}")
        if self.prune_threshold is not None and not self.prune_threshold > 0:
            raise ValueError(f"prune_threshold must be positive (or None for none), got {self.prune_threshold}")
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
    input: the same frames are searched with the same labels (a run of confident blank frames is held
    back until it ends, since its collapsed frame carries the whole run's blank score). Labels are
    kept as linked lists, so a frame costs the same however long the transcript is."""

    def __init__(self, options: BeamOptions, blank: int = BLANK) -> None:
        self.options, self.blank = options, blank
        self.plus = torch.maximum if options.beam_size == 1 else torch.logaddexp
        self.beams: _Beams | None = None  # from the first frame, in its dtype
        self.labels: list[Labels] = [None]
        self.held: Tensor | None = None  # the first frame of a run of confident blanks, not searched yet
        self.run_blank = torch.zeros(())  # the blank log-probabilities of the run's later frames, summed

    @torch.inference_mode()
    def advance(self, log_probs: Tensor) -> None:
        """The next (frames, vocab) log-probabilities."""
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
        with torch.inference_mode():
            self._flush()

    def copy(self) -> PrefixBeamStream:
        other = copy.copy(self)  # the beams' tensors are replaced, never changed in place
        other.labels = list(self.labels)
        return other

    def best(self) -> list[int]:
        """The labels of the most probable prefix so far."""
        if self.beams is None:
            return []
        return _unlink(self.labels[int(self.plus(self.beams.pb, self.beams.pnb)[0].argmax())])

    def agreed(self) -> list[int]:
        """The labels every prefix in the beam begins with: later frames only extend them."""
        if self.beams is None:
            return []
        alive = (self.plus(self.beams.pb, self.beams.pnb)[0] > _NEG_INF).tolist()
        return _unlink(_common_node([labels for labels, live in zip(self.labels, alive) if live]))

    def _flush(self) -> None:
        if self.held is not None:
            held, self.held = self.held + self.run_blank, None
            self._search(held)

    def _search(self, lp: Tensor) -> None:
        if self.beams is None:
            self.beams = _empty_beams(1, 1, self.blank, lp.device, lp.dtype)  # the empty prefix
        tokens, token_lp, (width,) = _labels_to_try(
            lp[None, None],
            torch.ones(1, dtype=torch.long),
            1,
            self.options.token_beam,
            self.options.token_min_logp,
            self.blank,
        )
        options = self.options
        beams, source, appended, _ = _expand(
            self.beams,
            lp[None],
            tokens[:, 0, :width],
            token_lp[:, 0, :width],
            self.blank,
            self.plus,
            options.beam_size,
            options.prune_threshold,
        )
        slots = max(1, beams.live()) if options.prune_threshold is not None else beams.pb.shape[1]  # as the batch
        self.beams = beams.head(1, slots)
        self.labels = [
            self.labels[slot] if label < 0 else (label, self.labels[slot], _length(self.labels[slot]) + 1)
            for slot, label in zip(source[0, :slots].tolist(), appended[0, :slots].tolist())
        ]


@register
class BeamDecoder(Decoder):
    """``beam``: :func:`prefix_beam_search`, after collapsing confident blank runs (``blank_skip``), on the
    log-probabilities' device (CPU or GPU)."""

    name = "beam"
    summary = "prefix beam search"
    Options = BeamOptions
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
