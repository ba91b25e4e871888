"""Ink as a sequence of cubic Bézier curves (Carbune et al. 2020, "Fast multi-language LSTM-based
online handwriting recognition", section 3).

Each stroke is cut into pieces that one cubic Bézier curve fits within an error bound, and every piece,
as well as every pen-up jump between strokes, becomes one feature vector (``CURVE_FEATURES``). A line of
handwriting becomes a few curves per character instead of ten or more resampled points, so the
recognizer runs over a sequence several times shorter.

Fitting: a curve's end points are the piece's first and last points; its two inner control points
minimize the squared distance between each point and the curve at that point's parameter (its relative
arc length along the piece), a linear least-squares problem with a closed form. Pieces: a stroke that one
curve does not fit within ``max_error`` is split at its worst point, and so on (Schneider's rule); then
neighbouring pieces are joined while one curve still fits both. Every round fits all pieces of the ink
at once, so a line takes a few milliseconds.

Curves are affine-equivariant: an affine map of the control points is the same map of the curve, so
training augmentation (scale, shear, rotation) can transform fitted curves instead of fitting anew.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .functional import arc_length
from .ink import Ink

#: the fitting algorithm's version, saved with a model's settings: the pieces it finds shape the features,
#: so a model runs only with the fit it was trained with (bump it whenever ``fit_ink`` cuts differently)
FIT_VERSION = 2
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
_FIRST_PIECE = 16  # the fit starts from pieces of at most this many points
_FIT_CELLS = 200_000  # pieces x longest piece fitted at once


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


def fit_curve(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """The cubic Bézier through the first and last of ``points`` ((n, 2) or (n, 3) with times) nearest to
    all of them: control points (4, 2), times of the control points (4,) (NaN without times), and the
    largest distance between a point and the curve at that point's parameter (``_fit_pieces``, one piece)."""
    if points.shape[1] == 2:
        points = np.column_stack([points, np.full(len(points), np.nan)])
    last = np.array([len(points) - 1])
    control, error, _ = _fit_pieces(points, arc_length(points), np.zeros(1, dtype=np.int64), last)
    return control[0, :, :2], control[0, :, 2], float(error[0])


def _fit_pieces(points: np.ndarray, arc: np.ndarray, first: np.ndarray, last: np.ndarray) -> tuple[np.ndarray, ...]:
    """``_fit_bucket`` over pieces grouped by length, so that padding every piece to the longest never
    takes more than ``_FIT_CELLS`` cells (a long stroke beside many short pieces would take gigabytes)."""
    order = np.argsort(last - first, kind="stable")
    sizes = (last - first + 1)[order]
    control = np.empty((len(first), 4, 3))
    error = np.empty(len(first))
    worst = np.empty(len(first), dtype=np.int64)
    start = 0
    while start < len(order):
        # Sorted by length: the bucket's last piece is its longest.
        end = start + max(
            1, int(np.searchsorted(sizes[start:] * np.arange(1, len(order) - start + 1), _FIT_CELLS, "right"))
        )
        chosen = order[start:end]
        control[chosen], error[chosen], worst[chosen] = _fit_bucket(points, arc, first[chosen], last[chosen])
        start = end
    return control, error, worst


def _fit_bucket(points: np.ndarray, arc: np.ndarray, first: np.ndarray, last: np.ndarray) -> tuple[np.ndarray, ...]:
    """``fit_curve`` for many pieces at once: the pieces ``first[i]..last[i]`` of ``points`` ((n, 3): x, y,
    t), whose arc lengths from their stroke's start are ``arc``. Returns the control points and times
    (pieces, 4, 3), each piece's largest point-to-curve distance, and the point where it is largest."""
    size = int((last - first).max()) + 1
    offsets = np.arange(size)
    inside = offsets[None, :] <= (last - first)[:, None]  # (pieces, points) padded
    index = np.minimum(first[:, None] + offsets[None, :], last[:, None])
    length = arc[last] - arc[first]
    even = offsets[None, :] / np.maximum(last - first, 1)[:, None]  # a piece without length: evenly spaced
    relative = (arc[index] - arc[first][:, None]) / np.maximum(length, _DEGENERATE)[:, None]
    s = np.where(inside, np.clip(np.where(length[:, None] > _DEGENERATE, relative, even), 0.0, 1.0), 0.0)
    r = 1.0 - s
    b0, b1, b2, b3 = (b * inside for b in (r**3, 3 * s * r**2, 3 * s**2 * r, s**3))
    piece = points[index]  # (pieces, points, 3)
    start, stop = points[first], points[last]  # (pieces, 3)
    residual = piece - b0[..., None] * start[:, None] - b3[..., None] * stop[:, None]
    # The 2 x 2 normal equations of the inner control points, in closed form, pulled by _RIDGE towards the straight line.
    g11, g12, g22 = (b1 * b1).sum(1) + _RIDGE, (b1 * b2).sum(1), (b2 * b2).sum(1) + _RIDGE
    rhs1 = (b1[..., None] * residual).sum(1) + _RIDGE * (start + (stop - start) / 3)
    rhs2 = (b2[..., None] * residual).sum(1) + _RIDGE * (start + 2 * (stop - start) / 3)
    determinant = (g11 * g22 - g12**2)[:, None]
    p1 = (g22[:, None] * rhs1 - g12[:, None] * rhs2) / determinant
    p2 = (g11[:, None] * rhs2 - g12[:, None] * rhs1) / determinant
    control = np.stack([start, p1, p2, stop], axis=1)
    curve = np.einsum("pmk,pkd->pmd", np.stack([b0, b1, b2, b3], axis=-1), control[..., :2])
    distance = np.where(inside, np.hypot(*np.moveaxis(curve - piece[..., :2], -1, 0)), 0.0)
    worst = distance.argmax(axis=1)
    return control, distance[np.arange(len(first)), worst], first + worst


