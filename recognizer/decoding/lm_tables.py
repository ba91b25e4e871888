"""Language models and lexicons for the ``lm`` decoder: reading them, checking them against the model's
alphabet, and laying them out as the arrays the compiled search reads (``beam_kernel``'s *scorer*).

* An **ARPA n-gram model** (``recognizer-lm`` writes them; KenLM's ``lmplz`` too) becomes sorted
  ``uint64`` keys ``context x vocabulary + word`` with their log10 probabilities and the context each
  n-gram leads to, plus each context's back-off weight and shorter suffix: the back-off query is a few
  binary searches (``beam_kernel.lm_logp``). Every n-gram below the highest order is a context.
* A **lexicon** (``word<whitespace>spelling tokens``, flashlight-text's format, which ``recognizer-lm
  --lexicon`` writes, spellings ending with the separator ``|``) becomes a trie over the model's labels
  in CSR form: each node's children (label, node), the LM word that ends there, and the best unigram
  log10 p of the words below it (the look-ahead for an unfinished word).
"""

from __future__ import annotations

import logging
import math
import os
from collections import Counter
from collections.abc import Collection, Container, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..ctc import UNK, WORD_BOUNDARY

log = logging.getLogger(__name__)

BOS, EOS = "<s>", "</s>"
#: KenLM's log10 p(<unk>) for a model without an <unk> unigram
MISSING_UNK_LOG10 = -100.0


class LexiconError(ValueError):
    """A lexicon or language model that cannot be used with the model; the message names the file."""


def read_lexicon(path: str | os.PathLike) -> dict[str, list[list[str]]]:
    """A flashlight-text lexicon: ``word<whitespace>t o k e n s`` per line -> word -> its spellings."""
    lexicon: dict[str, list[list[str]]] = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) < 2:
                raise LexiconError(f"{path}:{number}: expected a word and its spelling, got {line.strip()!r}")
            lexicon.setdefault(fields[0], []).append(fields[1:])
    if not lexicon:
        raise LexiconError(f"{path}: the lexicon is empty")
    return lexicon


def is_arpa(path: str | os.PathLike) -> bool:
    """Whether a file is an ARPA text model (else, e.g., a KenLM binary)."""
    with open(path, "rb") as f:
        return f.read(64).lstrip()[:6] == b"\\data\\"


def arpa_vocabulary(path: str | os.PathLike) -> set[str] | None:
    """The unigrams of an ARPA file, or None for a KenLM binary (which cannot be read without KenLM)."""
    if not is_arpa(path):
        return None
    words = set()
    with open(path, encoding="utf-8") as f:
        section = None
        for line in f:
            line = line.strip()
            if line.startswith("\\"):
                section = line
                if section == "\\2-grams:" or section == "\\end\\":
                    break
            elif section == "\\1-grams:" and line:
                fields = line.split()
                if len(fields) >= 2:
                    words.add(fields[1])
    return words


def file_key(path: str | os.PathLike | None) -> tuple[str, float] | None:
    """A file's identity for caching what was loaded from it (resolved path and modification time)."""
    if path is None:
        return None
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    return str(path.resolve()), path.stat().st_mtime


def check_character_lm(path: str, vocabulary: Container[str], tokens: Sequence[str]) -> None:
    """A character LM (without a lexicon, or as ``char_lm`` beside one) scores the model's characters
    (``tokens``: ``decoder_tokens``): most of them must be in its vocabulary."""
    known = sum(t in vocabulary for t in tokens[1:])
    if known < (len(tokens) - 1) / 2:
        raise LexiconError(
            f"{path}: only {known} of the model's {len(tokens) - 1} characters are in this LM's "
            f"vocabulary; a character LM (recognizer-lm --unit char) in the model's case is needed here "
            f"(a word LM goes with a lexicon)"
        )


def check_lexicon_in_lm(path: str, vocabulary: Container[str], words: Collection[str]) -> None:
    """A lexicon's words against a word LM's vocabulary: none of them is an error, some missing a warning
    (they are scored as ``<unk>``)."""
    missing = [w for w in words if w not in vocabulary]
    if len(missing) == len(words):
        raise LexiconError(f"{path}: none of the lexicon's words is in the LM; check their case")
    if missing:
        log.warning(
            "%s: %d lexicon words are not in the LM (scored as <unk>), e.g. %s", path, len(missing), missing[:5]
        )


