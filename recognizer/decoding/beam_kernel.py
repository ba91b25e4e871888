"""The CTC prefix beam search's inner loops, compiled with numba (a dependency of librosa, so of ours).

A search step costs a few microseconds here, against the ~40 dispatched tensor operations per frame of
a vectorized PyTorch search; that is what puts the ``beam`` decoder past pyctcdecode (benchmarks/RESULTS.md,
"Decoding speed"). The functions are compiled on first use and cached beside this file
(``__pycache__``), so only the first search after an install pays the compilation (about 10 s on
this machine; loading the cached code takes under a second).

A beam is nine arrays of ``beam_size`` slots, of which the first ``live`` hold hypotheses, best first:
``pb``/``pnb`` (log p of the prefix through paths ending in a blank / in its last label), ``last``
(its last label, the blank for the empty prefix), ``length`` (labels), ``hash`` (a rolling hash of its
labels), ``parent`` (the hash of the prefix without its last label), and what a language model
(the *scorer*) makes of the prefix: ``lm`` (its weighted LM score and bonuses so far), ``state`` (its
n-gram context) and ``node`` (its unfinished word's place in the lexicon). Two prefixes are merged when
one is "A extended with c" and the other "B stays" with ``B == A + c``, found by ``parent(B) ==
hash(A)``: that is what makes this a *prefix* beam search. The scorer's part is a function of the
prefix alone, so merging stays exact with a language model too.

The scorer (``scorer``, a tuple built by ``recognizer.decoding.lm_tables``) is one of:

* ``NO_SCORER``: the acoustic prefix beam search (the ``beam`` decoder);
* ``LEXICON``: words spelled by a lexicon trie, each completed word (at the word separator, or at the
  end) scored by a word n-gram LM and ``word_score``; while a word is unfinished the best LM score of
  the words it can still become stands in for it (look-ahead). A spelling that leaves the lexicon costs
  ``unk_score`` once (``-inf``: never) and is scored as the LM's ``<unk>``. Optionally a character
  n-gram LM scores every label too (weighted by ``char_weight``), so that an unknown word is spelled by
  it rather than by the acoustics alone: the two LMs' contexts share ``state`` (word state x the
  character LM's number of states + character state).
* ``CHARACTERS``: every label scored by a character n-gram LM (lexicon-free), ``word_score`` per word
  separator.

With a scorer the end of the utterance is scored too (the last word completed, then ``</s>``), and the
word separator neither starts nor ends a transcript, nor follows itself. LM scores are log10, as in ARPA files,
KenLM and flashlight-text, weighted by ``lm_weight``; the other scores are in nats.
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
#: scorer modes (see the module docstring)
NO_SCORER, LEXICON, CHARACTERS = 0, 1, 2
#: ``node`` of an empty word (the lexicon trie's root), and of a word that has left the lexicon
ROOT, OUTSIDE = 0, -1
#: the scorer tuple's fields, by position (numba takes tuples, not objects, into cached code)
MODE, SEPARATOR, WEIGHTS, KEYS, PROBS, NEXT, BACKOFF, SUFFIX, LM_INTS, LABEL_WORDS = range(10)
TRIE_START, TRIE_LABEL, TRIE_CHILD, TRIE_WORD, TRIE_LOOKAHEAD = range(10, 15)
#: the character LM beside a lexicon's word LM: its tables as the LM's above, and each label's character
CHAR_KEYS, CHAR_PROBS, CHAR_NEXT, CHAR_BACKOFF, CHAR_SUFFIX, CHAR_INTS, CHAR_LABEL_WORDS = range(15, 22)
#: ``WEIGHTS`` holds lm_weight, word_score, unk_score, the LM's log10 p(<unk>), the character LM's weight
#: and its log10 p(<unk>) at these positions
LM_WEIGHT, WORD_SCORE, UNK_SCORE, UNK_LOGP, CHAR_WEIGHT, CHAR_UNK_LOGP = range(6)
#: ``LM_INTS`` and ``CHAR_INTS`` hold the LM's vocabulary size, the search's start state (after <s>;
#: both LMs' in ``LM_INTS``), </s>, <unk> and (``CHAR_INTS`` only) the character LM's number of states
VOCAB, START, EOS, UNK, STATES = range(5)


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
def _ngram_logp(keys, probs, next_state, backoff, suffix, vocab: int, unk_logp: float, state: int, word: int):
    """log10 p(word | the context ``state``) by the ARPA back-off rule, and the context after it.

    An n-gram is found by binary search for ``state x vocab + word`` among the sorted ``keys``; a context
    without it pays its ``backoff`` and tries its ``suffix`` (the context one word shorter), down to the
    empty context (state 0), where a word the LM lacks scores as ``<unk>``."""
    size = np.uint64(vocab)
    total = 0.0
    while True:
        key = np.uint64(state) * size + np.uint64(word)
        i = np.searchsorted(keys, key)
        if i < keys.shape[0] and keys[i] == key:
            return total + probs[i], next_state[i]
        if state == 0:
            return total + unk_logp, 0
        total += backoff[state]
        state = suffix[state]


@njit(cache=True, nogil=True)
def lm_logp(scorer, state: int, word: int):
    """The scorer's LM (word or character): log10 p(word | ``state``) and the state after it."""
    return _ngram_logp(
        scorer[KEYS], scorer[PROBS], scorer[NEXT], scorer[BACKOFF], scorer[SUFFIX],
        scorer[LM_INTS][VOCAB], scorer[WEIGHTS][UNK_LOGP], state, word,
    )  # fmt: skip


