"""Ink as a sequence of cubic Bézier curves (Carbune et al. 2020, "Fast multi-language LSTM-based
online handwriting recognition", section 3).

Each stroke is cut into pieces that one cubic Bézier curve fits within an error bound, and every piece,
as well as every pen-up jump between strokes, becomes one feature vector (``CURVE_FEATURES``). A line of
handwriting becomes a few curves per character instead of ten or more resampled points, so the
recognizer runs over a sequence several times shorter.

Fitting: a curve's end points are the piece's first and last points; its two inner control points
minimize the squared distance between each point and the curve at that point's parameter (its relative
arc length along the piece), a linear least-squares problem with a closed form. Pieces are grown
greedily from a stroke's start: the longest piece whose largest point-to-curve distance stays within
``max_error`` is taken (every candidate end in a window fitted at once), and the next piece starts at
its last point.

Curves are affine-equivariant: an affine map of the control points is the same map of the curve, so
training augmentation (scale, shear, rotation) can transform fitted curves instead of fitting anew.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .ink import Ink

#: largest distance between a point and its curve, in the ink's units (line heights after ``normalize``)
MAX_ERROR = 0.05
#: the features of one curve, in order (see ``curve_features``)
CURVE_FEATURES = ("dx", "dy", "d1", "d2", "a1", "a2", "t1", "t2", "t3", "pen_up", "y")
#: the paper's ten (``y`` is ours)
DEFAULT_CURVE_FEATURES = CURVE_FEATURES[:10]
#: weight of the pull of the inner control points towards the straight line (the chord's thirds): it
#: only decides the fit when the points do not (two or three points, points all at one place)
_RIDGE = 1e-6
_DEGENERATE = 1e-9  # a chord or control arm shorter than this has no direction


@dataclass(frozen=True)
class Curves:
    """An ink's curves, in writing order.

    Args:
        control: (curves, 4, 2) control points P0..P3 (P0 and P3 are on the ink).
        times: (curves, 4) the time of P0..P3 as a cubic Bézier in the curve parameter, in seconds (NaN
            when the ink has no timing).
        pen_up: (curves,) True for the straight jump from one stroke's end to the next stroke's start.
        first, last: (curves,) the range of the ink's points (``Ink.points()`` indices) each curve spans;
            a pen-up curve spans the two points it joins.
    """

    control: np.ndarray
    times: np.ndarray
    pen_up: np.ndarray
    first: np.ndarray
    last: np.ndarray

    def __len__(self) -> int:
        return len(self.control)

    def affine(self, matrix: np.ndarray, offset: np.ndarray, time_scale: float = 1.0) -> Curves:
        """The curves of the ink mapped by ``x -> matrix @ x + offset``, its times scaled about each curve's
        start by ``time_scale``: exact, since Bézier curves are affine-equivariant."""
        control = self.control @ np.asarray(matrix, dtype=np.float64).T + np.asarray(offset, dtype=np.float64)
        start = self.times[:, :1]
        return Curves(control, start + time_scale * (self.times - start), self.pen_up, self.first, self.last)

    def jittered(self, rng: np.random.Generator, std: float) -> Curves:
        """The curves with gaussian noise of ``std`` added to every control point: a point two curves
        share (one's end, the next one's start) moves as one, and pen-up jumps stay straight."""
        if not (np.isfinite(std) and std >= 0):
            raise ValueError(f"jitter must be >= 0, got {std!r}")
        if std == 0 or len(self) == 0:
            return self
        ends = np.concatenate([self.first, self.last])
        shared = rng.normal(0.0, std, size=(int(ends.max()) + 1, 2))  # one draw per ink point (only ends used)
        control = self.control.copy()
        control[:, 0] += shared[self.first]
        control[:, 3] += shared[self.last]
        control[:, 1:3] += rng.normal(0.0, std, size=(len(self), 2, 2))
        jump = self.pen_up
        control[jump, 1] = control[jump, 0] + (control[jump, 3] - control[jump, 0]) / 3
        control[jump, 2] = control[jump, 0] + 2 * (control[jump, 3] - control[jump, 0]) / 3
        return Curves(control, self.times, self.pen_up, self.first, self.last)


def _bernstein(s: np.ndarray) -> np.ndarray:
    """(n, 4) cubic Bernstein basis at parameters ``s``."""
    r = 1.0 - s
    return np.column_stack([r**3, 3 * s * r**2, 3 * s**2 * r, s**3])


def _chord_parameters(xy: np.ndarray) -> np.ndarray:
    """Relative arc length of each point along the polyline, from 0 to 1 (evenly spaced if it has none)."""
    arc = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(xy, axis=0).T))])
    if arc[-1] <= _DEGENERATE:
        return np.linspace(0.0, 1.0, len(xy)) if len(xy) > 1 else np.zeros(1)
    return arc / arc[-1]


def _fit_inner(values: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """(2, dims) inner control values of the cubic through ``values[0]`` and ``values[-1]`` nearest to
    all ``values`` (least squares, pulled by ``_RIDGE`` towards the straight line's)."""
    start, end = values[0], values[-1]
    residual = values - np.outer(basis[:, 0], start) - np.outer(basis[:, 3], end)
    inner = basis[:, 1:3]
    line = np.stack([start + (end - start) / 3, start + 2 * (end - start) / 3])
    gram = inner.T @ inner + _RIDGE * np.eye(2)
    return np.linalg.solve(gram, inner.T @ residual + _RIDGE * line)


def fit_curve(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """The cubic Bézier through the first and last of ``points`` ((n, 2) or (n, 3) with times) nearest to
    all of them: control points (4, 2), times of the control points (4,) (NaN without times), and the
    largest distance between a point and the curve at that point's parameter."""
    xy = points[:, :2]
    s = _chord_parameters(xy)
    basis = _bernstein(s)
    control = np.concatenate([xy[:1], _fit_inner(xy, basis), xy[-1:]])
    error = float(np.max(np.hypot(*(basis @ control - xy).T)))
    if points.shape[1] > 2 and np.isfinite(points[:, 2]).all():
        t = points[:, 2:3]
        times = np.concatenate([t[:1], _fit_inner(t, basis), t[-1:]])[:, 0]
    else:
        times = np.full(4, np.nan)
    return control, times, error


def _longest_piece(stroke: np.ndarray, first: int, max_error: float, window: int = 16) -> tuple[int, np.ndarray]:
    """The longest piece from point ``first`` of a stroke ((n, 3): x, y, t) that one curve fits within
    ``max_error``: its last point, and the curve's control points and times (4, 3).

    Every candidate end in a window is fitted at once (``fit_curve``'s least squares, batched); the window
    doubles while its farthest candidate still fits. Two points always fit (a straight line).
    """
    count = len(stroke)
    while True:
        end = min(first + window, count - 1)
        piece = stroke[first : end + 1]
        size = len(piece)
        arc = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(piece[:, :2], axis=0).T))])
        ends = np.arange(1, size)  # candidate last points, relative to first
        inside = np.arange(size)[None, :] <= ends[:, None]  # (candidates, points)
        length = arc[ends]
        even = np.arange(size)[None, :] / ends[:, None]  # a piece without length: evenly spaced
        s = np.where(length[:, None] > _DEGENERATE, arc[None, :] / np.maximum(length, _DEGENERATE)[:, None], even)
        s = np.where(inside, np.clip(s, 0.0, 1.0), 0.0)
        r = 1.0 - s
        b0, b1, b2, b3 = (b * inside for b in (r**3, 3 * s * r**2, 3 * s**2 * r, s**3))
        start, stop = piece[0], piece[ends]  # (3,), (candidates, 3)
        residual = piece[None] - b0[..., None] * start - b3[..., None] * stop[:, None]
        # The 2 x 2 normal equations of the inner control points, solved in closed form for all candidates.
        g11, g12, g22 = (b1 * b1).sum(1) + _RIDGE, (b1 * b2).sum(1), (b2 * b2).sum(1) + _RIDGE
        rhs1 = (b1[..., None] * residual).sum(1) + _RIDGE * (start + (stop - start) / 3)
        rhs2 = (b2[..., None] * residual).sum(1) + _RIDGE * (start + 2 * (stop - start) / 3)
        determinant = (g11 * g22 - g12**2)[:, None]
        p1 = (g22[:, None] * rhs1 - g12[:, None] * rhs2) / determinant
        p2 = (g11[:, None] * rhs2 - g12[:, None] * rhs1) / determinant
        curve = b0[..., None] * start + b1[..., None] * p1[:, None] + b2[..., None] * p2[:, None]
        curve += b3[..., None] * stop[:, None]
        error = np.where(inside, np.hypot(*np.moveaxis(curve[..., :2] - piece[None, :, :2], -1, 0)), 0.0).max(1)
        fits = error <= max_error
        fits[0] = True
        if fits[-1] and end < count - 1:
            window *= 2
            continue
        best = int(np.flatnonzero(fits)[-1])
        return first + best + 1, np.stack([start, p1[best], p2[best], stop[best]])


