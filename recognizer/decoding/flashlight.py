"""The ``lm`` decoder's second engine: flashlight-text's C++ beam search with KenLM.

The ``lm`` decoder (``lm.py``) searches with our compiled kernel (``beam_kernel``) when its LM is an ARPA
file, and through flashlight-text when it is a KenLM binary (which only KenLM reads), or when asked
(``engine="flashlight"``). The options, and what they mean, are the same (``lm.LMOptions``).

Two modes, chosen by whether a lexicon is given:

* **Lexicon + word LM**: hypotheses can only spell words of the lexicon (a trie of spellings); each
  completed word is scored by the word n-gram LM (ARPA or KenLM binary), weighted by ``lm_weight``,
  plus ``word_score`` per word. Out-of-lexicon words are allowed only when ``unk_score`` is finite.
  Without an LM the lexicon alone constrains the search.
* **Lexicon-free + character LM**: any label sequence; every character is scored by a character n-gram
  LM (``recognizer-lm --unit char``). ``word_score`` is then added per frame of word separator
  (flashlight's silence score).

The token list handed to flashlight is the model's own tokenizer (blank at 0, then the alphabet), so
the two can never disagree; only the space is renamed to the word separator :data:`WORD_BOUNDARY`
(``|``), the convention of wav2letter/flashlight lexicons and of ``recognizer-lm``'s character models.
Lexicon spellings end with ``|`` (as ``recognizer-lm --lexicon`` writes them), so a word is complete
when the separator after it is decoded. Our models never output a space after the last word, so with a lexicon
one extra frame that is certainly ``|`` is appended to every utterance to complete it.

flashlight-text itself is imported only when an engine is built. The search runs on the CPU.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import groupby
from typing import Any

import torch
from torch import Tensor

from ..ctc import BLANK, UNK, WORD_BOUNDARY
from .base import Hypothesis
from .frames import floor_labels
from .lm_tables import (
    LexiconError,
    arpa_vocabulary,
    check_character_lm,
    check_lexicon_in_lm,
    decoder_tokens,
    file_key,
    lexicon_spellings,
)

log = logging.getLogger(__name__)

__all__ = ["FlashlightSearch"]

_NEG_INF = float("-inf")
_CLOSING_PENALTY = -1e4  # log-probability of everything but the separator on the closing frame
#: log-probability given to a label below token_min_logp: far below any threshold, yet finite (flashlight
#: adds it up) and far above the closing penalty (which _nbest recognizes by its size)
_PRUNED = -100.0


@dataclass(frozen=True)
class _Resources:
    """What is expensive to load, shared by decoders that differ only in their search settings.

    flashlight-text ships no type information: its objects are ``Any``."""

    tokens: Any  # flashlight Dictionary
    words: Any | None  # flashlight Dictionary of lexicon words (+ <unk>)
    lm: Any  # flashlight LM (KenLM or ZeroLM)
    trie: Any | None
    unk: int


@lru_cache(maxsize=4)
def _load(alphabet: str, lm: tuple[str, float] | None, lexicon: tuple[str, float] | None) -> _Resources:
    """Token dictionary, LM and (with a lexicon) word dictionary and trie; cached by file and mtime."""
    from flashlight.lib.text.dictionary import Dictionary

    token_list = decoder_tokens(alphabet)
    tokens = Dictionary(token_list)
    lm_path = lm[0] if lm else None
    if lexicon is not None:
        return _load_lexicon(tokens, token_list, lm_path, lexicon[0])
    if lm_path is None:
        raise LexiconError("the LM decoder needs a language model, a lexicon, or both")
    vocabulary = arpa_vocabulary(lm_path)
    if vocabulary is not None:
        check_character_lm(lm_path, vocabulary, token_list)
    # Lexicon-free, the LM scores tokens: its user dictionary is the token dictionary itself.
    return _Resources(tokens, None, _kenlm(lm_path, tokens), None, -1)


def _load_lexicon(tokens: Any, token_list: list[str], lm_path: str | None, lexicon: str) -> _Resources:
    from flashlight.lib.text.decoder import SmearingMode, Trie, ZeroLM
    from flashlight.lib.text.dictionary import Dictionary

    separator = tokens.get_index(WORD_BOUNDARY)
    # flashlight's trie holds each spelling with its closing separator: a word ends where it is decoded
    usable = {
        word: [[*spelling, separator] for spelling in spellings]
        for word, spellings in lexicon_spellings(lexicon, token_list).items()
    }
    words = Dictionary()
    for word in usable:
        words.add_entry(word)
    if not words.contains(UNK):
        words.add_entry(UNK)
    unk = words.get_index(UNK)
    words.set_default_index(unk)
    if lm_path and (vocabulary := arpa_vocabulary(lm_path)) is not None:
        check_lexicon_in_lm(lm_path, vocabulary, list(usable))
    language_model = _kenlm(lm_path, words) if lm_path else ZeroLM()
    trie = Trie(tokens.index_size(), separator)
    start = language_model.start(False)
    for word, indices in usable.items():
        index = words.get_index(word)
        _, score = language_model.score(start, index)
        for spelling in indices:
            trie.insert(spelling, index, score)
    # Each node's score becomes the best score below it (log P(word | <s>)): the LM look-ahead for
    # partial words.
    trie.smear(SmearingMode.MAX)
    return _Resources(tokens, words, language_model, trie, unk)


def _kenlm(path: str, dictionary: Any) -> Any:
    from flashlight.lib.text.decoder.kenlm import KenLM

    # KenLM draws a progress bar on the process's stderr (file descriptor 2, beneath Python): keep it
    # for the debug log rather than the user's terminal.
    with tempfile.TemporaryFile() as captured:
        saved = os.dup(2)
        os.dup2(captured.fileno(), 2)
        try:
            return KenLM(path, dictionary)
        except Exception as error:  # KenLM reports format errors as C++ exceptions with its own message
            order = re.search(r"has order (\d+) but KenLM was compiled to support up to (\d+)", str(error))
            if order:
                raise LexiconError(
                    f"{path}: a {order[1]}-gram model; flashlight-text's KenLM loads n-grams up to order {order[2]} "
                    f"(build it with recognizer-lm --order {order[2]} or lower)"
                ) from None
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise LexiconError(f"{path}: KenLM cannot load this language model: {first_line}") from None
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            log.debug("KenLM: %s", captured.read().decode(errors="replace").strip())


class FlashlightSearch:
    """The ``lm`` decoder's search through flashlight-text (see the module docstring), one utterance at a
    time. Building it loads the LM and lexicon (cached by file and modification time, so searches that
    differ only in their weights share them): a missing or unusable file fails here.

    Args:
        options: ``lm.LMOptions`` (the files, weights and search settings).
        alphabet: the tokenizer's alphabet (label ``i`` is ``alphabet[i - 1]``, 0 is the blank).
    """

    def __init__(self, options: Any, alphabet: str) -> None:
        from flashlight.lib.text.decoder import (
            CriterionType,
            LexiconDecoder,
            LexiconDecoderOptions,
            LexiconFreeDecoder,
            LexiconFreeDecoderOptions,
        )

        self.options = options
        self.resources = _load(alphabet, file_key(options.lm), file_key(options.lexicon))
        vocab = self.resources.tokens.index_size()
        self.separator = self.resources.tokens.get_index(WORD_BOUNDARY)
        self.lexicon = options.lexicon is not None
        self.token_beam = min(options.token_beam or vocab, vocab)
        self._decoders: dict[int, Any] = {}  # flashlight decoders by labels tried per frame
        self._flashlight = (
            CriterionType,
            LexiconDecoder,
            LexiconDecoderOptions,
            LexiconFreeDecoder,
            LexiconFreeDecoderOptions,
        )
        self._decoder(self.token_beam)  # a bad setting fails now, not at the first utterance

    def _decoder(self, token_beam: int) -> Any:
        """The flashlight decoder that tries ``token_beam`` labels per frame (built once, then kept)."""
        if token_beam in self._decoders:
            return self._decoders[token_beam]
        CriterionType, LexiconDecoder, LexiconDecoderOptions, LexiconFreeDecoder, LexiconFreeDecoderOptions = (
            self._flashlight
        )
        options = self.options
        if self.lexicon:
            decoder = LexiconDecoder(
                LexiconDecoderOptions(
                    beam_size=options.beam_size,
                    beam_size_token=token_beam,
                    beam_threshold=options.beam_threshold,
                    lm_weight=options.lm_weight,
                    word_score=options.word_score,
                    unk_score=options.unk_score,
                    sil_score=0.0,
                    log_add=False,
                    criterion_type=CriterionType.CTC,
                ),
                self.resources.trie,
                self.resources.lm,
                self.separator,
                BLANK,
                self.resources.unk,
                [],
                False,
            )
        else:
            decoder = LexiconFreeDecoder(
                LexiconFreeDecoderOptions(
                    beam_size=options.beam_size,
                    beam_size_token=token_beam,
                    beam_threshold=options.beam_threshold,
                    lm_weight=options.lm_weight,
                    sil_score=options.word_score,
                    log_add=False,
                    criterion_type=CriterionType.CTC,
                ),
                self.resources.lm,
                self.separator,
                BLANK,
                [],
            )
        self._decoders[token_beam] = decoder
        return decoder

    def search(self, log_probs: Tensor, lengths: Tensor) -> list[list[Hypothesis]]:
        """N-best label sequences (distinct, best first) with their total scores, per utterance (after
        the caller collapsed confident blank runs)."""
        # Labels tried per frame: flashlight takes a fixed number, so each utterance gets the number its
        # widest frame keeps above the floor (the others' are below the search's threshold anyway).
        widths = torch.full(lengths.shape, self.token_beam)
        if self.options.token_min_logp is not None:
            log_probs = floor_labels(log_probs.float(), self.options.token_min_logp, _PRUNED)
            valid = torch.arange(log_probs.shape[1])[None, :] < lengths.cpu()[:, None]
            kept = ((log_probs.cpu() != _PRUNED) & valid[:, :, None]).sum(2).amax(1)
            widths = kept.clamp(min=1)  # the closing frame (lexicon) needs one: its separator
        batch, _, vocab = log_probs.shape
        if vocab != self.resources.tokens.index_size():
            raise ValueError(
                f"log_probs have {vocab} classes, the decoder's alphabet {self.resources.tokens.index_size()}"
            )
        results = []
        for row, length, width in zip(log_probs.detach().float().cpu(), lengths.tolist(), widths.tolist()):
            emissions = row[: int(length)]
            if self.lexicon:
                # The extra frame that completes the last word (see the module docstring).
                closing = torch.full((1, vocab), _CLOSING_PENALTY)
                closing[0, self.separator] = 0.0
                emissions = torch.cat([emissions, closing])
            emissions = emissions.contiguous()
            decoder = self._decoder(min(width, self.token_beam))
            hypotheses = decoder.decode(emissions.data_ptr(), emissions.shape[0], vocab)
            results.append(self._nbest(hypotheses, self.options.nbest))
        return results

    def _nbest(self, hypotheses: Sequence[Any], nbest: int) -> list[Hypothesis]:
        best: list[Hypothesis] = []
        seen = set()
        for hypothesis in hypotheses:
            labels = self._labels(hypothesis.tokens)
            score = float(hypothesis.score)
            if score < _CLOSING_PENALTY / 2:
                # No hypothesis could end its last word on the closing frame (pruned away): the best
                # one keeps that word as the model spelled it, unscored by the LM, and we take back
                # the closing frame's penalty so scores stay comparable.
                score -= _CLOSING_PENALTY
            if tuple(labels) not in seen:
                seen.add(tuple(labels))
                best.append(Hypothesis(labels, score))
                if len(best) == nbest:
                    break
        return best or [Hypothesis([], _NEG_INF)]

    def _labels(self, frames: Sequence[int]) -> list[int]:
        """Frame tokens -> labels: merge repeats, drop blanks, trim and merge word separators."""
        labels = [token for token, _ in groupby(frames) if token != BLANK and token >= 0]
        words = [list(group) for is_space, group in groupby(labels, key=lambda t: t == self.separator) if not is_space]
        out: list[int] = []
        for word in words:
            if out:
                out.append(self.separator)
            out.extend(word)
        return out