def decoder_tokens(alphabet: str) -> list[str]:
    """The LM decoder's token per label: the blank, then the alphabet with the space as ``|``."""
    if " " not in alphabet:
        raise LexiconError(f"the model's alphabet {alphabet!r} has no space, which the LM decoder needs between words")
    if WORD_BOUNDARY in alphabet:
        raise LexiconError(
            f"the model's alphabet has both ' ' and {WORD_BOUNDARY!r}; the LM decoder uses {WORD_BOUNDARY!r} for spaces"
        )
    return ["<blank>", *(WORD_BOUNDARY if c == " " else c for c in alphabet)]


@dataclass(frozen=True)
class NgramTables:
    """An ARPA model as arrays (see the module docstring); probabilities and back-offs are log10."""

    words: dict[str, int]  # the LM's vocabulary -> word id
    keys: np.ndarray  # uint64, sorted: context state x len(words) + word
    probs: np.ndarray  # float64 per key: log10 p(word | context)
    next_state: np.ndarray  # int64 per key: the longest context the n-gram leads to
    backoff: np.ndarray  # float64 per state
    suffix: np.ndarray  # int64 per state: the state of the context without its first word (0: empty)
    start: int  # the state after <s>
    order: int

    @property
    def unk(self) -> int:
        return self.words[UNK]

    @property
    def eos(self) -> int:
        return self.words[EOS]

    @property
    def unk_logp(self) -> float:
        """log10 p(<unk>) with the empty context."""
        return self.unigram(self.unk)

    def unigram(self, word: int) -> float:
        """log10 p(word) with the empty context (state 0); -inf for a word without a unigram."""
        i = int(np.searchsorted(self.keys, np.uint64(word)))
        found = i < len(self.keys) and self.keys[i] == np.uint64(word)
        return float(self.probs[i]) if found else -math.inf


def read_arpa(path: str | os.PathLike) -> NgramTables:
    """Read an ARPA n-gram model; a malformed one is a :class:`LexiconError` naming the file and line."""
    words: dict[str, int] = {}
    grams: list[tuple[tuple[int, ...], float]] = []
    backoffs: dict[tuple[int, ...], float] = {}
    announced: dict[int, int] = {}  # the header's "ngram k=count" lines
    order, section = 0, 0
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            line = line.strip()
            if line.startswith("ngram "):
                n_text, _, count_text = line[6:].partition("=")
                if not (n_text.strip().isdigit() and count_text.strip().isdigit()):
                    raise LexiconError(f"{path}:{number}: not an ARPA header line: {line!r}")
                announced[int(n_text)] = int(count_text)
                continue
            if not line or line == "\\data\\":
                continue
            if line == "\\end\\":
                break
            if line.startswith("\\") and line.endswith("-grams:"):
                try:
                    section = int(line[1:].split("-")[0])
                except ValueError:
                    raise LexiconError(f"{path}:{number}: not an ARPA section header: {line!r}") from None
                order = max(order, section)
                continue
            fields = line.split()
            if not section or len(fields) not in (section + 1, section + 2):
                raise LexiconError(
                    f"{path}:{number}: expected log10 p, {section or 'n'} words and a back-off: {line!r}"
                )
            try:
                logp = float(fields[0])
                backoff = float(fields[section + 1]) if len(fields) == section + 2 else 0.0
            except ValueError:
                raise LexiconError(f"{path}:{number}: not a number in {line!r}") from None
            gram = tuple(words.setdefault(word, len(words)) for word in fields[1 : section + 1])
            grams.append((gram, logp))
            if len(fields) == section + 2:
                backoffs[gram] = backoff
    if not grams:
        raise LexiconError(f"{path}: no n-grams (not an ARPA model?)")
    found = Counter(len(gram) for gram, _ in grams)
    for n, count in sorted(announced.items()):
        if found[n] != count:
            raise LexiconError(
                f"{path}: the header announces {count} {n}-grams, the file holds {found[n]} (truncated?)"
            )
    for special in (UNK, BOS, EOS):
        words.setdefault(special, len(words))
    if (words[UNK],) not in {gram for gram, _ in grams if len(gram) == 1}:
        grams.append(((words[UNK],), MISSING_UNK_LOG10))
    return _tables(words, grams, backoffs, order)


