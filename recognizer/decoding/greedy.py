"""Greedy (best-path) CTC decoding: the function, and the ``greedy`` decoder."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..ctc import BLANK, best_path
from .base import Decoder, Hypothesis, register


def greedy_decode(log_probs: torch.Tensor, lengths: torch.Tensor, blank: int = BLANK) -> list[list[int]]:
    """Best path: argmax per frame, merge repeats, drop blanks (``ctc.best_path``)."""
    return [labels for labels, _ in _best_path(log_probs, lengths, blank)]


def _best_path(log_probs: Tensor, lengths: Tensor, blank: int = BLANK) -> list[tuple[list[int], float]]:
    # float32 on the CPU: numpy has no bfloat16, and a (batch, time, vocab) copy is small next to the model
    return best_path(log_probs.detach().float().cpu().numpy(), lengths.cpu().numpy(), blank)


@dataclass(frozen=True)
class GreedyOptions:
    """The best path has no settings."""


@register
class GreedyDecoder(Decoder):
    """``greedy``: one hypothesis per utterance, scored by the best path's log-probability
    (``ctc.best_path``, on the CPU)."""

    name = "greedy"
    summary = "best path"
    Options = GreedyOptions
    device = "cpu"  # the search is numpy's (timestamps still align on the model's device)

    def search(self, log_probs: Tensor, lengths: Tensor) -> list[list[Hypothesis]]:
        return [[Hypothesis(labels, score)] for labels, score in _best_path(log_probs, lengths)]
