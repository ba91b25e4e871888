"""N-gram language models for CTC beam search: interpolated modified Kneser-Ney in ARPA format, and lexicons.

    recognizer-lm --manifest data/an4/train.jsonl --checkpoint model.ckpt --order 3 --out lm.arpa --lexicon lexicon.txt
    recognizer-lm --manifest data/an4/train.jsonl --case upper --order 3 --out lm.arpa --lexicon lexicon.txt
    recognizer-lm --text corpus.txt --unit char --order 6 --out chars.arpa

``recognizer-lm`` normalizes the text with the model's :class:`~recognizer.tokenizer.Tokenizer`, read from
``--checkpoint`` or built from the flags the DataModule takes (``--alphabet``, ``--case``, ``--keep``,
``--unknown``, ``--replacement``), so that the LM's words and characters are the ones the model outputs.
Characters outside the alphabet follow the ``unknown`` policy: an error naming the line (the default),
``drop`` or ``replace``; without an alphabet (no ``--checkpoint`` or ``--alphabet``) the text's own
characters are the alphabet and only case folding and ``--keep`` apply.

The estimate is the one of KenLM's ``lmplz`` (Chen & Goodman 1998, interpolated, three discounts per
order), written so that KenLM, and flashlight-text's decoders built on it, read it as an lmplz file:

* Each sentence is ``<s> tokens </s>`` with a single ``<s>``. The highest order uses raw counts; lower
  orders use continuation counts (the number of distinct tokens seen to the left), except n-grams that
  begin with ``<s>``, which nothing can precede and which therefore keep their raw counts.
* Discounts D1, D2, D3+ per order come from that order's count-of-counts n1..n4 (Chen & Goodman's
  eq. 26). Where they cannot be estimated (n1, n2 or n3 is zero, as in tiny corpora or in character
  unigrams, which are rarely singletons) or fall outside (0, k], the whole order uses
  ``fallback_discounts`` (lmplz's ``--discount_fallback`` defaults 0.5, 1, 1.5) and a warning is logged.
* Unigrams are interpolated with the uniform distribution over the vocabulary without ``<s>``
  (lmplz's default ``--interpolate_unigrams``). ``<unk>`` has count 0, so it receives exactly its
  share of that uniform mass: gamma(empty context) / (vocabulary size without ``<s>``). ``<s>`` is
  never predicted: its log-probability is -99, but it has a backoff weight as the first context of
  every sentence.
* The backoff weight of a context is its interpolation weight gamma, so the ARPA back-off query
  reproduces the interpolated model exactly and every conditional distribution sums to one.
* Orders longer than every sentence (with ``<s>`` and ``</s>``) are dropped rather than written empty.
  Order 1 is supported, but KenLM (and so flashlight-text) only loads models of order 2 or more.
* Blank sentences are skipped; the reserved words ``<s>`` and ``</s>`` may not occur in the text
  (a literal ``<unk>`` is the unknown word, as in lmplz).

Character models (``unit="char"``) treat each character as a token and the space between words as
the token :data:`WORD_BOUNDARY` (``|``, the word separator of wav2letter/flashlight lexicons), so the
decoder must map the acoustic model's space to ``|``. No ``|`` is added at sentence starts or ends,
because the tokenizer's transcripts never start or end with a space.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np

from .ctc import UNK, WORD_BOUNDARY
from .tokenizer import CASE, Case, Tokenizer, TokenizerError, Unknown

log = logging.getLogger(__name__)

BOS = "<s>"
EOS = "</s>"
SPECIAL = (UNK, BOS, EOS)  # their ids 0, 1, 2 (lmplz's order)
#: lmplz's --discount_fallback defaults, for adjusted counts 1, 2 and 3+
FALLBACK_DISCOUNTS = (0.5, 1.0, 1.5)
BOS_LOG10_PROB = -99.0

Unit = Literal["word", "char"]
Discounting = Literal["modified-kneser-ney", "kneser-ney"]


def tokenize(sentence: str, unit: Unit = "word", space_token: str = WORD_BOUNDARY) -> list[str]:
    """Split a sentence into LM tokens: words on whitespace, or characters with spaces as ``space_token``."""
    if unit == "word":
        return sentence.split()
    if unit != "char":
        raise ValueError(f"unit={unit!r}: expected 'word' or 'char'")
    text = " ".join(sentence.split())
    if len(space_token) == 1 and space_token in text:
        # A literal boundary character would be indistinguishable from a space.
        raise ValueError(f"the text contains the space token {space_token!r}: {sentence!r}")
    return [space_token if c == " " else c for c in text]


def estimate_discounts(
    count_of_counts: Sequence[int],
    discounts: Discounting = "modified-kneser-ney",
    fallback: Sequence[float] = FALLBACK_DISCOUNTS,
) -> tuple[tuple[float, float, float], bool]:
    """Discounts (D1, D2, D3+) from one order's count-of-counts (n1, n2, n3, n4) -> (discounts, fell_back).

    Modified Kneser-Ney uses Chen & Goodman's closed form ``D_k = k - (k+1) Y n_{k+1} / n_k`` with
    ``Y = n1 / (n1 + 2 n2)``; plain Kneser-Ney uses ``D = Y`` for every count. If the estimate is
    undefined or a discount falls outside (0, k], ``fallback`` is returned instead: a zero discount
    would leave a context no mass to back off with (log10 of 0).
    """
    n1, n2, n3, n4 = (int(n) for n in count_of_counts)
    if discounts == "kneser-ney":
        if n1 > 0:
            d = n1 / (n1 + 2 * n2)
            return (d, d, d), False
        return (float(fallback[0]),) * 3, True
    if discounts != "modified-kneser-ney":
        raise ValueError(f"discounts={discounts!r}: expected 'modified-kneser-ney' or 'kneser-ney'")
    if n1 > 0 and n2 > 0 and n3 > 0:
        y = n1 / (n1 + 2 * n2)
        n = (n1, n2, n3, n4)
        estimate = tuple(k - (k + 1) * y * n[k] / n[k - 1] for k in (1, 2, 3))
        if all(0 < d <= k for k, d in zip((1, 2, 3), estimate)):
            return estimate, False  # type: ignore[return-value]
    return (float(fallback[0]), float(fallback[1]), float(fallback[2])), True


@dataclass
class NgramModel:
    """An estimated back-off model: per order, the n-grams with their log10 probabilities and backoffs.

    ``ngrams[n-1]`` holds the n-grams as space-joined tokens; ``log10_backoffs[n-1]`` is NaN for
    n-grams that are no context (never followed) and is empty for the highest order.
    """

    order: int
    vocab: list[str]
    ngrams: list[list[str]]
    log10_probs: list[np.ndarray]
    log10_backoffs: list[np.ndarray]
    discounts: list[tuple[float, float, float]]
    fell_back: list[bool]
    count_of_counts: list[tuple[int, int, int, int]]
    num_sentences: int = 0
    num_tokens: int = 0
    unit: str = "word"

    def to_arpa(self) -> str:
        """The model in ARPA format (backoffs written only for contexts, as lmplz omits zeros).

        No comment lines and a leading blank line: older KenLM readers reject anything else before
        ``\\data\\``.
        """
        header = ["", "\\data\\", *(f"ngram {n}={len(g)}" for n, g in enumerate(self.ngrams, start=1)), ""]
        parts = ["\n".join(header)]
        for n in range(1, self.order + 1):
            lines = [f"\\{n}-grams:"]
            probs = np.minimum(self.log10_probs[n - 1], 0.0).tolist()
            if n == self.order:
                lines += [f"{p:.7f}\t{g}" for p, g in zip(probs, self.ngrams[n - 1])]
            else:
                lines += [
                    f"{p:.7f}\t{g}" if b != b else f"{p:.7f}\t{g}\t{b:.7f}"  # b != b: NaN, not a context
                    for p, g, b in zip(probs, self.ngrams[n - 1], self.log10_backoffs[n - 1].tolist())
                ]
            parts.append("\n".join(lines) + "\n")
        parts.append("\\end\\\n")
        return "\n".join(parts)


def _encode(sentences: Iterable[str], unit: Unit, space_token: str) -> tuple[np.ndarray, list[str], int]:
    """Flatten sentences to ``<s> ids </s>`` id runs -> (ids, vocabulary by id, sentence count)."""
    vocab = {token: i for i, token in enumerate(SPECIAL)}
    ids: list[int] = []
    num_sentences = 0
    for sentence in sentences:
        tokens = tokenize(sentence, unit, space_token)
        if not tokens:
            continue
        num_sentences += 1
        ids.append(1)
        # setdefault evaluates len(vocab) before inserting: the new token's id.
        ids.extend([vocab.setdefault(t, len(vocab)) for t in tokens])
        ids.append(2)
    if not num_sentences:
        raise ValueError("no text to estimate a language model from (every sentence is blank)")
    array = np.asarray(ids, dtype=np.int64)
    # Counting the markers once is far cheaper than testing every sentence for them.
    for special in (1, 2):
        if np.count_nonzero(array == special) != num_sentences:
            raise ValueError(f"the text contains the reserved token {SPECIAL[special]!r}")
    return array, list(vocab), num_sentences


def estimate(
    sentences: Iterable[str],
    order: int = 3,
    unit: Unit = "word",
    discounts: Discounting = "modified-kneser-ney",
    *,
    space_token: str = WORD_BOUNDARY,
    fallback_discounts: Sequence[float] = FALLBACK_DISCOUNTS,
) -> NgramModel:
    """Estimate an interpolated (modified) Kneser-Ney model; see the module docstring for conventions.

    N-grams are numbered order by order with numpy: an n-gram's key is (id of its (n-1)-gram prefix)
    * V + (last token), so each order is one ``np.unique`` over all token positions, and continuation
    counts are a ``bincount`` of the suffix ids of the distinct (n+1)-grams.
    """
    if order < 1:
        raise ValueError(f"order={order}: must be at least 1")
    if len(fallback_discounts) != 3 or not all(0 < d <= k for k, d in zip((1, 2, 3), fallback_discounts)):
        raise ValueError(f"fallback_discounts={tuple(fallback_discounts)}: need 0 < D_k <= k for k = 1, 2, 3")
    tokens, vocab, num_sentences = _encode(sentences, unit, space_token)
    V = len(vocab)
    length = len(tokens)
    # One past the end of each position's sentence: a window fits if it ends there or before.
    ends = np.flatnonzero(tokens == 2) + 1
    sentence_end = np.repeat(ends, np.diff(ends, prepend=0))
    positions = np.arange(length)
    longest = int(np.diff(ends, prepend=0).max())
    if order > longest:
        # Orders no sentence reaches would be empty sections, which KenLM's loader mishandles; the
        # model is the same without them (such n-grams all start with <s>, whose counts stay raw).
        log.warning("order %d: no sentence has %d tokens with <s> and </s>; writing order %d", order, order, longest)
        order = longest

    # Per order: n-gram id at every position (-1 where the window leaves the sentence), and per n-gram
    # its raw count, context (prefix) id, suffix id, last token and whether it starts with <s>.
    position_ids = [tokens]
    raw = [np.bincount(tokens, minlength=V)]
    context: list[np.ndarray] = [np.zeros(V, dtype=np.int64)]
    suffix: list[np.ndarray] = [np.zeros(V, dtype=np.int64)]
    last: list[np.ndarray] = [np.arange(V)]
    starts_bos = [np.arange(V) == 1]
    for n in range(2, order + 1):
        where = np.flatnonzero(positions + n <= sentence_end)
        previous = position_ids[-1]
        if len(raw[-1]) * V >= 2**62:
            raise OverflowError(f"too many {n - 1}-grams for 64-bit n-gram keys")
        keys = previous[where] * V + tokens[where + n - 1]
        unique, first, inverse, counts = np.unique(keys, return_index=True, return_inverse=True, return_counts=True)
        ids = np.full(length, -1, dtype=np.int64)
        ids[where] = inverse.reshape(-1)
        representative = where[first]
        position_ids.append(ids)
        raw.append(counts.astype(np.int64))
        context.append(unique // V)
        last.append(unique % V)
        suffix.append(previous[representative + 1])
        starts_bos.append(tokens[representative] == 1)

    # Adjusted counts: raw at the highest order and after <s>, otherwise distinct left extensions.
    adjusted = []
    for n in range(1, order + 1):
        if n == order:
            a = raw[n - 1].copy()
        else:
            a = np.bincount(suffix[n], minlength=len(raw[n - 1])).astype(np.int64)
            a[starts_bos[n - 1]] = raw[n - 1][starts_bos[n - 1]]
        if n == 1:
            a[1] = 0  # <s> is never predicted
        adjusted.append(a)

    model_discounts, fell_back, count_of_counts = [], [], []
    for n, a in enumerate(adjusted, start=1):
        n1, n2, n3, n4 = (int(x) for x in np.bincount(np.minimum(a, 5), minlength=6)[1:5])
        coc = (n1, n2, n3, n4)
        d, fallback = estimate_discounts(coc, discounts, fallback_discounts)
        if fallback:
            log.warning(
                "%d-grams: count-of-counts n1..n4 = %s give no usable Kneser-Ney discounts; using D1, D2, D3+ = %s",
                n,
                coc,
                tuple(fallback_discounts),
            )
        model_discounts.append(d)
        fell_back.append(fallback)
        count_of_counts.append(coc)

    # Interpolation, lowest order first: p(w|h) = (a - D(a)) / sum_w a(h w) + gamma(h) p(w|h').
    probs: list[np.ndarray] = []
    backoffs: list[np.ndarray] = []
    for n in range(1, order + 1):
        a = adjusted[n - 1]
        d_table = np.array((0.0, *model_discounts[n - 1]))
        discount = d_table[np.minimum(a, 3)]
        if n == 1:
            total = a.sum()
            gamma = discount.sum() / total
            p = (a - discount) / total + gamma / (V - 1)  # uniform over the vocabulary without <s>
        else:
            num_contexts = len(probs[-1])
            denominator = np.bincount(context[n - 1], weights=a, minlength=num_contexts)
            mass = np.bincount(context[n - 1], weights=discount, minlength=num_contexts)
            is_context = denominator > 0
            gamma = np.divide(mass, denominator, out=np.zeros(num_contexts), where=is_context)
            ctx = context[n - 1]
            p = (a - discount) / denominator[ctx] + gamma[ctx] * probs[-1][suffix[n - 1]]
            with np.errstate(divide="ignore"):
                backoffs.append(np.where(is_context, np.log10(np.where(is_context, gamma, 1.0)), np.nan))
        probs.append(p)
    backoffs.append(np.empty(0))

    log10_probs = [np.log10(p) for p in probs]
    log10_probs[0][1] = BOS_LOG10_PROB

    # Readable n-grams, built from their prefixes so each order costs one join per n-gram.
    ngrams = [list(vocab)]
    for n in range(2, order + 1):
        prefixes = ngrams[-1]
        ngrams.append([prefixes[c] + " " + vocab[w] for c, w in zip(context[n - 1].tolist(), last[n - 1].tolist())])

    return NgramModel(
        order=order,
        vocab=vocab,
        ngrams=ngrams,
        log10_probs=log10_probs,
        log10_backoffs=backoffs,
        discounts=model_discounts,
        fell_back=fell_back,
        count_of_counts=count_of_counts,
        num_sentences=num_sentences,
        num_tokens=length - 2 * num_sentences,
        unit=unit,
    )


def build_arpa(
    sentences: Iterable[str],
    order: int = 3,
    unit: Unit = "word",
    discounts: Discounting = "modified-kneser-ney",
    *,
    path: str | Path | None = None,
    space_token: str = WORD_BOUNDARY,
    fallback_discounts: Sequence[float] = FALLBACK_DISCOUNTS,
) -> str:
    """Train an interpolated (modified) Kneser-Ney n-gram model and return it as ARPA text.

    ``sentences`` are whitespace-tokenized words (``unit="word"``) or character strings whose spaces
    become ``space_token`` (``unit="char"``). If ``path`` is given the ARPA text is also written there.
    """
    model = estimate(sentences, order, unit, discounts, space_token=space_token, fallback_discounts=fallback_discounts)
    text = model.to_arpa()
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return text


def write_lexicon(
    words: Iterable[str],
    path: str | Path,
    spelling: Callable[[str], Sequence[str]] | None = None,
    boundary: str | None = WORD_BOUNDARY,
) -> Path:
    """Write a flashlight-text lexicon: ``word<TAB>s p e l l i n g |`` per distinct word, sorted.

    ``spelling`` maps a word to its tokens (default: its characters); ``boundary`` is appended to every
    spelling (None or "" appends nothing). LM markers (``<s>``, ``</s>``, ``<unk>``) are left out: the
    decoder adds them itself.
    """
    spell = spelling or list
    entries = sorted({w for w in words if w and w not in SPECIAL})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for word in entries:
            if any(c.isspace() for c in word):
                raise ValueError(f"lexicon word {word!r} contains whitespace")
            tokens = list(spell(word)) + ([boundary] if boundary else [])
            if not tokens or any(not t or any(c.isspace() for c in t) for t in tokens):
                raise ValueError(f"lexicon word {word!r}: unusable spelling {tokens!r}")
            f.write(f"{word}\t{' '.join(tokens)}\n")
    return path


def _read_texts(texts: Sequence[str], manifests: Sequence[str]) -> Iterator[tuple[str, str]]:
    """(where, sentence) for every line of the text files and every manifest entry's text."""
    for name in texts:
        with open(name, encoding="utf-8") as f:
            for number, line in enumerate(f, start=1):
                yield f"{name}:{number}", line.rstrip("\n")
    if manifests:
        from .manifest import read_manifest

        for name in manifests:
            for entry in read_manifest(name, required=("text",)):
                yield entry["source"], entry["text"]


