"""Ink front-end: read ink files, normalize, augment (training), then per-point features of the
resampled ink or features of its Bézier curves."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..frontend import Frontend
from ..masking import check_time_masks, mask_time
from ..transcripts import split_sample
from . import functional as F
from .bezier import CURVE_FEATURES, DEFAULT_CURVE_FEATURES, FIT_VERSION, MAX_ERROR, Curves, curve_features, fit_ink
from .formats import INK_SUFFIXES, load_ink, read_inkml
from .ink import Ink
from .lines import line_inks

#: how an ink becomes a sequence of frames: one per resampled point, or one per Bézier curve
REPRESENTATIONS = ("points", "bezier")
#: the features each representation offers, and those it uses by default
REPRESENTATION_FEATURES = {"points": F.FEATURES, "bezier": CURVE_FEATURES}
DEFAULT_REPRESENTATION_FEATURES = {"points": F.DEFAULT_FEATURES, "bezier": DEFAULT_CURVE_FEATURES}
# Time masks (training only): how many spans of frames are masked per line, and the widest as a fraction
# of the line's frames. Off by default, so checkpoints trained before them load unchanged.
TIME_MASKS = 0
TIME_WIDTH = 0.05


@dataclass(frozen=True, init=False)
class InkFrontend(Frontend):
    """Features of online handwriting: one frame per resampled point, or per Bézier curve.

    Args:
        features: the features of a frame, in order: per-point (``recognizer.ink.functional.FEATURES``)
            or per-curve (``recognizer.ink.bezier.CURVE_FEATURES``) as ``representation`` says; None: that
            representation's defaults. Held as ``feature_names``, since ``features()`` is the front-end's method.
        step: resampling distance between points, relative to the estimated line height (``points``).
        slant, baseline: slant and baseline correction during normalization.
        augment: whether training applies augmentation at all.
        scale, shear, rotation_deg, jitter, time_stretch: training augmentation ranges (see
            ``recognizer.ink.functional.augment``, whose defaults these are). With ``bezier`` the
            distortion and the time stretch transform the fitted curves (exact: curves are
            affine-equivariant) and the jitter moves their control points, so an ink is fitted only once.
        representation: ``points`` (the default: the normalized ink resampled every ``step``, one frame
            per point) or ``bezier`` (one frame per cubic Bézier curve fitted within ``max_error`` line
            heights, and per pen-up jump: several times shorter sequences; Carbune et al. 2020).
        max_error: the Bézier fit's largest point-to-curve distance, in line heights (``bezier``).
        fit_version: the Bézier fit the model was trained with (``recognizer.ink.bezier.FIT_VERSION``);
            another version is an error, since the curves it finds are not the ones the model learnt.
        time_masks, time_width: SpecAugment-style time masks (training only, with ``augment``; see
            ``recognizer.masking.mask_time``): ``time_masks`` spans of frames per line, each up to
            ``time_width`` of its frames wide, take the line's mean of each feature; 0 masks: off.
    """

    modality = "ink"
    path_key = "ink_filepath"
    suffixes = INK_SUFFIXES
    timestamp_unit = "points"
    even_frames = False  # a resampled point or a curve stands for a varying number of the ink's points
    training_only = ("augment", "scale", "shear", "rotation_deg", "jitter", "time_stretch", "time_masks", "time_width")

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
    # Later settings go last: checkpoints without them load with these defaults.
    representation: str = "points"
    max_error: float = MAX_ERROR
    fit_version: int = FIT_VERSION
    time_masks: int = TIME_MASKS
    time_width: float = TIME_WIDTH
    # Normalized inks and frame counts by (path, line id): parsing XML every epoch would dominate
    # training time. Caches, not settings: left out of equality, hashing and config().
    _normalized: dict[tuple[str, str | None], Ink] = field(init=False, repr=False, compare=False)
    _frames: dict[tuple[str, str | None], int] = field(init=False, repr=False, compare=False)
    # The curves of the inks in _normalized, by id() (an Ink is not hashable): fitted once, augmented per epoch.
    _curves: dict[int, tuple[Ink, Curves]] = field(init=False, repr=False, compare=False)
    # The inks in _normalized, by id(): load() takes them as they are (normalizing twice would move them).
    _kept: dict[int, Ink] = field(init=False, repr=False, compare=False)

    # Written out rather than generated: the first argument is ``features`` (the name configs and
    # checkpoints use), which as a field would hide the ``features()`` method.
    def __init__(
        self,
        features: Sequence[str] | None = None,
        step: float = F.DEFAULT_STEP,
        slant: bool = True,
        baseline: bool = True,
        augment: bool = True,
        scale: tuple[float, float] = F.AUGMENT_SCALE,
        shear: tuple[float, float] = F.AUGMENT_SHEAR,
        rotation_deg: tuple[float, float] = F.AUGMENT_ROTATION_DEG,
        jitter: float = F.AUGMENT_JITTER,
        time_stretch: tuple[float, float] = F.AUGMENT_TIME_STRETCH,
        representation: str = "points",
        max_error: float = MAX_ERROR,
        fit_version: int = FIT_VERSION,
        time_masks: int = TIME_MASKS,
        time_width: float = TIME_WIDTH,
    ) -> None:
        if representation not in REPRESENTATIONS:
            raise ValueError(f"unknown ink representation {representation!r}; choose from {list(REPRESENTATIONS)}")
        if features is None:
            features = DEFAULT_REPRESENTATION_FEATURES[representation]
        valid = REPRESENTATION_FEATURES[representation]
        unknown = [name for name in features if name not in valid]
        if unknown:
            raise ValueError(f"unknown {representation} ink features {unknown}; choose from {list(valid)}")
        if not (np.isfinite(max_error) and max_error > 0):
            raise ValueError(f"max_error must be a positive number of line heights, got {max_error!r}")
        if representation == "bezier" and fit_version != FIT_VERSION:
            raise ValueError(
                f"the model's Bézier curves come from fit version {fit_version}, this recognizer fits version "
                f"{FIT_VERSION}: retrain it, or use the release that trained it"
            )
        check_time_masks(time_masks, time_width)
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
            "representation": representation,
            "max_error": float(max_error),
            "fit_version": int(fit_version),
            "time_masks": int(time_masks),
            "time_width": float(time_width),
        }
        for name, value in {**settings, "_normalized": {}, "_frames": {}, "_curves": {}, "_kept": {}}.items():
            object.__setattr__(self, name, value)  # the dataclass is frozen

    @property
    def feature_dim(self) -> int:
        return len(self.feature_names)

    @property
    def frame_unit(self) -> float:
        return 1.0  # one feature frame per resampled point (or curve)

    def load(self, source: Any, line_id: str | None = None) -> Ink:
        """An ink file (``.xml`` IAM-OnDB, ``.inkml``, ``.json``), ``page.inkml#<sample id>``, or an
        ``Ink``; returns it normalized (an ink ``load_entry`` returned is normalized already: as it is)."""
        if isinstance(source, Ink) and self._kept.get(id(source)) is source:
            return source
        return self._normalize(self._read(source, line_id))

    def _read(self, source: Any, line_id: str | None = None) -> Ink:
        if isinstance(source, Ink):
            return source
        path, sample = split_sample(source)
        return load_ink(path, line_id if line_id is not None else sample)

    def _normalize(self, ink: Ink) -> Ink:
        return F.normalize(ink, slant=self.slant, baseline=self.baseline)

    def load_parts(self, source: Any) -> list[tuple[Ink, np.ndarray | None]]:
        """The ink's text lines (``recognizer.ink.lines``), each normalized on its own, with the indices of
        its points among the ink's; an ink of one line is ``load``'s."""
        ink = self._read(source)
        parts = line_inks(ink)
        if len(parts) == 1:
            return [(self._normalize(ink), None)]
        return [(self._normalize(line), points) for line, points in parts]

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
            ink = self._normalized[key] = self.load(*key)
            self._kept[id(ink)] = ink
            if self.representation == "bezier":
                self._curves[id(ink)] = (ink, fit_ink(ink, self.max_error))
        return self._normalized[key]

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Unpickled or copied (DataLoader workers started by spawn): the kept curves are re-keyed by the
        id() of the copied inks, which pickling keeps together with their curves."""
        self.__dict__.update(state)
        self.__dict__["_curves"] = {id(ink): (ink, curves) for ink, curves in state["_curves"].values()}
        self.__dict__["_kept"] = {id(ink): ink for ink in state["_normalized"].values()}

    def curves(self, ink: Ink) -> Curves:
        """The Bézier curves of a normalized ink (fitted once for the inks ``load_entry`` keeps)."""
        cached = self._curves.get(id(ink))
        return cached[1] if cached is not None and cached[0] is ink else fit_ink(ink, self.max_error)

    def features(self, raw: Ink, rng: np.random.Generator | None = None) -> torch.Tensor:
        features = self._features(raw, rng)
        if rng is None or not self.augment or self.time_masks == 0:
            return features
        # Each feature's line mean: the features differ in scale (pen_up is 0/1, dx a fraction of a line height).
        return mask_time(features, rng, self.time_masks, self.time_width, features.mean(dim=0))

    def _features(self, raw: Ink, rng: np.random.Generator | None) -> torch.Tensor:
        if self.representation == "bezier":
            return torch.from_numpy(curve_features(self._augmented_curves(raw, rng), self.feature_names))
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

    def frame_boundaries(self, raw: Ink) -> np.ndarray:
        """Where each frame starts among the ink's points (``Ink.points()`` indices, as read), then the
        point count: a word's timestamps are the range of points it was written with."""
        if self.representation == "bezier":
            curves = self.curves(raw)
            # A pen-up jump starts where the next stroke does: the stroke's last point stays with its
            # last drawn curve (a word ending at a pen lift keeps it).
            return np.append(np.where(curves.pen_up, curves.last, curves.first), raw.num_points)
        return np.append(F.resample_origins(raw, self.step), raw.num_points)

    def _augmented_curves(self, ink: Ink, rng: np.random.Generator | None) -> Curves:
        curves = self.curves(ink)
        if rng is None or not self.augment:
            return curves
        matrix, stretch = F.random_distortion(rng, self.scale, self.shear, self.rotation_deg, self.time_stretch)
        # About the centre of the ink's extent, as ``augment`` does: the ``y`` feature depends on it.
        xy = ink.points()[:, :2]
        centre = (xy.min(axis=0) + xy.max(axis=0)) / 2
        # Jitter in line heights (the units of a normalized ink), as ``augment`` scales it.
        return curves.affine(matrix, centre - matrix @ centre, stretch).jittered(rng, self.jitter)

    def estimate_frames(self, entry: dict[str, Any]) -> int:
        key = (entry[self.path_key], entry.get("line_id"))
        if key not in self._frames:
            self._frames[key] = int(self.features(self.load_entry(entry)).shape[0])
        return self._frames[key]