def _stroke_curves(stroke: np.ndarray, max_error: float) -> list[tuple[int, int, np.ndarray]]:
    """Greedy split of one stroke ((n, 3)) into pieces that each fit one curve: (first, last, control
    points and times (4, 3)) each."""
    if len(stroke) == 1:
        return [(0, 0, np.repeat(stroke[:1], 4, axis=0))]
    curves = []
    first = 0
    while first < len(stroke) - 1:
        last, control = _longest_piece(stroke, first, max_error)
        curves.append((first, last, control))
        first = last
    return curves


def fit_ink(ink: Ink, max_error: float = MAX_ERROR) -> Curves:
    """The ink's strokes as cubic Bézier curves within ``max_error`` of every point, with a straight
    pen-up curve from each stroke's last point to the next stroke's first. A one-point stroke becomes a
    curve of no length (a dot). Points the pen rested on (repeated positions) are kept: they fit any curve.
    """
    if not (np.isfinite(max_error) and max_error > 0):
        raise ValueError(f"the Bézier error bound must be a positive number, got {max_error!r}")
    rows: list[tuple[np.ndarray, bool, int, int]] = []  # (control points and times (4, 3), pen up, first, last)
    offset = 0
    for number, stroke in enumerate(ink.strokes):
        if number:  # the jump from the last stroke: a straight line at constant speed
            before = ink.strokes[number - 1][-1]
            rows.append((before + np.linspace(0.0, 1.0, 4)[:, None] * (stroke[0] - before), True, offset - 1, offset))
        rows.extend((fitted, False, offset + a, offset + b) for a, b, fitted in _stroke_curves(stroke, max_error))
        offset += len(stroke)
    fitted = np.array([row[0] for row in rows], dtype=np.float64).reshape(-1, 4, 3)
    return Curves(
        fitted[..., :2],
        fitted[..., 2],
        np.array([row[1] for row in rows], dtype=bool),
        np.array([row[2] for row in rows], dtype=np.int64),
        np.array([row[3] for row in rows], dtype=np.int64),
    )


