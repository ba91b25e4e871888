"""One entry point for every decoder, so validation, prediction and transcription decode alike."""

from __future__ import annotations

from typing import Literal

import torch

from .beam import Hypothesis, prefix_beam_search
from .greedy import greedy_decode

Decoder = Literal["greedy", "beam"]
DECODERS: tuple[str, ...] = ("greedy", "beam")


def decode(
    log_probs: torch.Tensor,
    lengths: torch.Tensor,
    decoder: Decoder = "greedy",
    beam_size: int = 8,
    nbest: int = 1,
) -> list[list[Hypothesis]]:
    """N-best label sequences with their log-probability scores, best first, per utterance.

    ``greedy`` is best-path decoding (its score is the best path's log-probability, and it returns
    one hypothesis); ``beam`` is the prefix beam search (scores are prefix probabilities).
    """
    if decoder == "greedy":
        best = log_probs.max(dim=-1).values
        frames = torch.arange(log_probs.shape[1], device=log_probs.device)[None, :] < lengths[:, None].to(log_probs.device)
        scores = (best * frames).sum(dim=1).tolist()
        return [[Hypothesis(labels, score)] for labels, score in zip(greedy_decode(log_probs, lengths), scores)]
    if decoder == "beam":
        return prefix_beam_search(log_probs, lengths, beam_size=beam_size, nbest=nbest)
    raise ValueError(f"unknown decoder {decoder!r}; choose from {', '.join(DECODERS)}")
