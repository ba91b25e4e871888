"""Online-handwriting preprocessing: normalization, resampling, point features, augmentation.

Pure numpy functions on ``Ink`` (inputs are never modified) used by the ink front-end:

    ink = normalize(ink)                  # baseline, slant, position, size
    ink = augment(ink, rng)               # training only
    ink = resample(ink, step=0.1)         # equidistant points, 0.1 line heights apart
    x = point_features(ink, ("dx", "dy", "dt", "pen_up"))

Conventions: y grows downwards (screen coordinates, as in ``Ink``). A *slant* is a tangent: the x
shift per unit of height, positive when the writing leans right (italic). Angles are in degrees.
Lengths such as the resampling step are in normalized units, i.e. relative to the line height
estimated by ``estimate_line_height``. Defaults are the named constants below, which
``recognizer.ink.frontend.InkFrontend`` shares. Drawing ink is in ``recognizer.ink.plot``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from .ink import Ink

__all__ = [
    "AUGMENT_ASPECT",
    "AUGMENT_JITTER",
    "AUGMENT_JITTER_SPACING",
    "AUGMENT_ROTATION_DEG",
    "AUGMENT_SCALE",
    "AUGMENT_SHEAR",
    "AUGMENT_TIME_STRETCH",
    "DEFAULT_FEATURES",
    "DEFAULT_STEP",
    "FEATURES",
    "arc_length",
    "augment",
    "estimate_baseline_angle",
    "estimate_line_height",
    "estimate_slant",
    "normalize",
    "point_features",
    "random_distortion",
    "resample",
    "resample_origins",
]

#: valid names for ``point_features``; absolute x is deliberately absent (it only encodes where on
#: the line a point is, which says nothing about the character)
FEATURES = ("dx", "dy", "dt", "pen_up", "cos", "sin", "curvature", "y")
DEFAULT_FEATURES = ("dx", "dy", "dt", "pen_up")
#: resampling distance between points, in line heights
DEFAULT_STEP = 0.1

# ``augment`` defaults: (low, high) ranges drawn per call, and the jitter's standard deviation and knot
# spacing, in line heights. Factor ranges (scale, aspect, time stretch) are log-uniform.
AUGMENT_SCALE = (0.85, 1.15)
AUGMENT_SHEAR = (-0.3, 0.3)  # tangent; positive leans the writing right
AUGMENT_ROTATION_DEG = (-3.0, 3.0)
AUGMENT_JITTER = 0.02
AUGMENT_TIME_STRETCH = (0.8, 1.25)
AUGMENT_ASPECT = (0.9, 1.1)  # x/y ratio
AUGMENT_JITTER_SPACING = 0.1

#: quantiles of the (arc-length weighted) y distribution bounding the core zone
CORE_QUANTILES = (0.2, 0.8)
# The 20-80% range covers 0.6 of a core zone filled evenly (vertical strokes) and 0.81 of one
# filled by arcs (ink piles up at the top and bottom of an "o"); real writing is in between.
_CORE_FRACTION = 0.7
#: near-vertical segments: within this many degrees of the vertical (for the slant estimate)
MAX_SLANT_DEG = 50.0
#: baseline estimates beyond this are taken as failures (a word, not a rotated line) and ignored
MAX_BASELINE_DEG = 30.0
#: the baseline is only estimated for inks at least this many line heights wide
BASELINE_MIN_ASPECT = 3.0
_DEGENERATE = 1e-6  # relative to the ink's extent: below this a size counts as zero


# ---------------------------------------------------------------------------------------------
# helpers on arrays


def _with_xy(ink: Ink, xy: np.ndarray, t: np.ndarray | None = None) -> Ink:
    """A copy of ``ink`` with new coordinates (and times) for its points, strokes kept."""
    points = ink.points()
    t = points[:, 2] if t is None else t
    bounds = np.cumsum([len(stroke) for stroke in ink.strokes])[:-1]
    strokes = np.split(np.column_stack([xy, t]), bounds)
    return dataclasses.replace(ink, strokes=strokes)


def _stroke_starts(ids: np.ndarray) -> np.ndarray:
    return np.concatenate([[True], ids[1:] != ids[:-1]])


def _arc_weights(xy: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Per-point weights: half the length of the segments on either side (within the stroke).

    Weighting by arc length makes the statistics describe the trajectory, not how densely the
    device sampled it (slow pen = many points).
    """
    weights = np.zeros(len(xy))
    if len(xy) > 1:
        same = ids[1:] == ids[:-1]
        lengths = np.where(same, np.hypot(*np.diff(xy, axis=0).T), 0.0)
        weights[:-1] += lengths / 2
        weights[1:] += lengths / 2
    if weights.sum() <= 0:  # only dots: every point counts the same
        weights[:] = 1.0
    return weights