def _tables(
    words: dict[str, int],
    grams: list[tuple[tuple[int, ...], float]],
    backoffs: dict[tuple[int, ...], float],
    order: int,
) -> NgramTables:
    states: dict[tuple[int, ...], int] = {(): 0}
    for gram, _ in grams:
        if len(gram) < order:
            states.setdefault(gram, len(states))
    for gram, _ in grams:  # a context an n-gram needs but the file lacks: back-off 0, as KenLM assumes
        states.setdefault(gram[:-1], len(states))

    def longest_state(gram: tuple[int, ...]) -> int:
        while gram not in states:
            gram = gram[1:]
        return states[gram]

    backoff = np.zeros(len(states))
    suffix = np.zeros(len(states), dtype=np.int64)
    for gram, state in states.items():
        backoff[state] = backoffs.get(gram, 0.0)
        suffix[state] = longest_state(gram[1:]) if gram else 0
    vocab = np.uint64(len(words))
    keys = np.array([np.uint64(states[g[:-1]]) * vocab + np.uint64(g[-1]) for g, _ in grams], dtype=np.uint64)
    probs = np.array([p for _, p in grams], dtype=np.float64)
    next_state = np.array([longest_state(g) for g, _ in grams], dtype=np.int64)
    sort = np.argsort(keys, kind="stable")
    return NgramTables(
        words=words,
        keys=keys[sort],
        probs=probs[sort],
        next_state=next_state[sort],
        backoff=backoff,
        suffix=suffix,
        start=states.get((words[BOS],), 0),
        order=order,
    )


def empty_tables() -> NgramTables:
    """No LM: every word scores log10 p = 0 (a lexicon alone constrains the search)."""
    words = {UNK: 0, BOS: 1, EOS: 2}
    return NgramTables(
        words=words,
        keys=np.array([words[UNK], words[EOS]], dtype=np.uint64),  # the empty context's only words
        probs=np.zeros(2),
        next_state=np.zeros(2, dtype=np.int64),
        backoff=np.zeros(1),
        suffix=np.zeros(1, dtype=np.int64),
        start=0,
        order=0,
    )


@dataclass(frozen=True)
class LexiconTrie:
    """A lexicon's spellings over the model's labels, in CSR form (node 0 is the root)."""

    start: np.ndarray  # int64 (nodes + 1,): node n's children are entries start[n]:start[n + 1]
    label: np.ndarray  # int64 per entry: the label leading to the child
    child: np.ndarray  # int64 per entry
    word: np.ndarray  # int64 per node: the LM word ending there, -1: none
    lookahead: np.ndarray  # float64 per node: the best unigram log10 p of a word at or below it


def build_trie(spellings: dict[str, list[list[int]]], lm: NgramTables) -> LexiconTrie:
    """The trie of ``word -> label spellings`` (without the separator); a word the LM lacks is its <unk>.
    Two words spelled alike end at one node, as the more probable of them."""
    children: list[dict[int, int]] = [{}]
    word = [-1]
    for text, labels_list in spellings.items():
        word_id = lm.words.get(text, lm.unk)
        for labels in labels_list:
            node = 0
            for label in labels:
                if label not in children[node]:
                    children[node][label] = len(children)
                    children.append({})
                    word.append(-1)
                node = children[node][label]
            if word[node] < 0 or lm.unigram(word_id) > lm.unigram(word[node]):
                word[node] = word_id
    lookahead = np.full(len(children), -math.inf)
    for node in range(len(children) - 1, -1, -1):  # children are numbered after their parents
        if word[node] >= 0:
            lookahead[node] = lm.unigram(word[node])
        for child in children[node].values():
            lookahead[node] = max(lookahead[node], lookahead[child])
    start = np.zeros(len(children) + 1, dtype=np.int64)
    start[1:] = np.cumsum([len(c) for c in children])
    entries = [item for c in children for item in sorted(c.items())]
    return LexiconTrie(
        start=start,
        label=np.array([label for label, _ in entries], dtype=np.int64),
        child=np.array([child for _, child in entries], dtype=np.int64),
        word=np.array(word, dtype=np.int64),
        lookahead=lookahead,
    )


def lexicon_spellings(path: str | os.PathLike, tokens: Sequence[str]) -> dict[str, list[list[int]]]:
    """A lexicon file's spellings as the model's labels (``tokens``: ``decoder_tokens``), without the
    final separator. Words with a character the model cannot output are left out, with a warning; a
    lexicon none of whose words the model can spell is an error."""
    index = {token: label for label, token in enumerate(tokens) if label}
    usable: dict[str, list[list[int]]] = {}
    unusable = []
    entries = read_lexicon(path)
    for word, spellings in entries.items():
        labels = []
        for spelling in spellings:
            if spelling[-1] == WORD_BOUNDARY:  # flashlight's CTC lexicons end each spelling with it
                spelling = spelling[:-1]
            if spelling and all(t in index and t != WORD_BOUNDARY for t in spelling):
                labels.append([index[t] for t in spelling])
        if labels:
            usable[word] = labels
        else:
            unusable.append(word)
    if not usable:
        raise LexiconError(
            f"{path}: no word is spelled with the model's characters {''.join(tokens[1:])!r} "
            f"(e.g. {unusable[:3]}); check the lexicon's case and its word separator ({WORD_BOUNDARY!r})"
        )
    if unusable:
        log.warning(
            "%s: %d of %d words use characters the model cannot output and are left out, e.g. %s",
            path,
            len(unusable),
            len(entries),
            unusable[:5],
        )
    return usable


