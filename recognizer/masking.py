"""Time masks for training (SpecAugment's time masking, Park et al. 2019), shared by the front-ends:
audio masks spans of log-mel frames, ink spans of resampled points or curves."""

from __future__ import annotations

import numpy as np
import torch


def check_time_masks(masks: int, max_fraction: float) -> None:
    """Raise ValueError naming the setting unless ``masks`` is a count >= 0 and ``max_fraction`` in [0, 1]
    (front-ends call it when built, so a bad config fails before training starts)."""
    if isinstance(masks, bool) or not isinstance(masks, (int, np.integer)) or masks < 0:
        raise ValueError(f"time_masks must be a whole number >= 0, got {masks!r}")
    if (
        isinstance(max_fraction, bool)
        or not isinstance(max_fraction, (int, float, np.integer, np.floating))
        or not 0 <= max_fraction <= 1
    ):
        raise ValueError(
            f"time_width is the widest time mask as a fraction of the sequence, in [0, 1]; got {max_fraction!r}"
        )


def mask_time(
    features: torch.Tensor, rng: np.random.Generator, masks: int, max_fraction: float, fill: torch.Tensor | float
) -> torch.Tensor:
    """``features`` (frames, dims) with ``masks`` spans of frames set to ``fill``, in place.

    Each span is drawn uniformly from 0 to ``max_fraction`` of the sequence's frames wide, at a uniform
    start, so a short sequence is never wiped out and a long one loses the same share. ``fill`` is a
    scalar or a (dims,) row; spans may overlap. The draws (width, then start, per span) come from
    ``rng`` in that order, so the same state masks the same spans.
    """
    check_time_masks(masks, max_fraction)
    frames = features.shape[0]
    widest = int(max_fraction * frames)
    for _ in range(masks):
        width = int(rng.integers(0, widest + 1))
        start = int(rng.integers(0, frames - width + 1))
        features[start : start + width] = fill
    return features