def text_tokenizer(
    texts: Iterable[str],
    checkpoint: str | Path | None = None,
    alphabet: str | None = None,
    case: str | None = None,
    keep: str | None = None,
    unknown: str | None = None,
    replacement: str | None = None,
) -> Tokenizer:
    """The tokenizer that normalizes LM text as the model's transcripts are normalized.

    From ``checkpoint`` (its tokenizer; ``unknown`` and ``replacement`` may override its policy for the
    LM text), else from the settings, named as the DataModule's. Without an alphabet, the alphabet is
    built from ``texts`` (as the DataModule builds it from the training transcripts), so no character
    is outside it and only ``case`` and ``keep`` act.
    """
    policy: dict[str, Any] = {
        name: value for name, value in (("unknown", unknown), ("replacement", replacement)) if value is not None
    }
    if checkpoint is not None:
        given = [name for name, value in (("alphabet", alphabet), ("case", case), ("keep", keep)) if value is not None]
        if given:
            raise ValueError(f"{checkpoint}: the checkpoint's tokenizer sets {', '.join(given)}; give one or the other")
        from .checkpoint import read_checkpoint

        settings = read_checkpoint(checkpoint).get("hyper_parameters", {}).get("tokenizer")
        if not isinstance(settings, dict):
            raise ValueError(f"{checkpoint}: the checkpoint holds no tokenizer settings")
        return Tokenizer(**{**settings, **policy})
    normalization: dict[str, Any] = {"case": case or CASE, "keep": keep}
    if alphabet:
        return Tokenizer(alphabet=alphabet, **normalization, **policy)
    if policy:
        raise ValueError("unknown and replacement need an alphabet (or a checkpoint) to tell what is outside it")
    return Tokenizer.from_texts(texts, **normalization)