def _weighted_quantile(values: np.ndarray, weights: np.ndarray, q: Any) -> np.ndarray:
    order = np.argsort(values, kind="stable")
    values, weights = values[order], weights[order]
    keep = weights > 0
    values, weights = values[keep], weights[keep]
    cumulative = np.cumsum(weights) - weights / 2
    return np.interp(np.asarray(q, dtype=np.float64) * weights.sum(), cumulative, values)


def _core_zone(xy: np.ndarray, ids: np.ndarray) -> tuple[float, float]:
    """(centre y, height) of the core zone; the height is always positive (see estimate_line_height)."""
    weights = _arc_weights(xy, ids)
    low, high = _weighted_quantile(xy[:, 1], weights, CORE_QUANTILES)
    centre = float(low + high) / 2
    height = float(high - low) / _CORE_FRACTION
    extent = float(np.ptp(xy, axis=0).max())
    tiny = _DEGENERATE * extent
    if height <= tiny:  # mostly horizontal ink (a dash, "="): the full vertical range
        height = float(np.ptp(xy[:, 1]))
    if height <= tiny:  # perfectly flat: a dash is about one character high
        height = extent
    if height <= 0:  # a single dot
        height = 1.0
    return centre, height


def _rotate(xy: np.ndarray, degrees: float, centre: np.ndarray) -> np.ndarray:
    """Rotate by ``degrees``, clockwise as displayed (y down), about ``centre``."""
    angle = np.radians(degrees)
    cos, sin = np.cos(angle), np.sin(angle)
    shifted = xy - centre
    x, y = shifted.T
    return np.column_stack([x * cos - y * sin, x * sin + y * cos]) + centre


def _slant_of(xy: np.ndarray, ids: np.ndarray) -> float:
    if len(xy) < 2:
        return 0.0
    same = ids[1:] == ids[:-1]
    dx, dy = np.diff(xy, axis=0)[same].T
    lengths = np.hypot(dx, dy)
    # Up- and down-strokes lie on the same line: orient every segment downwards.
    flip = dy < 0
    dx, dy = np.where(flip, -dx, dx), np.abs(dy)
    angle = np.degrees(np.arctan2(-dx, dy))  # from the vertical, positive = top to the right
    near = (np.abs(angle) < MAX_SLANT_DEG) & (lengths > 0)
    if not near.any():
        return 0.0
    angle, lengths = angle[near], lengths[near]
    # The mode of the length-weighted angle histogram: loops and arcs spread over all angles and
    # would drag a plain mean towards 0, the straight down-strokes pile up at the slant.
    bins = int(2 * MAX_SLANT_DEG)
    histogram, edges = np.histogram(angle, bins=bins, range=(-MAX_SLANT_DEG, MAX_SLANT_DEG), weights=lengths)
    smooth = np.convolve(histogram, [1.0, 2.0, 3.0, 2.0, 1.0], mode="same")
    peak = (edges[:-1] + edges[1:])[np.argmax(smooth)] / 2
    window = np.abs(angle - peak) <= 8.0
    return float(np.tan(np.radians(np.average(angle[window], weights=lengths[window]))))