def make_scorer(
    mode: int,
    separator: int,
    lm_weight: float,
    word_score: float,
    unk_score: float,
    lm: NgramTables,
    label_words: np.ndarray,
    trie: LexiconTrie | None,
    char_lm: NgramTables | None = None,
    char_label_words: np.ndarray | None = None,
    char_weight: float = 0.0,
) -> tuple:
    """The tuple ``beam_kernel`` reads (its field order: ``beam_kernel.MODE`` ...), every field in the one
    type the kernels are compiled for. ``char_lm`` (with ``char_label_words``, each label's character in
    it) scores every label beside a lexicon's word LM, weighted by ``char_weight``."""
    from . import beam_kernel as k

    if char_lm is None or char_label_words is None:
        char_lm, char_label_words, char_weight = empty_tables(), np.zeros(0, dtype=np.int64), 0.0
    char_states = len(char_lm.backoff)
    if len(lm.backoff) * char_states >= 2**63:  # the two LMs' states share one int64 per prefix
        raise LexiconError(
            f"a word LM of {len(lm.backoff)} contexts and a character LM of {char_states} cannot be searched "
            "together (too many pairs of contexts): prune one of them"
        )
    fields: list = [None] * 22
    fields[k.MODE] = int(mode)
    fields[k.SEPARATOR] = int(separator)
    fields[k.WEIGHTS] = np.array(
        [lm_weight, word_score, unk_score, lm.unk_logp, char_weight, char_lm.unk_logp], dtype=np.float64
    )
    fields[k.KEYS], fields[k.PROBS], fields[k.NEXT], fields[k.BACKOFF], fields[k.SUFFIX] = _arrays(lm)
    # the search starts in both LMs' state after <s> (the character LM's: 0 states apart, as it has one)
    start = lm.start * char_states + char_lm.start
    fields[k.LM_INTS] = np.array([len(lm.words), start, lm.eos, lm.unk], dtype=np.int64)
    fields[k.LABEL_WORDS] = np.ascontiguousarray(label_words, dtype=np.int64)
    chars = _arrays(char_lm)
    fields[k.CHAR_KEYS], fields[k.CHAR_PROBS], fields[k.CHAR_NEXT], fields[k.CHAR_BACKOFF], fields[k.CHAR_SUFFIX] = (
        chars
    )
    fields[k.CHAR_INTS] = np.array(
        [len(char_lm.words), char_lm.start, char_lm.eos, char_lm.unk, char_states], dtype=np.int64
    )
    fields[k.CHAR_LABEL_WORDS] = np.ascontiguousarray(char_label_words, dtype=np.int64)
    trie = trie or LexiconTrie(
        start=np.zeros(2, dtype=np.int64),
        label=np.zeros(0, dtype=np.int64),
        child=np.zeros(0, dtype=np.int64),
        word=np.full(1, -1, dtype=np.int64),
        lookahead=np.zeros(1),
    )
    fields[k.TRIE_START] = np.ascontiguousarray(trie.start, dtype=np.int64)
    fields[k.TRIE_LABEL] = np.ascontiguousarray(trie.label, dtype=np.int64)
    fields[k.TRIE_CHILD] = np.ascontiguousarray(trie.child, dtype=np.int64)
    fields[k.TRIE_WORD] = np.ascontiguousarray(trie.word, dtype=np.int64)
    fields[k.TRIE_LOOKAHEAD] = np.ascontiguousarray(trie.lookahead, dtype=np.float64)
    return tuple(fields)


def _arrays(lm: NgramTables) -> tuple[np.ndarray, ...]:
    """An LM's keys, probabilities, next states, back-offs and suffixes, in the kernels' types."""
    return (
        np.ascontiguousarray(lm.keys, dtype=np.uint64),
        np.ascontiguousarray(lm.probs, dtype=np.float64),
        np.ascontiguousarray(lm.next_state, dtype=np.int64),
        np.ascontiguousarray(lm.backoff, dtype=np.float64),
        np.ascontiguousarray(lm.suffix, dtype=np.int64),
    )


def no_scorer() -> tuple:
    """The scorer of the acoustic search (the ``beam`` decoder): no LM, no lexicon."""
    from . import beam_kernel as k

    return make_scorer(k.NO_SCORER, -1, 0.0, 0.0, -math.inf, empty_tables(), np.zeros(0, dtype=np.int64), None)
