"""Ink front-end: read ink files, normalize, augment (training), resample, per-point features."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..frontend import Frontend, split_sample
from . import functional as F
from .formats import INK_SUFFIXES, load_ink, read_inkml
from .ink import Ink


@dataclass(frozen=True, init=False)
class InkFrontend(Frontend):
    """Per-point features of online handwriting.

    Args:
        features: per-point features, in order (see ``recognizer.ink.functional.FEATURES``); held as
            ``feature_names``, since ``features()`` is the front-end's method.
        step: resampling distance between points, relative to the estimated line height.
        slant, baseline: slant and baseline correction during normalization.
        augment: whether training applies augmentation at all.
        scale, shear, rotation_deg, jitter, time_stretch: training augmentation ranges (see
            ``recognizer.ink.functional.augment``, whose defaults these are).
    """

    modality = "ink"
    path_key = "ink_filepath"
    suffixes = INK_SUFFIXES
    timestamp_unit = "points"
    training_only = ("augment", "scale", "shear", "rotation_deg", "jitter", "time_stretch")

    feature_names: tuple[str, ...] = field(default=F.DEFAULT_FEATURES, metadata={"setting": "features"})
    step: float = F.DEFAULT_STEP
    slant: bool = True
    baseline: bool = True
    augment: bool = True
    scale: tuple[float, float] = F.AUGMENT_SCALE
    shear: tuple[float, float] = F.AUGMENT_SHEAR
    rotation_deg: tuple[float, float] = F.AUGMENT_ROTATION_DEG
    jitter: float = F.AUGMENT_JITTER
    time_stretch: tuple[float, float] = F.AUGMENT_TIME_STRETCH
    # Normalized inks and frame counts by (path, line id): parsing XML every epoch would dominate
    # training time. Caches, not settings: left out of equality, hashing and config().
    _normalized: dict[tuple[str, str | None], Ink] = field(init=False, repr=False, compare=False)
    _frames: dict[tuple[str, str | None], int] = field(init=False, repr=False, compare=False)

    # Written out rather than generated: the first argument is ``features`` (the name configs and
    # checkpoints use), which as a field would hide the ``features()`` method.
    def __init__(
        self,
        features: Sequence[str] = F.DEFAULT_FEATURES,
        step: float = F.DEFAULT_STEP,
        slant: bool = True,
        baseline: bool = True,
        augment: bool = True,
        scale: tuple[float, float] = F.AUGMENT_SCALE,
        shear: tuple[float, float] = F.AUGMENT_SHEAR,
        rotation_deg: tuple[float, float] = F.AUGMENT_ROTATION_DEG,
        jitter: float = F.AUGMENT_JITTER,
        time_stretch: tuple[float, float] = F.AUGMENT_TIME_STRETCH,
    ) -> None:
        unknown = [name for name in features if name not in F.FEATURES]
        if unknown:
            raise ValueError(f"unknown ink features {unknown}; choose from {list(F.FEATURES)}")
        settings = {
            "feature_names": tuple(features),
            "step": step,
            "slant": slant,
            "baseline": baseline,
            "augment": augment,
            # Tuples, whatever the caller passed (lists from YAML or a checkpoint): the settings stay hashable.
            "scale": tuple(scale),
            "shear": tuple(shear),
            "rotation_deg": tuple(rotation_deg),
            "jitter": jitter,
            "time_stretch": tuple(time_stretch),
        }
        for name, value in {**settings, "_normalized": {}, "_frames": {}}.items():
            object.__setattr__(self, name, value)  # the dataclass is frozen

    @property
    def feature_dim(self) -> int:
        return len(self.feature_names)

    @property
    def frame_unit(self) -> float:
        return 1.0  # one feature frame per resampled point

    def load(self, source: Any, line_id: str | None = None) -> Ink:
        """An ink file (``.xml`` IAM-OnDB, ``.inkml``, ``.json``), ``page.inkml#<sample id>``, or an
        ``Ink``; returns it normalized."""
        if isinstance(source, Ink):
            ink = source
        else:
            path, sample = split_sample(source)
            ink = load_ink(path, line_id if line_id is not None else sample)
        return F.normalize(ink, slant=self.slant, baseline=self.baseline)

    def expand(self, path: str) -> list[str]:
        """Every sample of a multi-sample InkML file as ``path#<sample id>``; other files as they are."""
        if Path(path).suffix.lower() == ".inkml" and Path(path).is_file():
            samples = read_inkml(path)
            if len(samples) > 1:
                return [sample.source for sample in samples]
        return [path]

    def load_entry(self, entry: dict[str, Any]) -> Ink:
        """A manifest entry's ink, normalized; kept in memory, since training reads it every epoch."""
        key = (entry[self.path_key], entry.get("line_id"))
        if key not in self._normalized:
            self._normalized[key] = self.load(*key)
        return self._normalized[key]

    def features(self, raw: Ink, rng: np.random.Generator | None = None) -> torch.Tensor:
        if rng is not None and self.augment:
            raw = F.augment(
                raw,
                rng,
                scale=self.scale,
                shear=self.shear,
                rotation_deg=self.rotation_deg,
                jitter=self.jitter,
                time_stretch=self.time_stretch,
            )
        points = F.point_features(F.resample(raw, self.step), self.feature_names)
        return torch.from_numpy(points)

    def estimate_frames(self, entry: dict[str, Any]) -> int:
        key = (entry[self.path_key], entry.get("line_id"))
        if key not in self._frames:
            self._frames[key] = int(self.features(self.load_entry(entry)).shape[0])
        return self._frames[key]