# ---------------------------------------------------------------------------------------------
# estimates


def estimate_line_height(ink: Ink) -> float:
    """Height of the writing's core zone (about the x-height), always positive.

    The 20-80% interquantile range of the y values along the trajectory (points weighted by arc
    length), divided by 0.7 (the share of a core zone that range covers). Ascenders, descenders,
    i-dots and stray strokes only move the tails. A perfectly horizontal ink falls back to its
    full extent, a single dot to 1.
    """
    return _core_zone(ink.points()[:, :2], ink.stroke_ids())[1]


def estimate_baseline_angle(ink: Ink) -> float:
    """Angle of the writing line in degrees, positive when it descends to the right as displayed.

    A robust (Tukey biweight, arc-length weighted) fit of y over x through all points: ascenders,
    descenders and dots are outliers to the band of core-zone ink. 0 when the ink is narrower than
    ``BASELINE_MIN_ASPECT`` line heights (a word or letter has no measurable baseline direction).
    """
    return _baseline_of(ink.points()[:, :2], ink.stroke_ids())


def _baseline_of(xy: np.ndarray, ids: np.ndarray) -> float:
    _, height = _core_zone(xy, ids)
    if np.ptp(xy[:, 0]) < BASELINE_MIN_ASPECT * height:
        return 0.0
    x, y = xy.T
    base = _arc_weights(xy, ids)
    weights = base
    slope = 0.0
    for _ in range(10):
        mean_x, mean_y = np.average(x, weights=weights), np.average(y, weights=weights)
        spread = np.sum(weights * (x - mean_x) ** 2)
        if spread <= 0:
            break
        slope = float(np.sum(weights * (x - mean_x) * (y - mean_y)) / spread)
        residual = y - mean_y - slope * (x - mean_x)
        scale = 4.685 * 1.4826 * float(_weighted_quantile(np.abs(residual), base, 0.5))
        if scale <= 0:
            break
        u = residual / scale
        robust = base * np.where(np.abs(u) < 1, (1 - u**2) ** 2, 0.0)
        if robust.sum() <= 0:
            break
        weights = robust
    return float(np.degrees(np.arctan(slope)))


def estimate_slant(ink: Ink) -> float:
    """Dominant slant of the near-vertical pen movements, as a tangent (positive leans right).

    The mode of a length-weighted histogram (1 degree bins, lightly smoothed) of the angles to the
    vertical of all segments within ``MAX_SLANT_DEG`` of it, refined by the weighted mean angle
    within 8 degrees of the mode. 0 when the ink has no near-vertical movement.
    """
    return _slant_of(ink.points()[:, :2], ink.stroke_ids())


# ---------------------------------------------------------------------------------------------
# transforms


def normalize(ink: Ink, slant: bool = True, baseline: bool = True) -> Ink:
    """Ink with a horizontal baseline, upright writing, core zone centred on y=0 and ~1 high.

    Steps: rotate the baseline (``estimate_baseline_angle``, two passes) to horizontal about the
    centroid; shear the slant (``estimate_slant``) away about the core zone's centre (a shear
    keeps y, so heights are not distorted); translate so the leftmost point is at x=0 and the core zone is
    centred on y=0; divide by ``estimate_line_height``. Times are kept. The result is the same
    (up to rounding) for any translation or scale of the input.
    """
    xy, ids = ink.points()[:, :2].copy(), ink.stroke_ids()
    if baseline:
        # A second pass removes most of what the first leaves (the robust weights move with the
        # rotation); an implausible first estimate leaves the ink as it is.
        for _ in range(2):
            angle = _baseline_of(xy, ids)
            if not 0 < abs(angle) <= MAX_BASELINE_DEG:
                break
            centroid = np.average(xy, axis=0, weights=_arc_weights(xy, ids))
            xy = _rotate(xy, -angle, centroid)
    if slant:
        tangent = _slant_of(xy, ids)
        centre, _ = _core_zone(xy, ids)
        xy[:, 0] += tangent * (xy[:, 1] - centre)
    centre, height = _core_zone(xy, ids)
    xy = (xy - np.array([xy[:, 0].min(), centre])) / height
    return _with_xy(ink, xy)