def main(argv: Sequence[str] | None = None) -> None:
    """``recognizer-lm``: build an ARPA n-gram model (and optionally a lexicon) from text or manifests."""
    parser = argparse.ArgumentParser(prog="recognizer-lm", description=__doc__.splitlines()[0])
    parser.add_argument("--text", action="append", default=[], help="plain text, one sentence per line (repeatable)")
    parser.add_argument(
        "--manifest", action="append", default=[], help="JSON-lines manifest; its 'text' fields (repeatable)"
    )
    parser.add_argument("--order", type=int, default=3, help="n-gram order (the lm decoder loads up to 6)")
    parser.add_argument("--unit", choices=("word", "char"), default="word")
    normalization = parser.add_argument_group(
        "text normalization",
        "The text is normalized as the model's transcripts are (recognizer.tokenizer.Tokenizer): from "
        "--checkpoint, or from the flags named as the DataModule's settings (data.alphabet, data.case, ...). "
        "Characters outside the alphabet follow --unknown: an error naming the line (the default), drop or "
        "replace. Without --checkpoint or --alphabet the text's own characters are the alphabet, so only "
        "--case and --keep apply.",
    )
    normalization.add_argument("--checkpoint", help="a model checkpoint: use its tokenizer's settings")
    normalization.add_argument("--alphabet", help="the model's characters (data.alphabet)")
    normalization.add_argument("--case", choices=get_args(Case), help=f"case folding (data.case; default: {CASE})")
    normalization.add_argument(
        "--keep", help="regular-expression character class; other characters are deleted (data.keep)"
    )
    normalization.add_argument(
        "--unknown",
        choices=get_args(Unknown),
        help="characters outside the alphabet (data.unknown; default: the checkpoint's policy, else error)",
    )
    normalization.add_argument("--replacement", help="the substitute for --unknown replace (data.replacement)")
    parser.add_argument("--discounts", choices=("modified-kneser-ney", "kneser-ney"), default="modified-kneser-ney")
    parser.add_argument(
        "--fallback-discounts",
        type=float,
        nargs=3,
        default=list(FALLBACK_DISCOUNTS),
        metavar=("D1", "D2", "D3"),
        help="discounts for orders whose count-of-counts give none (default: lmplz's 0.5 1 1.5)",
    )
    parser.add_argument("--space-token", default=WORD_BOUNDARY, help="token for spaces in char models (default: |)")
    parser.add_argument("--out", required=True, help="the ARPA file to write")
    parser.add_argument("--lexicon", help="also write a flashlight-text lexicon of the corpus's words here")
    parser.add_argument("--boundary", default=WORD_BOUNDARY, help="token ending every lexicon spelling ('' for none)")
    args = parser.parse_args(argv)
    if not args.text and not args.manifest:
        parser.error("give at least one --text or --manifest")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.order == 1:
        log.warning("order 1: KenLM (and flashlight-text's decoders) cannot load unigram models")

    start = time.perf_counter()
    lines = list(_read_texts(args.text, args.manifest))
    tokenizer = text_tokenizer(
        (text for _, text in lines),
        args.checkpoint,
        args.alphabet,
        args.case,
        args.keep,
        args.unknown,
        args.replacement,
    )
    try:
        texts = [tokenizer.target_text(text, where) for where, text in lines]
    except TokenizerError as error:
        raise TokenizerError(f"{error} (recognizer-lm: --unknown drop or --unknown replace)") from None
    if tokenizer.unknown_counts:
        log.warning(
            "%d character(s) outside the alphabet were %s: %s",
            sum(tokenizer.unknown_counts.values()),
            "dropped" if tokenizer.unknown == "drop" else f"replaced by {tokenizer.replacement!r}",
            dict(tokenizer.unknown_counts),
        )
    model = estimate(
        texts,
        args.order,
        args.unit,
        args.discounts,
        space_token=args.space_token,
        fallback_discounts=args.fallback_discounts,
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(model.to_arpa(), encoding="utf-8")
    counts = ", ".join(f"{n}-grams {len(g)}" for n, g in enumerate(model.ngrams, start=1))
    print(
        f"{out}: {model.num_sentences} sentences, {model.num_tokens} tokens; {counts} "
        f"({time.perf_counter() - start:.1f} s)",
        file=sys.stderr,
    )
    for n, (d, fell_back) in enumerate(zip(model.discounts, model.fell_back), start=1):
        print(
            f"  {n}-gram discounts D1 D2 D3+ = {d[0]:.4f} {d[1]:.4f} {d[2]:.4f}{' (fallback)' if fell_back else ''}",
            file=sys.stderr,
        )
    if args.lexicon:
        words = {w for t in texts for w in t.split()}
        lexicon = write_lexicon(words, args.lexicon, boundary=args.boundary or None)
        print(f"{lexicon}: {len(words - set(SPECIAL))} words", file=sys.stderr)


if __name__ == "__main__":
    main()