def _angle(vector: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Signed angle from ``reference`` to ``vector`` (rows), divided by pi; 0 where either has no length."""
    cross = reference[:, 0] * vector[:, 1] - reference[:, 1] * vector[:, 0]
    dot = np.sum(reference * vector, axis=1)
    valid = (np.hypot(*vector.T) > _DEGENERATE) & (np.hypot(*reference.T) > _DEGENERATE)
    return np.where(valid, np.arctan2(cross, dot) / np.pi, 0.0)


def curve_features(curves: Curves, features: Sequence[str] = DEFAULT_CURVE_FEATURES) -> np.ndarray:
    """(curves, len(features)) float32 features of each curve, columns in the order given:

    - ``dx``, ``dy``: from the curve's start to its end (P3 - P0), in the ink's units.
    - ``d1``, ``d2``: length of the control arms P1 - P0 and P2 - P3, in the ink's units (not relative to
      the chord as in the paper: a nearly closed loop has a chord near 0, and the ratio would explode).
    - ``a1``, ``a2``: their angles from the chord (P3 - P0 for the first arm, P0 - P3 for the second),
      divided by pi, positive when turning clockwise as displayed (y down); measured from the x axis when
      the chord has no length.
    - ``t1``, ``t2``, ``t3``: the times of P1, P2, P3 after P0's, in seconds (0 without timing): the
      curve's duration and how the pen's speed varied along it.
    - ``pen_up``: 1 for the jump between strokes, else 0.
    - ``y``: the height of the curve's start (after ``normalize``: relative to the core zone's centre, in
      line heights), which tells ascenders and descenders apart; not in the paper.
    """
    names = (features,) if isinstance(features, str) else tuple(features)
    unknown = [name for name in names if name not in CURVE_FEATURES]
    if unknown or not names:
        raise ValueError(f"unknown curve features {unknown or names}; valid: {', '.join(CURVE_FEATURES)}")
    p0, p1, p2, p3 = (curves.control[:, i] for i in range(4))
    chord = p3 - p0
    length = np.hypot(*chord.T) if len(chord) else np.zeros(0)
    has_chord = length > _DEGENERATE
    reference = np.where(has_chord[:, None], chord, np.array([1.0, 0.0]))
    times = np.nan_to_num(curves.times - curves.times[:, :1], nan=0.0)
    columns = {
        "dx": chord[:, 0],
        "dy": chord[:, 1],
        "d1": np.hypot(*(p1 - p0).T),
        "d2": np.hypot(*(p2 - p3).T),
        "a1": _angle(p1 - p0, reference),
        "a2": _angle(p2 - p3, -reference),
        "t1": times[:, 1],
        "t2": times[:, 2],
        "t3": times[:, 3],
        "pen_up": curves.pen_up.astype(np.float64),
        "y": p0[:, 1],
    }
    return np.column_stack([columns[name] for name in names]).astype(np.float32).reshape(len(curves), len(names))
