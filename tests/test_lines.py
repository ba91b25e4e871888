import numpy as np

from recognizer.corpora.synthetic_ink import synthesize_line
from recognizer.ink import Ink
from recognizer.ink.lines import line_inks, split_lines


def page(texts: list[str], spacing: float = 3.0, slope: float = 0.0, seed: int = 0) -> tuple[Ink, list[list[int]]]:
    """Synthetic lines written one below the other (``spacing`` line heights apart, each line rising by
    ``slope`` per unit of x), strokes in writing order; with the true stroke indices of each line."""
    rng = np.random.default_rng(seed)
    strokes, truth = [], []
    for number, text in enumerate(texts):
        line = synthesize_line(text, rng)
        height = np.ptp(line.points()[:, 1])
        moved = [s + np.array([0.0, number * spacing * height, 0.0]) for s in line.strokes]
        moved = [np.column_stack([s[:, 0], s[:, 1] - slope * s[:, 0], s[:, 2]]) for s in moved]
        truth.append(list(range(len(strokes), len(strokes) + len(moved))))
        strokes += moved
    return Ink(strokes), truth


def test_one_line_is_one_line_dots_and_crossings_included():
    ink, truth = page(["little tiny dotted jij"])
    assert split_lines(ink) == truth
    assert line_inks(ink)[0][0] is ink  # nothing to split: the ink itself
    assert split_lines(Ink([[[0.0, 0.0]]])) == [[0]]


def test_stacked_lines_are_found_with_their_strokes():
    ink, truth = page(["the first line", "and a second one", "third"])
    assert split_lines(ink) == truth
    # A slanting page: each line rises to the right by a tenth of its length.
    ink, truth = page(["slanting lines of text", "written uphill again"], slope=0.1)
    assert split_lines(ink) == truth


def test_a_correction_written_later_goes_back_to_its_line():
    ink, truth = page(["first line", "second line"])
    correction = ink.strokes[truth[0][2]] + np.array([0.5, 0.0, 5.0])  # written last, on line 1
    amended = Ink([*ink.strokes, correction])
    assert split_lines(amended) == [truth[0] + [len(ink.strokes)], truth[1]]


def test_line_inks_keep_the_points_of_each_line():
    ink, truth = page(["top line", "bottom line"])
    parts = line_inks(ink)
    assert len(parts) == 2
    points = ink.points()
    for (line, indices), strokes in zip(parts, truth):
        assert np.array_equal(line.strokes[0], ink.strokes[strokes[0]])
        np.testing.assert_array_equal(points[indices], line.points())
        assert "(line" in line.source