def arc_length(stroke: np.ndarray) -> np.ndarray:
    """Distance along a stroke ((n, 2+) points) from its first point to each point."""
    return np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(stroke[:, :2], axis=0).T))])


def _resample_positions(total: float, step: float) -> np.ndarray:
    """Arc lengths of the resampled points of a stroke ``total`` long: every ``step``, and its end."""
    if total == 0:
        return np.zeros(1)
    positions = np.arange(0.0, total, step)
    # Drop a point that rounding put on top of the end point.
    positions = positions[(positions == 0) | (total - positions > 1e-6 * step)]
    return np.append(positions, total)


def _resample_stroke(stroke: np.ndarray, step: float) -> np.ndarray:
    arc = arc_length(stroke)
    # Repeated points (the pen resting) would make arc length non-increasing for np.interp.
    keep = np.concatenate([[True], np.diff(arc) > 0])
    stroke, arc = stroke[keep], arc[keep]
    if len(stroke) == 1:
        return stroke.copy()
    positions = _resample_positions(arc[-1], step)
    columns = [np.interp(positions, arc, stroke[:, i]) for i in range(2)]
    if np.isfinite(stroke[:, 2]).all():
        columns.append(np.interp(positions, arc, stroke[:, 2]))
    else:
        columns.append(np.full(len(positions), np.nan))
    return np.column_stack(columns)


def resample(ink: Ink, step: float = DEFAULT_STEP) -> Ink:
    """Points every ``step`` along each stroke's trajectory (polyline arc length).

    Each stroke keeps its first and last point, so only its last segment may be shorter than
    ``step``; a stroke shorter than ``step`` becomes its two end points, one without length a
    single point. Times are interpolated linearly along the arc length when the stroke has them
    (NaN otherwise). ``step`` is in the ink's units: after ``normalize``, line heights.
    """
    if not (np.isfinite(step) and step > 0):
        raise ValueError(f"resample step must be a positive number, got {step!r}")
    return dataclasses.replace(ink, strokes=[_resample_stroke(stroke, float(step)) for stroke in ink.strokes])


def resample_origins(ink: Ink, step: float = DEFAULT_STEP) -> np.ndarray:
    """For each point of ``resample(ink, step)``, the index (into ``ink.points()``) of the original point
    at or before it along its stroke: what maps a resampled point back to the ink as written."""
    origins, offset = [], 0
    for stroke in ink.strokes:
        arc = arc_length(stroke)
        positions = _resample_positions(arc[-1], float(step))
        index = np.searchsorted(arc, positions, side="right") - 1
        index[0] = 0  # a stroke's start is its first point, even where the pen rested there
        origins.append(offset + index)
        offset += len(stroke)
    return np.concatenate(origins)