@njit(cache=True, nogil=True)
def char_logp(scorer, state: int, char: int):
    """The character LM beside a word LM: log10 p(char | ``state``) and the state after it."""
    return _ngram_logp(
        scorer[CHAR_KEYS], scorer[CHAR_PROBS], scorer[CHAR_NEXT], scorer[CHAR_BACKOFF], scorer[CHAR_SUFFIX],
        scorer[CHAR_INTS][VOCAB], scorer[WEIGHTS][CHAR_UNK_LOGP], state, char,
    )  # fmt: skip


@njit(cache=True, nogil=True, inline="always")
def _lookahead(scorer, node: int) -> float:
    """The best log10 p of a word the unfinished ``node`` can become (0 for none begun or outside)."""
    return scorer[TRIE_LOOKAHEAD][node] if node > ROOT else 0.0


@njit(cache=True, nogil=True)
def _complete_word(scorer, state: int, node: int):
    """Scoring the word that ends at ``node``: (allowed, score change, next LM state)."""
    weights = scorer[WEIGHTS]
    extra = 0.0
    if node == OUTSIDE:
        word = scorer[LM_INTS][UNK]
    elif scorer[TRIE_WORD][node] >= 0:
        word = scorer[TRIE_WORD][node]
    elif weights[UNK_SCORE] > NEG_INF:  # the start of lexicon words, but none itself: an unknown word
        word, extra = scorer[LM_INTS][UNK], weights[UNK_SCORE]
    else:
        return False, 0.0, state
    logp, after = lm_logp(scorer, state, word)
    return True, weights[LM_WEIGHT] * (logp - _lookahead(scorer, node)) + weights[WORD_SCORE] + extra, after


@njit(cache=True, nogil=True)
def extend_score(scorer, state: int, node: int, last: int, length: int, c: int):
    """What appending label ``c`` to a prefix (LM ``state``, lexicon ``node``, ``last`` label, ``length``)
    does to its scorer fields: (allowed, score change, next state, next node)."""
    mode = scorer[MODE]
    if mode == NO_SCORER:
        return True, 0.0, state, node
    separator = scorer[SEPARATOR]
    if c == separator and (length == 0 or last == separator):
        return False, 0.0, state, node
    weights = scorer[WEIGHTS]
    if mode == CHARACTERS:
        logp, after = lm_logp(scorer, state, scorer[LABEL_WORDS][c])
        return True, weights[LM_WEIGHT] * logp + (weights[WORD_SCORE] if c == separator else 0.0), after, ROOT
    states = scorer[CHAR_INTS][STATES]
    word_state, char_state = state // states, state % states
    spelled = 0.0
    if weights[CHAR_WEIGHT] != 0.0:
        logp, char_state = char_logp(scorer, char_state, scorer[CHAR_LABEL_WORDS][c])
        spelled = weights[CHAR_WEIGHT] * logp
    allowed, change, word_state, child = _extend_word(scorer, word_state, node, c)
    return allowed, change + spelled, word_state * states + char_state, child


