"""Ink preprocessing (recognizer.ink.functional) and plots (recognizer.ink.plot) on programmatically drawn handwriting."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from recognizer.ink import Ink, plot
from recognizer.ink import functional as F

# --------------------------------------------------------------------------------------------
# synthetic handwriting: y grows downwards, the core zone is y in [0, 1]


def _line(a, b, n):
    return np.linspace(a, b, n)


def _arch(x0, x1, y, n, up=True):
    """Half circle from (x0, y) to (x1, y), over the top (smaller y) when ``up``."""
    angle = np.linspace(np.pi, 0, n)
    r = (x1 - x0) / 2
    return np.column_stack([x0 + r + r * np.cos(angle), y - r * np.sin(angle) if up else y + r * np.sin(angle)])


def _n(x):
    return np.concatenate(
        [
            _line((x, 0), (x, 1), 15),
            _line((x, 1), (x, 0.35), 8)[1:],
            _arch(x, x + 0.5, 0.35, 12)[1:],
            _line((x + 0.5, 0.35), (x + 0.5, 1), 10)[1:],
            _line((x + 0.5, 1), (x + 0.7, 0.85), 4)[1:],
        ]
    )


def _l(x):
    return np.concatenate([_line((x, -1.4), (x, 1), 25), _line((x, 1), (x + 0.25, 0.85), 4)[1:]])


def _p(x):
    return np.concatenate(
        [
            _line((x, 0), (x, 2.0), 25),
            _line((x, 2.0), (x, 0.35), 8)[1:],
            _arch(x, x + 0.5, 0.35, 12)[1:],
            _line((x + 0.5, 0.35), (x + 0.5, 0.8), 6)[1:],
            _arch(x + 0.5, x, 0.8, 10, up=False)[1:],
        ]
    )


def _timed(strokes, time, text, seed=0, noise=0.004):
    rng = np.random.default_rng(seed)
    out, t = [], 0.0
    for stroke in strokes:
        stroke = stroke + rng.normal(0, noise, stroke.shape)
        times = t + 0.012 * np.arange(len(stroke))
        t = times[-1] + 0.15
        out.append(np.column_stack([stroke, times if time else np.full(len(stroke), np.nan)]))
    return Ink(out, text=text, source="synthetic:1")


def letters(time: bool = True, word: str = "nlnpnnlnpn") -> Ink:
    """Print-like letters with upright down-strokes, an i-dot and a t-bar: a line of writing."""
    strokes, x = [], 0.0
    for kind in word:
        strokes.append({"n": _n, "l": _l, "p": _p}[kind](x))
        x += 0.5 if kind == "l" else 0.95
    strokes.insert(min(3, len(strokes)), np.array([[1.3, -0.6]]))  # dot
    strokes.append(np.array([[x - 2.2, 0.1], [x - 1.5, 0.1]]))  # bar
    return _timed(strokes, time, word)


def cursive(time: bool = True, noise: float = 0.004) -> Ink:
    """One long oscillating stroke (a "uuuu"-like scribble, deliberately asymmetric) plus a dot."""
    tau = np.linspace(0, 6, 500)
    x = 0.7 * tau + 0.25 * np.cos(2 * np.pi * tau + 0.6)
    y = 0.5 - 0.5 * np.cos(2 * np.pi * tau) + 0.15 * np.sin(np.pi * tau / 3)
    return _timed([np.column_stack([x, y]), np.array([[2.0, -0.7], [2.02, -0.71]])], time, "uuuuuu", noise=noise)


def transformed(ink: Ink, scale: float = 1.0, shift=(0.0, 0.0), shear: float = 0.0, degrees: float = 0.0) -> Ink:
    """Scale, shear (x -= shear * y: leans right), rotate (clockwise as displayed) and shift."""
    strokes = []
    angle = np.radians(degrees)
    for stroke in ink.strokes:
        x, y = stroke[:, 0] - shear * (stroke[:, 1] - 0.5), stroke[:, 1]
        x, y = x * np.cos(angle) - y * np.sin(angle), x * np.sin(angle) + y * np.cos(angle)
        strokes.append(np.column_stack([x * scale + shift[0], y * scale + shift[1], stroke[:, 2]]))
    return Ink(strokes, text=ink.text, source=ink.source)


def pipeline(ink: Ink, step: float = 0.1) -> np.ndarray:
    return F.point_features(F.resample(F.normalize(ink), step), F.FEATURES)


# --------------------------------------------------------------------------------------------
# normalization


@pytest.mark.parametrize("make", [letters, cursive], ids=["letters", "cursive"])
@pytest.mark.parametrize("time", [True, False], ids=["timed", "untimed"])
def test_features_invariant_to_translation_and_scale(make, time):
    ink = make(time)
    reference = pipeline(ink)
    assert reference.shape[1] == len(F.FEATURES) and np.isfinite(reference).all()
    for scale, shift in [(1.0, (123.0, -45.0)), (0.3, (0.0, 0.0)), (7.0, (-3000.0, 800.0))]:
        features = pipeline(transformed(ink, scale, shift))
        assert features.shape == reference.shape
        np.testing.assert_allclose(features, reference, atol=1e-5)
    dt = reference[:, F.FEATURES.index("dt")]
    assert (dt > 0).any() if time else (dt == 0).all()


def test_line_height_scales_with_the_writing_and_fits_the_core_zone():
    ink = letters()
    height = F.estimate_line_height(ink)
    assert 0.7 < height < 1.4  # the drawn core zone is 1 high
    assert F.estimate_line_height(transformed(ink, 7.0, (5, 5))) == pytest.approx(7 * height, rel=1e-9)
    normalized = F.normalize(ink)
    assert F.estimate_line_height(normalized) == pytest.approx(1.0)
    xy = normalized.points()[:, :2]
    assert xy[:, 0].min() == pytest.approx(0.0)
    assert abs(np.median(xy[:, 1])) < 0.2  # core zone centred on 0
    assert xy[:, 1].min() < -1.2 and xy[:, 1].max() > 1.2  # ascenders and descenders stick out


@pytest.mark.parametrize(
    "strokes",
    [
        [[[3.0, 4.0]]],
        [[[3.0, 4.0], [3.0, 4.0]]],
        [[[0.0, 1.0], [5.0, 1.0]]],
        [[[1.0, 0.0], [1.0, 2.0]]],
        [[[0, 0]], [[2, 0]]],
    ],
    ids=["dot", "repeated-point", "horizontal", "vertical", "two-dots"],
)
def test_degenerate_inks_stay_finite(strokes):
    ink = Ink([np.asarray(stroke, dtype=float) for stroke in strokes])
    assert F.estimate_line_height(ink) > 0
    normalized = F.normalize(ink)
    assert all(np.isfinite(stroke[:, :2]).all() for stroke in normalized.strokes)
    features = pipeline(ink)
    assert np.isfinite(features).all() and len(features) >= 1


@pytest.mark.parametrize("slant", [0.4, -0.25, 0.15])
def test_slant_is_estimated_and_corrected(slant):
    upright = letters()
    assert abs(F.estimate_slant(upright)) < 0.02
    sheared = transformed(upright, shear=slant)
    assert F.estimate_slant(sheared) == pytest.approx(slant, abs=0.03)
    corrected = F.normalize(sheared, baseline=False)
    assert abs(F.estimate_slant(corrected)) < 0.02
    kept = F.normalize(sheared, slant=False, baseline=False)
    assert F.estimate_slant(kept) == pytest.approx(slant, abs=0.03)


def _foot_heights(ink: Ink) -> np.ndarray:
    """y of the lowest point of every "n" (they all sit on the baseline)."""
    return np.array([stroke[:, 1].max() for stroke, kind in zip(_letter_strokes(ink), ink.text) if kind == "n"])


def _letter_strokes(ink: Ink):
    return [stroke for stroke in ink.strokes if len(stroke) > 2]


@pytest.mark.parametrize("degrees", [6.0, -8.0])
def test_baseline_of_a_rotated_line_becomes_horizontal(degrees):
    ink = letters()
    rotated = transformed(ink, degrees=degrees)
    assert F.estimate_baseline_angle(rotated) == pytest.approx(degrees, abs=1.5)
    feet = _foot_heights(rotated)
    assert np.ptp(feet) / F.estimate_line_height(rotated) > 0.5  # visibly tilted before
    normalized = F.normalize(rotated)
    assert abs(F.estimate_baseline_angle(normalized)) < 0.5
    assert np.ptp(_foot_heights(normalized)) < 0.12
    assert abs(F.estimate_slant(normalized)) < 0.02  # the rotation's slant is sheared away too
    untouched = F.normalize(rotated, baseline=False)
    assert np.ptp(_foot_heights(untouched)) > 0.5


def test_normalize_keeps_time_text_and_does_not_mutate():
    ink = letters()
    before = [stroke.copy() for stroke in ink.strokes]
    normalized = F.normalize(ink)
    assert normalized.text == ink.text and normalized.source == ink.source
    assert [len(s) for s in normalized.strokes] == [len(s) for s in ink.strokes]
    np.testing.assert_array_equal(normalized.points()[:, 2], ink.points()[:, 2])
    for stroke, original in zip(ink.strokes, before):
        np.testing.assert_array_equal(stroke, original)


# --------------------------------------------------------------------------------------------
# resampling


@pytest.mark.parametrize("step", [0.05, 0.1, 0.37])
def test_resample_is_equidistant_and_keeps_endpoints(step):
    ink = F.normalize(cursive(noise=0.0))  # noise would zigzag: chords shorter than the arc
    before = [stroke.copy() for stroke in ink.strokes]
    resampled = F.resample(ink, step)
    assert len(resampled.strokes) == len(ink.strokes) and resampled.text == ink.text
    for stroke, original in zip(resampled.strokes, ink.strokes):
        np.testing.assert_allclose(stroke[0], original[0])
        np.testing.assert_allclose(stroke[-1], original[-1])
        # Points are step apart along the trajectory: the chords are at most step (shorter
        # only across bends), and their number is what the arc length asks for.
        gaps = np.hypot(*np.diff(stroke[:, :2], axis=0).T)
        assert (gaps <= step * (1 + 1e-9)).all() and (gaps > 0).all()
        length = np.hypot(*np.diff(original[:, :2], axis=0).T).sum()
        assert len(stroke) in (int(np.ceil(length / step)) + 1, int(np.ceil(length / step)))
        if len(gaps) > 4:
            assert np.median(gaps[:-1]) == pytest.approx(step, rel=0.01)
        assert (np.diff(stroke[:, 2]) >= 0).all()
    for stroke, original in zip(ink.strokes, before):
        np.testing.assert_array_equal(stroke, original)


def test_resample_polyline_exact_spacing_and_time():
    # An "L": along x to the corner at arc length 1.1, then down; a point's arc length is known.
    ink = Ink([np.array([[0.0, 0.0, 1.0], [1.1, 0.0, 2.0], [1.1, 1.05, 4.1]])])
    stroke = F.resample(ink, 0.25).strokes[0]
    assert (stroke[:, 0] == 1.1).sum() == 5  # the corner itself is no sample: 1.1 is no multiple of 0.25
    arc = np.where(stroke[:, 1] == 0, stroke[:, 0], 1.1 + stroke[:, 1])
    np.testing.assert_allclose(arc[:-1], 0.25 * np.arange(len(arc) - 1), atol=1e-12)
    assert arc[-1] == pytest.approx(2.15)
    np.testing.assert_allclose(stroke[:, 2], np.interp(arc, [0, 1.1, 2.15], [1, 2, 4.1]))


def test_resample_short_and_degenerate_strokes():
    ink = Ink(
        [
            np.array([[0.0, 0.0], [0.01, 0.0], [0.02, 0.01]]),  # shorter than step
            np.array([[1.0, 1.0], [1.0, 1.0], [1.0, 1.0]]),  # no length
            np.array([[2.0, 2.0]]),  # a dot
        ]
    )
    strokes = F.resample(ink, 0.1).strokes
    assert [len(s) for s in strokes] == [2, 1, 1]
    np.testing.assert_allclose(strokes[0][:, :2], [[0, 0], [0.02, 0.01]])
    assert np.isnan(strokes[0][:, 2]).all()  # no time stays no time
    with pytest.raises(ValueError, match="step"):
        F.resample(ink, 0.0)


# --------------------------------------------------------------------------------------------
# features


def test_pen_up_and_jumps_mark_stroke_starts():
    ink = F.resample(F.normalize(letters()), 0.1)
    features = F.point_features(ink, ("dx", "dy", "dt", "pen_up"))
    assert features.dtype == np.float32 and features.shape == (ink.num_points, 4)
    starts = np.cumsum([0] + [len(s) for s in ink.strokes])[:-1]
    np.testing.assert_array_equal(np.flatnonzero(features[:, 3]), starts)
    np.testing.assert_array_equal(features[0, :3], 0)
    for k in range(1, len(ink.strokes)):
        jump = ink.strokes[k][0] - ink.strokes[k - 1][-1]
        np.testing.assert_allclose(features[starts[k], :3], jump, rtol=1e-5, atol=1e-6)
    inside = np.setdiff1d(np.arange(len(features)), starts)
    assert (np.hypot(features[inside, 0], features[inside, 1]) <= 0.1 + 1e-5).all()
    assert (features[inside, 2] > 0).all() and (features[inside, 2] < 0.1).all()  # within a stroke: short
    assert (features[starts[1:], 2] > 0.1).all()  # the pen-up pauses


def test_direction_curvature_and_height_features():
    angle = np.linspace(0, 1.5 * np.pi, 200)
    circle = np.column_stack([np.cos(angle), np.sin(angle)])  # clockwise as displayed (y down)
    ink = Ink([circle, circle[::-1] + 3, np.array([[9.0, 9.0]])])
    names = ("cos", "sin", "curvature", "y", "pen_up")
    features = F.point_features(ink, names)
    first, second = features[:200], features[200:400]
    np.testing.assert_allclose(np.hypot(first[:, 0], first[:, 1]), 1, atol=1e-5)
    np.testing.assert_allclose(first[10, :2], [-np.sin(angle[10]), np.cos(angle[10])], atol=1e-3)
    turn = (angle[1] - angle[0]) / np.pi
    np.testing.assert_allclose(first[1:-1, 2], turn, rtol=1e-3)
    np.testing.assert_allclose(second[1:-1, 2], -turn, rtol=1e-3)  # the other way round
    assert first[0, 2] == first[-1, 2] == 0
    np.testing.assert_allclose(features[:, 3], ink.points()[:, 1], rtol=1e-6)
    np.testing.assert_array_equal(features[-1], [0, 0, 0, 9, 1])  # a lone dot has no direction
    assert F.point_features(ink, "y").shape == (ink.num_points, 1)


def test_cusp_curvature_is_near_one():
    ink = Ink([np.array([[0.0, 0.0], [0.0, 1.0], [0.01, 0.0]])])
    assert abs(F.point_features(ink, ("curvature",))[1, 0]) > 0.99


def test_unknown_feature_lists_the_valid_ones():
    with pytest.raises(ValueError, match="'x'.*dx, dy, dt, pen_up"):
        F.point_features(letters(), ("dx", "x"))
    with pytest.raises(ValueError):
        F.point_features(letters(), ())
    assert "x" not in F.FEATURES and F.DEFAULT_FEATURES == ("dx", "dy", "dt", "pen_up")
    assert set(F.DEFAULT_FEATURES) <= set(F.FEATURES)


# --------------------------------------------------------------------------------------------
# augmentation


def _box(ink: Ink) -> np.ndarray:
    return np.ptp(ink.points()[:, :2], axis=0)


@pytest.mark.parametrize("time", [True, False], ids=["timed", "untimed"])
def test_augment_keeps_the_ink_sane(time):
    ink = F.normalize(letters(time, word="nlnpn"))
    before = [stroke.copy() for stroke in ink.strokes]
    width, height = _box(ink)
    for seed in range(40):
        out = F.augment(ink, np.random.default_rng(seed))
        assert out.text == ink.text and out.source == ink.source
        assert [len(s) for s in out.strokes] == [len(s) for s in ink.strokes]
        points = out.points()
        assert np.isfinite(points[:, :2]).all()
        assert np.isfinite(points[:, 2]).all() if time else np.isnan(points[:, 2]).all()
        new_width, new_height = _box(out)
        assert 1 / 1.5 < (new_width / new_height) / (width / height) < 1.5
        assert 0.6 < np.hypot(new_width, new_height) / np.hypot(width, height) < 1.5
        if time:
            stretch = np.diff(points[:, 2]) / np.diff(ink.points()[:, 2])
            assert 0.8 - 1e-9 <= stretch.min() and stretch.max() <= 1.25 + 1e-9 and np.ptp(stretch) < 1e-6
        features = F.point_features(F.resample(out, 0.1), F.FEATURES)
        assert np.isfinite(features).all()
    for stroke, original in zip(ink.strokes, before):
        np.testing.assert_array_equal(stroke, original)


def test_augment_is_deterministic_per_seed():
    ink = F.normalize(cursive())
    a = F.augment(ink, np.random.default_rng(5)).points()
    b = F.augment(ink, np.random.default_rng(5)).points()
    c = F.augment(ink, np.random.default_rng(6)).points()
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_augment_jitter_does_not_depend_on_sampling_density():
    # The same straight stroke sampled with 11 and 1001 points: jitter must not crumple the dense one.
    sparse = Ink([np.column_stack([np.linspace(0, 10, 11), np.zeros(11)])])
    dense = Ink([np.column_stack([np.linspace(0, 10, 1001), np.zeros(1001)])])
    kwargs = dict(scale=(1, 1), shear=(0, 0), rotation_deg=(0, 0), aspect=(1, 1), jitter=0.02)
    lengths = []
    for ink in (sparse, dense):
        out = F.augment(ink, np.random.default_rng(0), **kwargs).strokes[0]
        lengths.append(np.hypot(*np.diff(out[:, :2], axis=0).T).sum())
    assert lengths[1] < 1.05 * lengths[0]


def test_augment_identity_ranges_only_jitter():
    ink = F.normalize(letters())
    out = F.augment(
        ink,
        np.random.default_rng(1),
        scale=(1, 1),
        shear=(0, 0),
        rotation_deg=(0, 0),
        aspect=(1, 1),
        time_stretch=(1, 1),
        jitter=0.02,
    )
    offset = out.points()[:, :2] - ink.points()[:, :2]
    assert 0.005 < offset.std() < 0.03  # relative to the line height (1 after normalize)
    np.testing.assert_array_equal(out.points()[:, 2], ink.points()[:, 2])
    with pytest.raises(ValueError, match="scale"):
        F.augment(ink, np.random.default_rng(1), scale=(0.0, 1.0))


def test_stroke_starts_mark_pen_lifts():
    ink = Ink([np.zeros((3, 2)), np.ones((1, 2)), np.ones((2, 2))])
    assert ink.stroke_starts().tolist() == [True, False, False, True, True, False]
    assert ink.stroke_starts().tolist() == F.point_features(ink, ["pen_up"])[:, 0].astype(bool).tolist()


# --------------------------------------------------------------------------------------------
# plots (recognizer.ink.plot)


def test_render_and_save_png(tmp_path):
    from matplotlib.figure import Figure

    ink = F.resample(F.normalize(letters(word="nlp")), 0.1)
    count = ink.num_points
    figure = plot.render(ink)
    assert isinstance(figure, Figure)
    # colour by "aligned character": runs of integers, some points unaligned (None)
    runs = np.repeat(np.arange(6), int(np.ceil(count / 6)))[:count]
    colors = [None if k == 2 else int(k) for k in runs]
    labels = [kind for kind in "nxlxpx" for _ in range(int(np.ceil(count / 6)))][:count]
    path = plot.save_png(ink, tmp_path / "sub" / "ink.png", colors=colors, labels=labels, title="aligned")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    per_run = plot.render(ink, colors=["red"] * 10 + ["tab:blue"] * (count - 10), labels=["a", "b"])
    assert len(per_run.axes[0].texts) == 2
    rgb = np.tile([0.1, 0.5, 0.2], (count, 1))
    plot.render(ink, colors=rgb, labels=["z"] * count)
    with pytest.raises(ValueError, match="colors"):
        plot.render(ink, colors=["red"] * (count - 1))


def test_render_into_given_axes():
    from matplotlib.figure import Figure

    figure = Figure()
    axes = figure.subplots(1, 2)
    ink = letters(word="nl")
    assert plot.render(ink, ax=axes[0]) is figure
    plot.render(F.normalize(ink), ax=axes[1], linewidth=0.5)
    assert axes[0].yaxis_inverted() and axes[1].yaxis_inverted()
    inner = Figure().subfigures(1, 2)[1]  # axes in a subfigure: the figure that holds it comes back
    assert plot.render(ink, ax=inner.subplots()) is inner.figure


@pytest.mark.slow
def test_importing_functional_and_plot_does_not_import_matplotlib():
    code = "import sys, recognizer.ink.functional, recognizer.ink.plot; print('matplotlib' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