def point_features(ink: Ink, features: Sequence[str] = DEFAULT_FEATURES) -> np.ndarray:
    """(points, len(features)) float32 per-point features, columns in the order given.

    - ``dx``, ``dy``: offset from the previous point. A stroke's first point takes the offset from
      the previous stroke's last point (the pen-up jump); the ink's first point has 0.
    - ``dt``: time since the previous point, same convention (a stroke's first point: the pen-up
      pause), in seconds; 0 everywhere when the ink has no (complete) timing.
    - ``pen_up``: 1 on the first point of every stroke (the pen was lifted before it), else 0.
    - ``cos``, ``sin``: writing direction at the point (previous to next point within the stroke,
      one-sided at stroke ends); both 0 for a one-point stroke.
    - ``curvature``: the signed turning angle at the point between the incoming and outgoing
      segments, divided by pi (so in [-1, 1]), positive when turning clockwise as displayed; 0 at
      stroke ends. Unlike the sine of the angle it tells a cusp (about +-1) from a straight line (0).
    - ``y``: the point's height (after ``normalize``: relative to the core zone's centre, in line
      heights), which tells ascenders and descenders apart.

    Apply it to normalized and resampled ink: dx/dy are then in line heights and the point
    spacing is even.
    """
    names = (features,) if isinstance(features, str) else tuple(features)
    unknown = [name for name in names if name not in FEATURES]
    if unknown or not names:
        raise ValueError(f"unknown ink features {unknown or names}; valid: {', '.join(FEATURES)}")
    points, ids = ink.points(), ink.stroke_ids()
    count = len(points)
    starts = _stroke_starts(ids)
    ends = np.concatenate([starts[1:], [True]])
    delta = np.zeros((count, 3))
    delta[1:] = np.diff(points, axis=0)
    if not ink.has_time:
        delta[:, 2] = 0.0
    index = np.arange(count)

    def direction() -> np.ndarray:
        previous = np.where(starts, index, index - 1)
        following = np.where(ends, index, index + 1)
        vector = points[following, :2] - points[previous, :2]
        norm = np.hypot(*vector.T)
        return np.divide(vector, norm[:, None], out=np.zeros_like(vector), where=norm[:, None] > 0)

    def curvature() -> np.ndarray:
        incoming = delta[:, :2]
        outgoing = np.zeros((count, 2))
        outgoing[:-1] = incoming[1:]
        cross = incoming[:, 0] * outgoing[:, 1] - incoming[:, 1] * outgoing[:, 0]
        dot = np.sum(incoming * outgoing, axis=1)
        valid = ~starts & ~ends & (np.hypot(*incoming.T) > 0) & (np.hypot(*outgoing.T) > 0)
        return np.where(valid, np.arctan2(cross, dot) / np.pi, 0.0)

    cache: dict[str, np.ndarray] = {}
    columns = []
    for name in names:
        if name == "dx":
            column = delta[:, 0]
        elif name == "dy":
            column = delta[:, 1]
        elif name == "dt":
            column = delta[:, 2]
        elif name == "pen_up":
            column = starts.astype(np.float64)
        elif name in ("cos", "sin"):
            if "direction" not in cache:
                cache["direction"] = direction()
            column = cache["direction"][:, 0 if name == "cos" else 1]
        elif name == "curvature":
            column = curvature()
        else:  # "y"
            column = points[:, 1]
        columns.append(column)
    return np.column_stack(columns).astype(np.float32)


def _log_uniform(rng: np.random.Generator, bounds: Sequence[float], name: str) -> float:
    low, high = (float(bound) for bound in bounds)
    if not (0 < low <= high):
        raise ValueError(f"augment: {name} must be (low, high) with 0 < low <= high, got {tuple(bounds)}")
    # Log-uniform: shrinking and growing by the same factor are equally likely.
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def _uniform(rng: np.random.Generator, bounds: Sequence[float], name: str) -> float:
    low, high = (float(bound) for bound in bounds)
    if not (np.isfinite(low) and np.isfinite(high) and low <= high):
        raise ValueError(f"augment: {name} must be (low, high) with low <= high, got {tuple(bounds)}")
    return float(rng.uniform(low, high))


def random_distortion(
    rng: np.random.Generator,
    scale: Sequence[float] = AUGMENT_SCALE,
    shear: Sequence[float] = AUGMENT_SHEAR,
    rotation_deg: Sequence[float] = AUGMENT_ROTATION_DEG,
    time_stretch: Sequence[float] = AUGMENT_TIME_STRETCH,
    aspect: Sequence[float] = AUGMENT_ASPECT,
) -> tuple[np.ndarray, float]:
    """The random affine part of ``augment``: a (2, 2) matrix (scale with an x/y ratio, then shear, then
    rotation, about the origin) and a time stretch factor, drawn from ``rng`` in ``augment``'s order."""
    factor = _log_uniform(rng, scale, "scale")
    ratio = _log_uniform(rng, aspect, "aspect")
    tangent = _uniform(rng, shear, "shear")
    degrees = _uniform(rng, rotation_deg, "rotation_deg")
    stretch = _log_uniform(rng, time_stretch, "time_stretch")
    scaling = np.diag([factor * np.sqrt(ratio), factor / np.sqrt(ratio)])
    shearing = np.array([[1.0, -tangent], [0.0, 1.0]])  # y < 0 is the top: it moves right for a positive shear
    angle = np.radians(degrees)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])  # clockwise as displayed
    return rotation @ shearing @ scaling, stretch