def _split_fit(ink: Ink, max_error: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each stroke cut into pieces that one curve fits within ``max_error``: a piece that does not fit is
    split at its worst point, all pieces of all strokes fitted at once per round (Schneider's split rule,
    batched). Returns ``first``, ``last`` and control points and times (pieces, 4, 3), in writing order."""
    points = ink.points()
    sizes = np.array([len(stroke) for stroke in ink.strokes])
    stroke_first = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    arc = np.concatenate([arc_length(stroke) for stroke in ink.strokes])
    # Start from pieces of at most _FIRST_PIECE points (curves on handwriting are a few points long):
    # splitting whole strokes would spend rounds on long, mostly padded arrays.
    starts = [begin + np.arange(0, max(size - 1, 1), _FIRST_PIECE - 1) for begin, size in zip(stroke_first, sizes)]
    first = np.concatenate(starts)
    last = np.minimum(first + _FIRST_PIECE - 1, np.repeat(stroke_first + sizes - 1, [len(s) for s in starts]))
    done_first: list[np.ndarray] = []
    done_last: list[np.ndarray] = []
    done_control: list[np.ndarray] = []
    while len(first):
        control, error, worst = _fit_pieces(points, arc, first, last)
        fits = (error <= max_error) | (last - first < 2)
        done_first.append(first[fits])
        done_last.append(last[fits])
        done_control.append(control[fits])
        split = np.where((worst > first) & (worst < last), worst, (first + last) // 2)[~fits]
        first, last = np.concatenate([first[~fits], split]), np.concatenate([split, last[~fits]])
    all_first, all_last = np.concatenate(done_first), np.concatenate(done_last)
    order = np.argsort(all_first, kind="stable")
    return _merge(points, arc, all_first[order], all_last[order], np.concatenate(done_control)[order], max_error)


def _merge(
    points: np.ndarray, arc: np.ndarray, first: np.ndarray, last: np.ndarray, control: np.ndarray, max_error: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Neighbouring pieces of a stroke joined while one curve still fits both: splitting at the worst
    point cuts more often than needed. Each round fits every neighbouring pair at once and joins, from
    the left, the pairs that fit and do not overlap a pair already joined."""
    while len(first) > 1:
        pairs = np.flatnonzero(last[:-1] == first[1:])  # neighbours in one stroke share a point
        if not len(pairs):
            break
        joined, error, _ = _fit_pieces(points, arc, first[pairs], last[pairs + 1])
        taken: list[int] = []
        for number in np.flatnonzero(error <= max_error).tolist():
            if not taken or pairs[taken[-1]] + 1 < pairs[number]:
                taken.append(number)
        if not taken:
            break
        left = pairs[taken]
        last[left] = last[left + 1]
        control[left] = joined[taken]
        keep = np.ones(len(first), bool)
        keep[left + 1] = False
        first, last, control = first[keep], last[keep], control[keep]
    return first, last, control


def fit_ink(ink: Ink, max_error: float = MAX_ERROR) -> Curves:
    """The ink's strokes as cubic Bézier curves within ``max_error`` of every point, with a straight
    pen-up curve from each stroke's last point to the next stroke's first. A one-point stroke becomes a
    curve of no length (a dot). Points the pen rested on (repeated positions) are kept: they fit any curve.
    """
    if not (np.isfinite(max_error) and max_error > 0):
        raise ValueError(f"the Bézier error bound must be a positive number, got {max_error!r}")
    first, last, fitted = _split_fit(ink, float(max_error))
    # The jumps between strokes: straight lines at constant speed, each after its stroke's last piece.
    points = ink.points()
    ends = np.cumsum([len(stroke) for stroke in ink.strokes])[:-1] - 1  # each stroke's last point but the last's
    jumps = points[ends][:, None] + np.linspace(0.0, 1.0, 4)[None, :, None] * (points[ends + 1] - points[ends])[:, None]
    # Sort key: a jump comes right after the last piece of its stroke (which ends at the same point).
    key = np.concatenate([first * 2, ends * 2 + 1])
    order = np.argsort(key, kind="stable")
    fitted = np.concatenate([fitted, jumps.reshape(-1, 4, 3)])[order]
    return Curves(
        fitted[..., :2].copy(),
        fitted[..., 2].copy(),
        np.concatenate([np.zeros(len(first), bool), np.ones(len(ends), bool)])[order],
        np.concatenate([first, ends])[order],
        np.concatenate([last, ends + 1])[order],
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
      divided by pi, positive when turning clockwise as displayed (y down); when the chord has no length,
      from the +x axis (first arm) and the -x axis (second arm).
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
