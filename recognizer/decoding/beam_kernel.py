"""The CTC prefix beam search's inner loops, compiled with numba (a dependency of librosa, so of ours).

A search step costs a few microseconds here, against the ~40 dispatched tensor operations per frame of
a vectorized PyTorch search; that is what puts the ``beam`` decoder past pyctcdecode (benchmarks/RESULTS.md,
"Decoding speed"). The functions are compiled on first use and cached beside this file
(``__pycache__``), so only the first search after an install pays the compilation (about 10 s on
this machine; loading the cached code takes under a second).

A beam is six arrays of ``beam_size`` slots, of which the first ``live`` hold hypotheses, best first:
``pb``/``pnb`` (log p of the prefix through paths ending in a blank / in its last label), ``last``
(its last label, the blank for the empty prefix), ``length`` (labels), ``hash`` (a rolling hash of its
labels) and ``parent`` (the hash of the prefix without its last label). Two prefixes are merged when
one is "A extended with c" and the other "B stays" with ``B == A + c``, found by ``parent(B) ==
hash(A)``: that is what makes this a *prefix* beam search.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

#: odd 64-bit multiplier (the FNV-64 prime); unsigned arithmetic wraps, so the hash is the polynomial sum
#: of (label + 1) * BASE**k modulo 2**64. Two different prefixes collide, and would be merged, only with
#: probability ~2**-64 per pair: not a practical concern.
HASH_BASE = np.uint64(1099511628211)
#: the empty prefix's "parent": no prefix hashes to it (in practice)
NO_PARENT = np.uint64(2**64 - 3)
#: ``token_beam`` for "every label" (the float settings use infinities)
ALL_LABELS = -1
NEG_INF = -math.inf


@njit(cache=True, nogil=True, inline="always")
def _plus(a: float, b: float, viterbi: bool) -> float:
    """log(e^a + e^b), or max(a, b) for a Viterbi (best single path) search; NaN if either is."""
    if a != a or b != b:
        return math.nan
    if viterbi or a == NEG_INF or b == NEG_INF:
        return max(a, b)
    if a >= b:
        return a + math.log1p(math.exp(b - a))
    return b + math.log1p(math.exp(a - b))


@njit(cache=True, nogil=True)
def labels_to_try(lp: np.ndarray, blank: int, token_beam: int, min_logp: float) -> np.ndarray:
    """The non-blank labels a frame extends with: all of them in label order, or (with ``token_beam`` or
    ``min_logp`` set) the ``token_beam`` most probable, most probable first, cut at the first below
    ``min_logp`` but never empty."""
    vocab = lp.shape[0]
    labels = np.empty(vocab - 1, dtype=np.int64)
    n = 0
    for c in range(vocab):
        if c != blank:
            labels[n] = c
            n += 1
    if token_beam == ALL_LABELS and min_logp == NEG_INF:
        return labels
    ranked = labels[np.argsort(-lp[labels], kind="mergesort")]
    keep = ranked.shape[0] if token_beam == ALL_LABELS else min(token_beam, ranked.shape[0])
    for k in range(1, keep):
        if not lp[ranked[k]] >= min_logp:
            keep = k
            break
    return ranked[:keep]


@njit(cache=True, nogil=True)
def step(
    pb: np.ndarray,
    pnb: np.ndarray,
    last: np.ndarray,
    length: np.ndarray,
    hsh: np.ndarray,
    parent: np.ndarray,
    live: int,
    lp: np.ndarray,
    blank: int,
    beam_size: int,
    token_beam: int,
    min_logp: float,
    prune_threshold: float,
    viterbi: bool,
):
    """One frame ``lp`` (vocab,) of the search: the next beam (six new arrays of ``beam_size`` slots), for
    each of its slots the slot it came from and the label it appended (-1: none), its number of live
    hypotheses, and the number of candidates it formed (stays and extensions of the live hypotheses)."""
    tokens = labels_to_try(lp, blank, token_beam, min_logp)
    n_tok = tokens.shape[0]
    total = np.empty(live)
    stay_pb = np.empty(live)
    stay_pnb = np.empty(live)
    for i in range(live):
        total[i] = _plus(pb[i], pnb[i], viterbi)
        stay_pb[i] = total[i] + lp[blank]
        stay_pnb[i] = pnb[i] + lp[last[i]] if length[i] > 0 else NEG_INF
    # Merge "A extended with c" into "B stays" where B == A + c; the extension is then no candidate.
    taken = np.zeros((live, lp.shape[0]), dtype=np.bool_)  # [A, c]: "A extended with c" is merged
    for j in range(live):
        if length[j] == 0:
            continue
        for a in range(live):
            if hsh[a] == parent[j]:  # B's prefix without its last label is unique in the beam
                into = (pb[a] if last[a] == last[j] else total[a]) + lp[last[j]]
                stay_pnb[j] = _plus(stay_pnb[j], into, viterbi)
                taken[a, last[j]] = True
                break

    size = live + live * n_tok
    score = np.empty(size)
    source = np.empty(size, dtype=np.int64)
    label = np.empty(size, dtype=np.int64)
    n = 0
    for i in range(live):
        s = _plus(stay_pb[i], stay_pnb[i], viterbi)
        if s > NEG_INF:  # False for NaN too: a diverged model's frame leaves nothing live
            score[n], source[n], label[n] = s, i, -1
            n += 1
    for i in range(live):
        for k in range(n_tok):
            c = tokens[k]
            if taken[i, c]:
                continue
            s = (pb[i] if c == last[i] else total[i]) + lp[c]
            if s > NEG_INF:
                score[n], source[n], label[n] = s, i, c
                n += 1

    order = np.argsort(-score[:n], kind="mergesort")  # stable: on a tie, staying beats extending
    kept = min(n, beam_size)
    if kept and prune_threshold < math.inf:
        floor = score[order[0]] - prune_threshold
        for k in range(1, kept):
            if score[order[k]] < floor:
                kept = k
                break

    new_pb = np.full(beam_size, NEG_INF)
    new_pnb = np.full(beam_size, NEG_INF)
    new_last = np.full(beam_size, blank, dtype=np.int64)
    new_length = np.zeros(beam_size, dtype=np.int64)
    new_hash = np.zeros(beam_size, dtype=np.uint64)
    new_parent = np.full(beam_size, NO_PARENT, dtype=np.uint64)
    src = np.full(beam_size, -1, dtype=np.int64)
    app = np.full(beam_size, -1, dtype=np.int64)
    for k in range(kept):
        index = order[k]
        i, c = source[index], label[index]
        src[k], app[k] = i, c
        if c < 0:
            new_pb[k], new_pnb[k] = stay_pb[i], stay_pnb[i]
            new_last[k], new_length[k], new_hash[k], new_parent[k] = last[i], length[i], hsh[i], parent[i]
        else:
            new_pnb[k] = score[index]
            new_last[k], new_length[k] = c, length[i] + 1
            new_hash[k], new_parent[k] = hsh[i] * HASH_BASE + np.uint64(c + 1), hsh[i]
    return new_pb, new_pnb, new_last, new_length, new_hash, new_parent, src, app, kept, size


@njit(cache=True, nogil=True)
def empty_beam(beam_size: int, blank: int):
    """The search's start: the empty prefix alone, with probability 1 (one live slot)."""
    pb = np.full(beam_size, NEG_INF)
    pb[0] = 0.0
    return (
        pb,
        np.full(beam_size, NEG_INF),
        np.full(beam_size, blank, dtype=np.int64),
        np.zeros(beam_size, dtype=np.int64),
        np.zeros(beam_size, dtype=np.uint64),
        np.full(beam_size, NO_PARENT, dtype=np.uint64),
        1,
    )


