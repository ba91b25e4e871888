"""One entry point for every decoder, so validation, prediction, transcription and tuning decode alike."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch

from .beam import Hypothesis, prefix_beam_search
from .frames import collapse_blank_frames
from .greedy import greedy_decode

Decoder = Literal["greedy", "beam", "lm"]
DECODERS: tuple[str, ...] = ("greedy", "beam", "lm")
#: hypotheses kept when ``beam_size`` is not given: the LM search needs more room than the plain one
DEFAULT_BEAM_SIZE = {"beam": 8, "lm": 32}


@dataclass(frozen=True)
class DecodingOptions:
    """How to turn log-probabilities into text.

    Args:
        decoder: ``greedy`` (best path), ``beam`` (prefix beam search, no LM, batched in PyTorch) or
            ``lm`` (flashlight-text beam search with a lexicon and/or an n-gram LM, see
            ``recognizer.decoding.flashlight``).
        beam_size: hypotheses kept per frame (default: :data:`DEFAULT_BEAM_SIZE` of the decoder).
        nbest: hypotheses returned per utterance (beam and lm).
        token_beam: labels tried per frame, the most probable first (beam and lm; None: all).
        blank_skip: ``beam`` and ``lm``: runs of frames whose blank probability is at least this are
            collapsed into one frame before the search (``recognizer.decoding.frames``): the
            search then only visits the frames where something happens (on AN4 about half of
            them, with the same transcripts). None: off, every frame is searched.
        lm: ``lm`` only: ARPA or KenLM binary file; a word LM with ``lexicon``, a character LM without.
        lexicon: ``lm`` only: lexicon file (``recognizer-lm --lexicon``); None decodes lexicon-free.
        lm_weight: ``lm`` only: weight of the LM score.
        word_score: ``lm`` only: insertion bonus per word (per word-separator frame without lexicon).
        unk_score: ``lm`` only: score of leaving the lexicon (-inf: never). flashlight charges it
            where a spelling leaves the lexicon's trie, so an unknown word may pay it more than once.
        beam_threshold: ``lm`` only: hypotheses this far below the best are pruned.
    """

    decoder: Decoder = "greedy"
    beam_size: int | None = None
    nbest: int = 1
    token_beam: int | None = None
    blank_skip: float | None = 0.999
    lm: str | None = None
    lexicon: str | None = None
    lm_weight: float = 1.0
    word_score: float = 0.0
    unk_score: float = float("-inf")
    beam_threshold: float = 15.0

    def __post_init__(self) -> None:
        if self.decoder not in DECODERS:
            raise ValueError(f"unknown decoder {self.decoder!r}; choose from {', '.join(DECODERS)}")
        if self.decoder == "lm" and self.lm is None and self.lexicon is None:
            raise ValueError("decoder 'lm' needs an LM file (lm=...), a lexicon (lexicon=...), or both")
        if self.decoder != "lm" and (self.lm is not None or self.lexicon is not None):
            raise ValueError(f"an LM or lexicon was given but decoder={self.decoder!r}; use decoder='lm'")
        if self.nbest < 1 or (self.beam_size is not None and self.beam_size < 1):
            raise ValueError(f"nbest and beam_size must be at least 1, got {self.nbest} and {self.beam_size}")
        if self.token_beam is not None and self.token_beam < 1:
            raise ValueError(f"token_beam must be at least 1 (or None for every label), got {self.token_beam}")
        if self.blank_skip is not None and not 0.0 < self.blank_skip <= 1.0:
            raise ValueError(f"blank_skip must be a probability in (0, 1] (or None for off), got {self.blank_skip}")
        if not self.beam_threshold > 0:
            raise ValueError(f"beam_threshold must be positive, got {self.beam_threshold}")

    @property
    def beam(self) -> int:
        """The beam size in effect."""
        return self.beam_size or DEFAULT_BEAM_SIZE.get(self.decoder, 1)

    def to_dict(self) -> dict[str, Any]:
        """Plain values, for checkpoints and configs."""
        return asdict(self)


def prepare(options: DecodingOptions, alphabet: str) -> None:
    """Load what the decoder needs (LM, lexicon) now, so a bad file fails before the model runs."""
    if options.decoder == "lm":
        from .flashlight import LMDecoder

        LMDecoder(alphabet, options.lm, options.lexicon)  # the loaded files are cached for decode()


@torch.inference_mode()  # cheaper per operation than no_grad: the search runs many small ones
def decode(
    log_probs: torch.Tensor,
    lengths: torch.Tensor,
    options: DecodingOptions = DecodingOptions(),
    alphabet: str | None = None,
) -> list[list[Hypothesis]]:
    """N-best label sequences with their scores, best first, per utterance.

    ``alphabet`` (the tokenizer's) is needed by the ``lm`` decoder, which works on text. Scores:
    ``greedy`` the best path's log-probability (one hypothesis); ``beam`` the prefix's
    log-probability; ``lm`` the acoustic log-probability plus the weighted LM score and bonuses.
    """
    if options.decoder == "greedy":
        best = log_probs.max(dim=-1).values
        frames = torch.arange(log_probs.shape[1], device=log_probs.device)[None, :] < lengths[:, None].to(
            log_probs.device
        )
        scores = torch.where(frames, best, 0.0).sum(dim=1).tolist()  # padding may hold anything, even -inf
        return [[Hypothesis(labels, score)] for labels, score in zip(greedy_decode(log_probs, lengths), scores)]
    if options.blank_skip is not None:
        log_probs, lengths = collapse_blank_frames(log_probs, lengths, options.blank_skip)
    if options.decoder == "beam":
        return prefix_beam_search(
            log_probs,
            lengths,
            beam_size=options.beam,
            nbest=options.nbest,
            token_beam=options.token_beam,
        )
    if alphabet is None:
        raise ValueError("decoder 'lm' needs the tokenizer's alphabet")
    from .flashlight import LMDecoder  # flashlight-text is only loaded when an LM decoder is asked for

    decoder = LMDecoder(
        alphabet,
        options.lm,
        options.lexicon,
        beam_size=options.beam,
        token_beam=options.token_beam,
        beam_threshold=options.beam_threshold,
        lm_weight=options.lm_weight,
        word_score=options.word_score,
        unk_score=options.unk_score,
    )
    return decoder(log_probs, lengths, nbest=options.nbest)
