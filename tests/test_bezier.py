import numpy as np
import pytest

from recognizer.ink.bezier import CURVE_FEATURES, MAX_ERROR, _bernstein, curve_features, fit_curve, fit_ink
from recognizer.ink.ink import Ink


def spiral_ink() -> Ink:
    """Two strokes: a timed spiral (curvy: needs many curves) and a straight bar."""
    angle = np.linspace(0, 4 * np.pi, 400)
    spiral = np.column_stack([np.cos(angle) * (1 + angle / 4), np.sin(angle) * (1 + angle / 4), angle / 10])
    bar = np.column_stack([np.linspace(5, 8, 50), np.full(50, 1.0), 2 + np.linspace(0, 0.5, 50)])
    return Ink([spiral, bar], text="ol")


def distance_to_curves(ink: Ink, curves) -> np.ndarray:
    """Each point's distance to the curve fitted to its piece, at the point's parameter."""
    points = ink.points()[:, :2]
    worst = np.zeros(len(curves))
    for i in np.flatnonzero(~curves.pen_up):
        piece = points[curves.first[i] : curves.last[i] + 1]
        arc = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(piece, axis=0).T))])
        s = arc / arc[-1] if arc[-1] > 0 else np.zeros(len(piece))
        worst[i] = np.hypot(*(_bernstein(s) @ curves.control[i] - piece).T).max()
    return worst


@pytest.mark.parametrize("max_error", [0.01, MAX_ERROR, 0.3])
def test_curves_reconstruct_every_point_within_the_error_bound(max_error):
    ink = spiral_ink()
    curves = fit_ink(ink, max_error)
    assert distance_to_curves(ink, curves).max() <= max_error
    # The pieces tile each stroke: consecutive curves share an end point; one pen-up between the strokes.
    drawn = ~curves.pen_up
    assert curves.pen_up.sum() == 1 and curves.first[0] == 0 and curves.last[-1] == ink.num_points - 1
    assert (curves.first[1:] == curves.last[:-1]).all()
    np.testing.assert_allclose(curves.control[drawn, 0], ink.points()[curves.first[drawn], :2])
    np.testing.assert_allclose(curves.control[drawn, 3], ink.points()[curves.last[drawn], :2])
    # Far fewer curves than points, more for a tighter bound.
    assert len(curves) < ink.num_points / 10


def test_a_tighter_bound_gives_more_curves():
    ink = spiral_ink()
    assert len(fit_ink(ink, 0.01)) > len(fit_ink(ink, MAX_ERROR)) > len(fit_ink(ink, 0.3))


def test_straight_strokes_and_dots_are_one_curve_each():
    line = np.column_stack([np.linspace(0, 3, 30), np.linspace(0, 1, 30)])
    curves = fit_ink(Ink([line, [[4.0, 0.0]], [[5.0, 0.0], [5.0, 0.0], [5.0, 0.0]]]))
    assert curves.pen_up.tolist() == [False, True, False, True, False]
    # The straight stroke: control points on the line at its thirds.
    np.testing.assert_allclose(curves.control[0], [[0, 0], [1, 1 / 3], [2, 2 / 3], [3, 1]], atol=1e-4)
    # A one-point stroke and a pen resting in one place: a curve without length.
    for dot in (2, 4):
        assert np.ptp(curves.control[dot], axis=0).max() < 1e-9
    features = curve_features(curves)
    assert features.shape == (5, 10) and np.isfinite(curve_features(curves, CURVE_FEATURES)).all()


def test_fitting_is_deterministic_and_rotation_equivariant():
    ink = spiral_ink()
    first, again = fit_ink(ink), fit_ink(ink)
    np.testing.assert_array_equal(first.control, again.control)
    np.testing.assert_array_equal(first.times, again.times)
    # Rotating and moving the ink keeps every distance, so the same pieces, with the control points
    # rotated and moved: what lets augmentation transform curves instead of refitting them.
    angle = 0.3
    matrix = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    offset = np.array([2.0, -1.0])
    moved = Ink([np.column_stack([s[:, :2] @ matrix.T + offset, s[:, 2]]) for s in ink.strokes])
    refit = fit_ink(moved)
    np.testing.assert_array_equal(refit.first, first.first)
    np.testing.assert_allclose(refit.control, first.affine(matrix, offset).control, atol=1e-6)


