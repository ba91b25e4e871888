"""Greedy (best-path) CTC decoding: the function, and the ``greedy`` decoder."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..ctc import BLANK
from .base import Decoder, Hypothesis, register


def greedy_decode(log_probs: torch.Tensor, lengths: torch.Tensor, blank: int = BLANK) -> list[list[int]]:
    """Best path: argmax per frame, merge repeats, drop blanks. Vectorized over the batch."""
    best = log_probs.argmax(dim=-1)  # (batch, time)
    frames = torch.arange(best.shape[1], device=best.device)
    previous = torch.nn.functional.pad(best[:, :-1], (1, 0), value=blank)
    keep = (best != blank) & (best != previous) & (frames[None, :] < lengths[:, None].to(best.device))
    best, keep = best.cpu(), keep.cpu()
    return [row[mask].tolist() for row, mask in zip(best, keep)]


@dataclass(frozen=True)
class GreedyOptions:
    """The best path has no settings."""


@register
class GreedyDecoder(Decoder):
    """``greedy``: one hypothesis per utterance, scored by the best path's log-probability. Runs where the
    log-probabilities are."""

    name = "greedy"
    summary = "best path"
    Options = GreedyOptions

    def search(self, log_probs: Tensor, lengths: Tensor) -> list[list[Hypothesis]]:
        best = log_probs.max(dim=-1).values
        valid = torch.arange(log_probs.shape[1], device=log_probs.device)[None, :] < lengths[:, None].to(
            log_probs.device
        )
        scores = torch.where(valid, best, 0.0).sum(dim=1).tolist()  # padding may hold anything, even -inf
        return [[Hypothesis(labels, score)] for labels, score in zip(greedy_decode(log_probs, lengths), scores)]