@njit(cache=True, nogil=True)
def _extend_word(scorer, state: int, node: int, c: int):
    """``extend_score`` of a lexicon's word LM alone (``state``: its context)."""
    weights = scorer[WEIGHTS]
    if c == scorer[SEPARATOR]:
        allowed, change, after = _complete_word(scorer, state, node)
        return allowed, change, after, ROOT
    if node == OUTSIDE:
        return True, 0.0, state, OUTSIDE
    start, end = scorer[TRIE_START][node], scorer[TRIE_START][node + 1]
    for k in range(start, end):
        if scorer[TRIE_LABEL][k] == c:
            child = scorer[TRIE_CHILD][k]
            return True, weights[LM_WEIGHT] * (_lookahead(scorer, child) - _lookahead(scorer, node)), state, child
    if weights[UNK_SCORE] > NEG_INF:
        return True, weights[UNK_SCORE] - weights[LM_WEIGHT] * _lookahead(scorer, node), state, OUTSIDE
    return False, 0.0, state, node


@njit(cache=True, nogil=True)
def end_score(scorer, state: int, node: int, last: int) -> float:
    """The score of ending a prefix (``last``: its last label) here: its last word completed, then
    ``</s>`` (-inf: not allowed, as after a word separator)."""
    mode = scorer[MODE]
    if mode == NO_SCORER:
        return 0.0
    if last == scorer[SEPARATOR]:
        return NEG_INF
    weights = scorer[WEIGHTS]
    change = 0.0
    if mode == LEXICON:
        states = scorer[CHAR_INTS][STATES]
        char_state, state = state % states, state // states
        if weights[CHAR_WEIGHT] != 0.0:
            change = weights[CHAR_WEIGHT] * char_logp(scorer, char_state, scorer[CHAR_INTS][EOS])[0]
        if node != ROOT:
            allowed, completed, state = _complete_word(scorer, state, node)
            if not allowed:
                return NEG_INF
            change += completed
    return change + weights[LM_WEIGHT] * lm_logp(scorer, state, scorer[LM_INTS][EOS])[0]


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
    lm: np.ndarray,
    state: np.ndarray,
    node: np.ndarray,
    live: int,
    lp: np.ndarray,
    blank: int,
    beam_size: int,
    token_beam: int,
    min_logp: float,
    prune_threshold: float,
    viterbi: bool,
    scorer,
):
    """One frame ``lp`` (vocab,) of the search: the next beam (nine new arrays of ``beam_size`` slots), for
    each of its slots the slot it came from and the label it appended (-1: none), its number of live
    hypotheses, and the number of candidates it formed (stays and extensions of the live hypotheses).
    Candidates are ranked and pruned by their acoustic score plus their scorer's ``lm``."""
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
    score = np.empty(size)  # acoustic + lm: what ranks the candidates
    acoustic = np.empty(size)
    source = np.empty(size, dtype=np.int64)
    label = np.empty(size, dtype=np.int64)
    ext_lm = np.empty(size)
    ext_state = np.empty(size, dtype=np.int64)
    ext_node = np.empty(size, dtype=np.int64)
    n = 0
    for i in range(live):
        s = _plus(stay_pb[i], stay_pnb[i], viterbi)
        if s > NEG_INF:  # False for NaN too: a diverged model's frame leaves nothing live
            score[n], acoustic[n], source[n], label[n] = s + lm[i], s, i, -1
            n += 1
    for i in range(live):
        for k in range(n_tok):
            c = tokens[k]
            if taken[i, c]:
                continue
            s = (pb[i] if c == last[i] else total[i]) + lp[c]
            if s > NEG_INF:
                allowed, change, after, child = extend_score(scorer, state[i], node[i], last[i], length[i], c)
                if allowed:
                    score[n], acoustic[n], source[n], label[n] = s + lm[i] + change, s, i, c
                    ext_lm[n], ext_state[n], ext_node[n] = lm[i] + change, after, child
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
    new_lm = np.zeros(beam_size)
    new_state = np.zeros(beam_size, dtype=np.int64)
    new_node = np.zeros(beam_size, dtype=np.int64)
    src = np.full(beam_size, -1, dtype=np.int64)
    app = np.full(beam_size, -1, dtype=np.int64)
    for k in range(kept):
        index = order[k]
        i, c = source[index], label[index]
        src[k], app[k] = i, c
        if c < 0:
            new_pb[k], new_pnb[k] = stay_pb[i], stay_pnb[i]
            new_last[k], new_length[k], new_hash[k], new_parent[k] = last[i], length[i], hsh[i], parent[i]
            new_lm[k], new_state[k], new_node[k] = lm[i], state[i], node[i]
        else:
            new_pnb[k] = acoustic[index]
            new_last[k], new_length[k] = c, length[i] + 1
            new_hash[k], new_parent[k] = hsh[i] * HASH_BASE + np.uint64(c + 1), hsh[i]
            new_lm[k], new_state[k], new_node[k] = ext_lm[index], ext_state[index], ext_node[index]
    return (
        new_pb, new_pnb, new_last, new_length, new_hash, new_parent, new_lm, new_state, new_node, src, app, kept, size,
    )  # fmt: skip