def test_features_describe_the_curves():
    ink = spiral_ink()
    curves = fit_ink(ink)
    features = curve_features(curves, CURVE_FEATURES)
    column = {name: features[:, i] for i, name in enumerate(CURVE_FEATURES)}
    np.testing.assert_allclose(column["y"], curves.control[:, 0, 1], rtol=1e-6, atol=1e-6)
    chord = curves.control[:, 3] - curves.control[:, 0]
    np.testing.assert_allclose(column["dx"], chord[:, 0], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(column["dy"], chord[:, 1], rtol=1e-6, atol=1e-6)
    assert column["pen_up"].tolist() == curves.pen_up.astype(float).tolist()
    # Durations add up to the ink's writing time, pen-up pause included.
    points = ink.points()
    np.testing.assert_allclose(column["t3"].sum(), points[-1, 2] - points[0, 2], rtol=1e-5)
    assert (np.abs(column["a1"]) <= 1).all() and (np.abs(column["a2"]) <= 1).all()
    # A straight pen-up jump: arms a third of the chord, along it.
    jump = np.flatnonzero(curves.pen_up)[0]
    np.testing.assert_allclose(column["d1"][jump], np.hypot(*chord[jump]) / 3, rtol=1e-4)
    np.testing.assert_allclose([column["a1"][jump], column["a2"][jump]], [0, 0], atol=1e-4)
    # Untimed ink: time features are 0, the rest unchanged.
    untimed = curve_features(fit_ink(Ink([s[:, :2] for s in ink.strokes])), CURVE_FEATURES)
    assert (untimed[:, 6:9] == 0).all()
    np.testing.assert_allclose(untimed[:, :6], features[:, :6], atol=1e-5)
    assert curve_features(curves, ["pen_up", "dx"]).shape == (len(curves), 2)
    with pytest.raises(ValueError, match="unknown curve features"):
        curve_features(curves, ["speed"])


def test_curve_fit_of_a_cubic_recovers_its_control_points():
    control = np.array([[0.0, 0.0], [1.0, 2.0], [3.0, 2.0], [4.0, 0.0]])
    fine = _bernstein(np.linspace(0, 1, 2000)) @ control
    # Points at equal arc length steps along the curve (the parameter the fit uses).
    arc = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(fine, axis=0).T))])
    points = np.column_stack([np.interp(np.linspace(0, arc[-1], 60), arc, fine[:, i]) for i in range(2)])
    fitted, times, error = fit_curve(points)
    assert error < 0.1 and np.isnan(times).all()  # 2.5 % of its size: arc length is not its own parameter
    np.testing.assert_allclose(fitted[[0, 3]], control[[0, 3]])


def test_a_bad_error_bound_is_refused():
    for bound in (0, -1, float("nan")):
        with pytest.raises(ValueError, match="error bound must be a positive number"):
            fit_ink(spiral_ink(), bound)


def test_the_batched_search_fits_each_piece_as_fit_curve_does():
    ink = spiral_ink()
    curves = fit_ink(ink)
    points = ink.points()
    for i in np.flatnonzero(~curves.pen_up):
        control, times, error = fit_curve(points[curves.first[i] : curves.last[i] + 1])
        np.testing.assert_allclose(curves.control[i], control, atol=1e-9)
        np.testing.assert_allclose(curves.times[i], times, atol=1e-9)
        assert error <= MAX_ERROR + 1e-12


def test_jitter_moves_shared_end_points_together_and_keeps_jumps_straight():
    curves = fit_ink(spiral_ink())
    moved = curves.jittered(np.random.default_rng(0), 0.05)
    drawn = np.flatnonzero(~curves.pen_up)
    # Where one curve ends and the next begins (same ink point), both ends moved alike.
    joins = [i for i in range(len(curves) - 1) if curves.last[i] == curves.first[i + 1]]
    assert joins and all(np.array_equal(moved.control[i, 3], moved.control[i + 1, 0]) for i in joins)
    assert not np.allclose(moved.control[drawn], curves.control[drawn])
    for jump in np.flatnonzero(curves.pen_up):
        p0, p1, p2, p3 = moved.control[jump]
        np.testing.assert_allclose([p1, p2], [p0 + (p3 - p0) / 3, p0 + 2 * (p3 - p0) / 3])
    assert curves.jittered(np.random.default_rng(0), 0.0) is curves


def test_affine_scales_times_about_each_curve_start():
    curves = fit_ink(spiral_ink())
    stretched = curves.affine(np.eye(2), np.zeros(2), time_scale=2.0)
    np.testing.assert_allclose(stretched.control, curves.control)
    durations = lambda c: c.times[:, 3] - c.times[:, 0]  # noqa: E731
    np.testing.assert_allclose(durations(stretched), 2 * durations(curves))
    np.testing.assert_allclose(stretched.times[:, 0], curves.times[:, 0])


def test_a_very_long_stroke_beside_many_short_ones_fits_piece_by_piece():
    """A scribble or a mouse line of 20,000 points beside 300 short strokes: fitted in buckets (no
    gigabyte padding), the straight one becoming a single curve."""
    rng = np.random.default_rng(0)
    long = np.column_stack([np.linspace(0, 100, 20_000), np.zeros(20_000)])
    short = [rng.normal(size=(int(rng.integers(2, 30)), 2)).cumsum(axis=0) * 0.01 + [i, 5.0] for i in range(300)]
    curves = fit_ink(Ink([long, *short]))
    assert not curves.pen_up[0] and curves.last[0] == 19_999  # the whole straight stroke: one curve
    assert distance_to_curves(Ink([long, *short]), curves).max() <= MAX_ERROR + 1e-9
