"""Text lines in an ink: which strokes of a note written over several lines belong to which line.

The recognizer reads one line at a time; a paragraph fed to it as one sequence comes out as garbage.
``split_lines`` groups strokes by their geometry and writing order:

1. Scale: the median height of the strokes (robust to dots, commas and long descenders).
2. In writing order, a stroke starts a new line when the pen went back to the left (its leftmost point
   is left of the previous stroke's, by more than ``RETURN`` scales) and down (its vertical centre is
   below the current line's by more than ``LINE_GAP`` scales). Dots and crossings added after a word go
   left but not down, and stay in their line.
3. Every stroke then joins the line passing nearest to it, each line fitted as a straight line through
   its strokes' centres (a slanting line's ends lie far from its median height; a correction written
   later on an earlier line goes back to it); lines left empty are dropped, lines closer than
   ``MIN_SPACING`` merged; lines are ordered top to bottom.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .ink import Ink

#: how far below the current line (its median stroke centre), in median stroke heights, a stroke that
#: went back to the left must start to open a new line
LINE_GAP = 1.2
#: the least distance between the median heights of two lines, in median stroke heights: closer, they
#: are one line (most text lines are spaced by three or more, tight ones by less than two; at 2.0, 27 of
#: IAM-OnDB val1's 192 pages lost lines by merging, at 1.5 five, while single lines split stays at 2 of
#: 1,438: benchmarks/RESULTS.md, "Notes over several lines")
MIN_SPACING = 1.5
#: how far left of the previous stroke's start, in median stroke heights, counts as going back
RETURN = 2.0


def _stroke_geometry(ink: Ink) -> tuple[np.ndarray, np.ndarray, float]:
    """Each stroke's vertical centre and leftmost x, and the median stroke height (the scale)."""
    centres = np.array([np.median(stroke[:, 1]) for stroke in ink.strokes])
    lefts = np.array([stroke[:, 0].min() for stroke in ink.strokes])
    heights = np.array([np.ptp(stroke[:, 1]) for stroke in ink.strokes])
    tall = heights[heights > 0]
    # Without any stroke of some height (only dots and dashes): the ink's own height, so that nothing splits.
    scale = float(np.median(tall)) if len(tall) else max(float(np.ptp(ink.points()[:, 1])), 1e-9)
    return centres, lefts, scale


def split_lines(ink: Ink) -> list[list[int]]:
    """The indices of the strokes of each text line, lines top to bottom, strokes in writing order."""
    if len(ink.strokes) < 2:
        return [list(range(len(ink.strokes)))]
    centres, lefts, scale = _stroke_geometry(ink)
    lines: list[list[int]] = [[0]]
    for index in range(1, len(ink.strokes)):
        current = np.median(centres[lines[-1]])
        went_back = lefts[index] < lefts[index - 1] - RETURN * scale
        went_down = centres[index] > current + LINE_GAP * scale
        if went_back and went_down:
            lines.append([index])
        else:
            lines[-1].append(index)
    if len(lines) == 1:
        return lines
    # Each stroke to the line passing nearest to it: lines are fitted as straight (y = a + b x through
    # their strokes' centres) because a slanting line's start and end lie far from its median height.
    middles = np.array([np.median(stroke[:, 0]) for stroke in ink.strokes])
    predicted = np.column_stack([_line_fit(middles[line], centres[line])(middles) for line in lines])
    nearest = np.abs(predicted - centres[:, None]).argmin(axis=1)
    groups = [np.flatnonzero(nearest == number).tolist() for number in range(len(lines))]
    groups = sorted((group for group in groups if group), key=lambda group: float(np.median(centres[group])))
    # Lines closer than MIN_SPACING are one line (a sloping or wavy line is not two).
    merged = [groups[0]]
    for group in groups[1:]:
        if np.median(centres[group]) - np.median(centres[merged[-1]]) < MIN_SPACING * scale:
            merged[-1] = sorted(merged[-1] + group)
        else:
            merged.append(group)
    return merged


def _line_fit(x: np.ndarray, y: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """y as a straight function of x through the points (least squares), held constant beyond their x
    range (never extrapolated); flat when they cannot tell a slope."""
    if len(x) < 3 or np.ptp(x) == 0:
        level = float(np.median(y))
        return lambda at: np.full(np.shape(at), level)
    slope, intercept = np.polyfit(x, y, 1)
    low, high = float(x.min()), float(x.max())
    return lambda at: intercept + slope * np.clip(np.asarray(at), low, high)


def line_inks(ink: Ink) -> list[tuple[Ink, np.ndarray]]:
    """The ink's lines (see ``split_lines``) as inks of their own, each with the indices of its points
    among ``ink.points()`` (to map positions in a line back to the whole ink). One line: the ink itself."""
    groups = split_lines(ink)
    if len(groups) == 1:
        return [(ink, np.arange(ink.num_points))]
    starts = np.concatenate([[0], np.cumsum([len(stroke) for stroke in ink.strokes])])
    parts = []
    for number, group in enumerate(groups):
        line = Ink([ink.strokes[i] for i in group], text=None, source=f"{ink.source} (line {number + 1})")
        parts.append((line, np.concatenate([np.arange(starts[i], starts[i + 1]) for i in group])))
    return parts