@njit(cache=True, nogil=True)
def search(
    log_probs: np.ndarray,
    lengths: np.ndarray,
    beam_size: int,
    nbest: int,
    blank: int,
    token_beam: int,
    min_logp: float,
    prune_threshold: float,
    viterbi: bool,
):
    """The whole search over (batch, time, vocab) float64 ``log_probs``, one utterance after the other.

    Returns the ``nbest`` hypotheses per utterance as labels (batch, nbest, time) padded with -1, their
    number of labels and scores (batch, nbest; -inf: no hypothesis), the candidates formed and the
    (utterance, frame) steps taken."""
    batch, frames = log_probs.shape[0], log_probs.shape[1]
    labels = np.full((batch, nbest, max(frames, 1)), -1, dtype=np.int64)
    counts = np.zeros((batch, nbest), dtype=np.int64)
    scores = np.full((batch, nbest), NEG_INF)
    source = np.empty((max(frames, 1), beam_size), dtype=np.int64)  # back-pointers, reused per utterance
    appended = np.empty((max(frames, 1), beam_size), dtype=np.int64)
    candidates = 0
    steps = 0
    for b in range(batch):
        n = min(max(lengths[b], 0), frames)
        pb, pnb, last, length, hsh, parent, live = empty_beam(beam_size, blank)
        for t in range(n):
            pb, pnb, last, length, hsh, parent, src, app, live, formed = step(
                pb, pnb, last, length, hsh, parent, live, log_probs[b, t], blank, beam_size, token_beam, min_logp,
                prune_threshold, viterbi,
            )  # fmt: skip
            source[t], appended[t] = src, app
            candidates += formed
        steps += n
        for k in range(min(nbest, live)):  # read the labels back along the back-pointers
            scores[b, k] = _plus(pb[k], pnb[k], viterbi)
            counts[b, k] = length[k]
            slot, position = k, length[k]
            for t in range(n - 1, -1, -1):
                if appended[t, slot] >= 0:
                    position -= 1
                    labels[b, k, position] = appended[t, slot]
                slot = source[t, slot]
    return labels, counts, scores, candidates, steps