@njit(cache=True, nogil=True)
def empty_beam(beam_size: int, blank: int, start_state: int):
    """The search's start: the empty prefix alone, with probability 1 (one live slot), in the scorer's
    start state (``scorer[LM_INTS][START]``)."""
    pb = np.full(beam_size, NEG_INF)
    pb[0] = 0.0
    state = np.zeros(beam_size, dtype=np.int64)
    state[0] = start_state
    return (
        pb,
        np.full(beam_size, NEG_INF),
        np.full(beam_size, blank, dtype=np.int64),
        np.zeros(beam_size, dtype=np.int64),
        np.zeros(beam_size, dtype=np.uint64),
        np.full(beam_size, NO_PARENT, dtype=np.uint64),
        np.zeros(beam_size),
        state,
        np.zeros(beam_size, dtype=np.int64),
        1,
    )


@njit(cache=True, nogil=True)
def final_order(pb, pnb, last, lm, state, node, live: int, viterbi: bool, scorer):
    """The live slots best first by their final score (acoustic + lm + ``end_score``), and those scores.
    When no prefix may end (a closed lexicon whose every prefix is inside a word), they are ranked
    without ``end_score``: the best prefix as spelled rather than nothing."""
    final = np.empty(live)
    ended = 0
    for k in range(live):
        final[k] = _plus(pb[k], pnb[k], viterbi) + lm[k] + end_score(scorer, state[k], node[k], last[k])
        if final[k] > NEG_INF:
            ended += 1
    if ended == 0:
        for k in range(live):
            final[k] = _plus(pb[k], pnb[k], viterbi) + lm[k]
    order = np.argsort(-final, kind="mergesort")
    return order, final[order]


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
    scorer,
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
        pb, pnb, last, length, hsh, parent, lm, state, node, live = empty_beam(beam_size, blank, scorer[LM_INTS][START])
        for t in range(n):
            pb, pnb, last, length, hsh, parent, lm, state, node, src, app, live, formed = step(
                pb, pnb, last, length, hsh, parent, lm, state, node, live, log_probs[b, t], blank, beam_size,
                token_beam, min_logp, prune_threshold, viterbi, scorer,
            )  # fmt: skip
            source[t], appended[t] = src, app
            candidates += formed
        steps += n
        order, final = final_order(pb, pnb, last, lm, state, node, live, viterbi, scorer)
        for k in range(min(nbest, live)):  # read the labels back along the back-pointers
            if not final[k] > NEG_INF:
                break
            scores[b, k] = final[k]
            counts[b, k] = length[order[k]]
            slot, position = order[k], length[order[k]]
            for t in range(n - 1, -1, -1):
                if appended[t, slot] >= 0:
                    position -= 1
                    labels[b, k, position] = appended[t, slot]
                slot = source[t, slot]
    return labels, counts, scores, candidates, steps
