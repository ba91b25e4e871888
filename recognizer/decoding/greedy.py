"""Greedy (best-path) CTC decoding: the function, and the ``greedy`` decoder."""

from __future__ import annotations

import copy
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


class GreedyStream:
    """The best path of an input whose frames arrive in pieces (a ``base.DecodingStream``): each frame's
    best label, repeats merged across pieces; every label is final once its frame is."""

    def __init__(self, blank: int = BLANK) -> None:
        self.blank, self.last = blank, blank
        self.labels: list[int] = []

    def advance(self, log_probs: Tensor) -> None:
        for label in log_probs.argmax(dim=-1).tolist():  # the first of equal maxima, as numpy's argmax
            if label != self.blank and label != self.last:
                self.labels.append(label)
            self.last = label

    def finish(self) -> None:
        pass

    def copy(self) -> GreedyStream:
        other = copy.copy(self)
        other.labels = list(self.labels)
        return other

    def best(self) -> list[int]:
        return list(self.labels)

    agreed = best


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

    def stream(self) -> GreedyStream:
        return GreedyStream()
