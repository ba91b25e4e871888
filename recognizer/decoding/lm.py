"""The ``lm`` decoder: CTC prefix beam search with an n-gram language model and/or a lexicon.

Two modes, chosen by whether a lexicon is given:

* **Lexicon + word LM**: hypotheses can only spell words of the lexicon; each completed word is scored
  by the word n-gram LM, weighted by ``lm_weight``, plus ``word_score`` per word; an unfinished word
  is scored by the best word it can still become (look-ahead). A spelling may leave the lexicon only
  when ``unk_score`` is finite; it then pays ``unk_score`` once and is scored as the LM's ``<unk>``.
  Without an LM the lexicon alone constrains the search. A character LM (``char_lm``) may score every
  character beside the word LM, weighted by ``char_lm_weight``: words outside the lexicon are then
  spelled by it (the word and character LMs of the best handwriting recognizers); compiled engine only.
* **Lexicon-free + character LM**: any label sequence; every character is scored by a character n-gram
  LM (``recognizer-lm --unit char``), which suits open vocabularies (handwriting); ``word_score`` is
  added per word separator.

The end of the utterance is scored (its last word completed, then ``</s>``). LM scores are log10, as
in ARPA files and KenLM, so one ``lm_weight`` means the same in both engines:

* ``compiled`` (ours, ``beam_kernel`` with the ``lm_tables`` scorer): the prefix beam search of the
  ``beam`` decoder with the LM's state, word and look-ahead kept per prefix; reads ARPA files.
* ``flashlight`` (``flashlight.py``): flashlight-text's C++ decoders with KenLM; also reads KenLM
  binaries, which only KenLM can.

``engine="auto"`` (the default) takes ``compiled`` for an ARPA file (or a lexicon alone) and
``flashlight`` for a binary. The space of the model's alphabet is the word separator; LM files use
``|`` for it (``recognizer-lm``'s character models and lexicons, flashlight's convention).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np
from torch import Tensor

from ..ctc import WORD_BOUNDARY
from . import beam_kernel
from .base import Decoder, Hypothesis, option, register
from .beam import BEAM_SIZE_HELP, TOKEN_MIN_LOGP_HELP, BeamOptions, PrefixBeamStream, _prefix_beam_search
from .frames import collapse_blank_frames
from .lm_tables import (
    LexiconError,
    LexiconTrie,
    NgramTables,
    build_trie,
    check_character_lm,
    check_lexicon_in_lm,
    decoder_tokens,
    empty_tables,
    file_key,
    is_arpa,
    lexicon_spellings,
    make_scorer,
    read_arpa,
    read_lexicon,
)

log = logging.getLogger(__name__)

__all__ = ["LMDecoder", "LMOptions", "LexiconError", "read_lexicon"]

#: hypotheses kept per frame by the ``lm`` decoder: it needs more room than the plain beam search
DEFAULT_LM_BEAM_SIZE = 32
DEFAULT_LM_WEIGHT = 1.0
DEFAULT_WORD_SCORE = 0.0
#: leaving the lexicon is never allowed by default
DEFAULT_UNK_SCORE = float("-inf")
#: nats below the frame's best at which a hypothesis is dropped
DEFAULT_BEAM_THRESHOLD = 15.0
#: labels below this log-probability (p = 0.25 %) are not tried at a frame: the LM search forms a candidate
#: per label and live hypothesis, and from -8 to -6 no AN4 transcript changed on two models while the
#: search ran 1.3-2.2x faster (benchmarks/RESULTS.md, "the LM decoder compiled")
DEFAULT_LM_TOKEN_MIN_LOGP = -6.0
Engine = Literal["auto", "compiled", "flashlight"]


@dataclass(frozen=True)
class LMOptions(BeamOptions):
    """The prefix beam search's settings (with a wider default beam) and the LM's: see the module docstring."""

    beam_size: int = option(DEFAULT_LM_BEAM_SIZE, BEAM_SIZE_HELP, flag="--beam")
    token_min_logp: float | None = option(DEFAULT_LM_TOKEN_MIN_LOGP, TOKEN_MIN_LOGP_HELP)
    lm: str | None = option(None, "n-gram LM (ARPA or KenLM binary): a word LM with --lexicon, a character LM without")
    lexicon: str | None = option(
        None, "lexicon file (recognizer-lm --lexicon); without it the LM decoder is lexicon-free"
    )
    lm_weight: float = option(DEFAULT_LM_WEIGHT, "weight of the LM's log10 score (tune with recognizer-tune)")
    word_score: float = option(DEFAULT_WORD_SCORE, "insertion bonus per word (per word separator without a lexicon)")
    unk_score: float = option(DEFAULT_UNK_SCORE, "with a lexicon: score of leaving it (default: never)")
    char_lm: str | None = option(
        None, "with a lexicon: a character LM (ARPA) that also scores every character, e.g. of unknown words"
    )
    char_lm_weight: float = option(DEFAULT_LM_WEIGHT, "weight of the --char-lm's log10 score")
    beam_threshold: float = option(DEFAULT_BEAM_THRESHOLD, "lm: drop hypotheses this far below the best")
    engine: Engine = option(
        "auto", "lm: 'compiled' (ours; ARPA), 'flashlight' (flashlight-text + KenLM; also binaries), 'auto'"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.lm is None and self.lexicon is None:
            raise ValueError("decoder 'lm' needs an LM file (lm=...), a lexicon (lexicon=...), or both")
        if not self.beam_threshold > 0:
            raise ValueError(f"beam_threshold must be positive, got {self.beam_threshold}")
        if self.char_lm is not None and self.lexicon is None:
            raise ValueError("char_lm scores characters beside a lexicon's word LM: without a lexicon, pass it as lm")
        if self.char_lm is not None and self.engine == "flashlight":
            raise ValueError("char_lm needs the compiled engine (engine 'compiled' or 'auto')")
        if not math.isfinite(self.char_lm_weight):
            raise ValueError(f"char_lm_weight must be a finite number, got {self.char_lm_weight}")


@dataclass(frozen=True)
class _Tables:
    """What the compiled engine loads once per (alphabet, LM file, lexicon file)."""

    lm: NgramTables
    label_words: np.ndarray  # the LM word of each label (character LMs)
    trie: LexiconTrie | None  # with a lexicon
    char_lm: NgramTables | None = None  # beside a lexicon's word LM
    char_label_words: np.ndarray | None = None


def _character_lm(path: str, tokens: list[str]) -> tuple[NgramTables, np.ndarray]:
    """A character LM, checked against the model's characters, and each label's character in it."""
    tables = read_arpa(path)
    check_character_lm(path, tables.words, tokens)
    label_words = np.array([tables.words.get(t, tables.unk) for t in tokens], dtype=np.int64)
    label_words[0] = -1  # the blank is never scored
    return tables, label_words


@lru_cache(maxsize=4)
def _load_tables(
    alphabet: str,
    lm: tuple[str, float] | None,
    lexicon: tuple[str, float] | None,
    char_lm: tuple[str, float] | None = None,
) -> _Tables:
    tokens = decoder_tokens(alphabet)
    if lexicon is None:  # LMOptions allows no char_lm here
        if lm is None:
            raise LexiconError("the LM decoder needs a language model, a lexicon, or both")
        return _Tables(*_character_lm(lm[0], tokens), None)
    tables = read_arpa(lm[0]) if lm else empty_tables()
    spellings = lexicon_spellings(lexicon[0], tokens)
    if lm is not None:
        check_lexicon_in_lm(lm[0], tables.words, list(spellings))
    chars = _character_lm(char_lm[0], tokens) if char_lm else (None, None)
    return _Tables(tables, np.zeros(len(tokens), dtype=np.int64), build_trie(spellings, tables), *chars)


class _Unsettled(PrefixBeamStream):
    """A prefix beam search that reads ahead for a search that will decide differently: nothing it finds
    is settled."""

    def agreed(self) -> list[int]:
        return []


@register
class LMDecoder(Decoder):
    """``lm``: beam search with a lexicon and/or n-gram LM (see the module docstring), on the CPU.

    Building it loads the LM and lexicon (cached by file and modification time, so decoders that
    differ only in their weights share them): a missing or unusable file fails here.

    Args:
        options: the files and search settings; ``blank_skip`` collapses confident blank runs first.
        alphabet: the tokenizer's alphabet (label ``i`` is ``alphabet[i - 1]``, 0 is the blank).
    """

    name = "lm"
    summary = "beam search with --lm and/or --lexicon"
    Options = LMOptions
    implied_by = ("lm", "lexicon")
    device = "cpu"
    options: LMOptions

    def __init__(self, options: LMOptions, alphabet: str | None = None) -> None:
        if alphabet is None:
            raise ValueError("decoder 'lm' needs the tokenizer's alphabet")
        super().__init__(options, alphabet)
        lm, lexicon, char_lm = file_key(options.lm), file_key(options.lexicon), file_key(options.char_lm)
        self.engine = options.engine
        if self.engine == "auto":
            self.engine = "compiled" if lm is None or is_arpa(lm[0]) or char_lm else "flashlight"
        if self.engine == "flashlight":
            from .flashlight import FlashlightSearch

            self.flashlight: FlashlightSearch | None = FlashlightSearch(options, alphabet)
            return
        for file in (lm, char_lm):
            if file is not None and not is_arpa(file[0]):
                instead = "convert it to ARPA for char_lm" if char_lm else "use engine flashlight"
                raise LexiconError(
                    f"{file[0]}: not an ARPA file (a KenLM binary?): the compiled engine reads ARPA; {instead}"
                )
        self.flashlight = None
        tables = _load_tables(alphabet, lm, lexicon, char_lm)
        self.scorer = make_scorer(
            beam_kernel.LEXICON if tables.trie is not None else beam_kernel.CHARACTERS,
            decoder_tokens(alphabet).index(WORD_BOUNDARY),
            options.lm_weight,
            options.word_score,
            options.unk_score,
            tables.lm,
            tables.label_words,
            tables.trie,
            tables.char_lm,
            tables.char_label_words,
            options.char_lm_weight,
        )

    def _threshold(self) -> float:
        """The compiled search's score pruning: ``beam_threshold``, or ``prune_threshold`` if tighter."""
        o = self.options
        return min(o.beam_threshold, math.inf if o.prune_threshold is None else o.prune_threshold)

    def stream(self) -> PrefixBeamStream:
        """The compiled engine's search, frame by frame (the LM scores partial results too); flashlight's
        cannot be resumed, so with it partial results are read by the prefix beam search without the
        LM and nothing is settled before the final transcript, which may rewrite any of them."""
        o = self.options
        if self.flashlight is None:
            return PrefixBeamStream(dataclasses.replace(o, prune_threshold=self._threshold()), scorer=self.scorer)
        return _Unsettled(
            BeamOptions(token_beam=o.token_beam, token_min_logp=o.token_min_logp, blank_skip=o.blank_skip)
        )

    def search(self, log_probs: Tensor, lengths: Tensor) -> list[list[Hypothesis]]:
        """N-best label sequences (distinct, best first) with their total scores, per utterance."""
        o = self.options
        if o.blank_skip is not None:
            log_probs, lengths = collapse_blank_frames(log_probs, lengths, o.blank_skip)
        if self.flashlight is not None:
            return self.flashlight.search(log_probs, lengths)
        if log_probs.shape[-1] != len(self.scorer[beam_kernel.LABEL_WORDS]):
            raise ValueError(
                f"log_probs have {log_probs.shape[-1]} classes, the decoder's alphabet "
                f"{len(self.scorer[beam_kernel.LABEL_WORDS])} (with the blank)"
            )
        results, _ = _prefix_beam_search(
            log_probs,
            lengths,
            o.beam_size,
            o.nbest,
            o.token_beam,
            token_min_logp=o.token_min_logp,
            prune_threshold=self._threshold(),
            scorer=self.scorer,
        )
        return [hypotheses or [Hypothesis([], -math.inf)] for hypotheses in results]
