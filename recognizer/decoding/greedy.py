"""Greedy (best-path) CTC decoding."""

from __future__ import annotations

import torch

from ..ctc import BLANK


def greedy_decode(log_probs: torch.Tensor, lengths: torch.Tensor, blank: int = BLANK) -> list[list[int]]:
    """Best path: argmax per frame, merge repeats, drop blanks. Vectorized over the batch."""
    best = log_probs.argmax(dim=-1)  # (batch, time)
    frames = torch.arange(best.shape[1], device=best.device)
    previous = torch.nn.functional.pad(best[:, :-1], (1, 0), value=blank)
    keep = (best != blank) & (best != previous) & (frames[None, :] < lengths[:, None].to(best.device))
    best, keep = best.cpu(), keep.cpu()
    return [row[mask].tolist() for row, mask in zip(best, keep)]