def augment(
    ink: Ink,
    rng: np.random.Generator,
    scale: Sequence[float] = AUGMENT_SCALE,
    shear: Sequence[float] = AUGMENT_SHEAR,
    rotation_deg: Sequence[float] = AUGMENT_ROTATION_DEG,
    jitter: float = AUGMENT_JITTER,
    time_stretch: Sequence[float] = AUGMENT_TIME_STRETCH,
    aspect: Sequence[float] = AUGMENT_ASPECT,
    jitter_spacing: float = AUGMENT_JITTER_SPACING,
) -> Ink:
    """A randomly distorted copy of ``ink`` for training (text, source and strokes kept).

    Drawn per call: a common scale factor (``scale``) with an x/y ratio (``aspect``) split
    between the axes; a shear (tangent, positive leans the writing right; ``shear``); a rotation
    (degrees, clockwise as displayed; ``rotation_deg``); all about the ink's bounding-box centre.
    Then gaussian jitter: displacements with standard deviation ``jitter`` times the estimated
    line height, drawn at knots every ``jitter_spacing`` line heights along each stroke and
    interpolated linearly between them, so the noise does not depend on the device's sampling
    density (on ink resampled at that spacing it is independent per point; dense raw ink is not
    crumpled into a long zigzag that resampling would turn into many more points). Times are
    stretched by a factor (``time_stretch``) about the first timestamp; unknown (NaN) times stay
    NaN. Coordinates never become NaN. Factor ranges (scale, aspect, time_stretch) are sampled
    log-uniformly, so shrinking and growing by the same factor are equally likely.

    Apply it after ``normalize`` (which would undo slant, rotation and scale) and before or after
    ``resample``. The same ``rng`` state gives the same result.
    """
    matrix, stretch = random_distortion(rng, scale, shear, rotation_deg, time_stretch, aspect)
    if not (np.isfinite(jitter) and jitter >= 0):
        raise ValueError(f"augment: jitter must be >= 0, got {jitter!r}")
    if not (np.isfinite(jitter_spacing) and jitter_spacing > 0):
        raise ValueError(f"augment: jitter_spacing must be > 0, got {jitter_spacing!r}")

    points, ids = ink.points(), ink.stroke_ids()
    xy = points[:, :2]
    centre = (xy.min(axis=0) + xy.max(axis=0)) / 2
    xy = (xy - centre) @ matrix.T + centre

    if jitter > 0:
        height = _core_zone(xy, ids)[1]
        spacing = jitter_spacing * height
        noise = np.empty_like(xy)
        starts = np.flatnonzero(_stroke_starts(ids))
        for begin, end in zip(starts, np.append(starts[1:], len(xy))):
            stroke = xy[begin:end]
            arc = arc_length(stroke)
            knots = int(np.floor(arc[-1] / spacing)) + 2
            values = rng.normal(0.0, jitter * height, size=(knots, 2))
            position, grid = arc / spacing, np.arange(knots)
            noise[begin:end] = np.column_stack([np.interp(position, grid, values[:, i]) for i in range(2)])
        xy = xy + noise

    t = points[:, 2].copy()
    finite = np.isfinite(t)
    if finite.any():
        origin = t[finite].min()
        t[finite] = origin + stretch * (t[finite] - origin)
    return _with_xy(ink, xy, t)
