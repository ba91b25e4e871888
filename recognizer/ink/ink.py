"""The online-handwriting sample: strokes of pen points (x, y and, when known, t).

Coordinates follow the screen convention of IAM-OnDB and most pen devices: x grows to the right,
y grows downwards. Time is in seconds; a sample without timing has t = NaN everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: coordinates beyond this magnitude are treated as corrupt (device glitches, overflowed integers)
MAX_COORDINATE = 1e7


class InkError(ValueError):
    """An ink sample or file that cannot be used; the message names the file (and line)."""


@dataclass
class Ink:
    """A handwriting sample.

    Args:
        strokes: one (points, 3) float64 array per pen-down stroke: x, y, t.
        text: the transcription, when known.
        source: where it came from (file, and line id inside it), for error messages.
        empty_strokes: strokes without points that the reader dropped (a counted, documented skip).
        dropped_times: timestamps dropped because other points of the sample had none (NaN): such ink
            is read as untimed, whatever its format.
    """

    strokes: list[np.ndarray]
    text: str | None = None
    source: str = "<ink>"
    empty_strokes: int = field(default=0)
    dropped_times: int = field(default=0)

    def __post_init__(self) -> None:
        strokes = []
        for number, stroke in enumerate(self.strokes):
            stroke = np.asarray(stroke, dtype=np.float64)
            if stroke.ndim != 2 or stroke.shape[1] not in (2, 3):
                raise InkError(f"{self.source}: stroke {number} has shape {stroke.shape}; expected (points, 2 or 3)")
            if stroke.shape[0] == 0:
                self.empty_strokes += 1
                continue
            if stroke.shape[1] == 2:
                stroke = np.concatenate([stroke, np.full((len(stroke), 1), np.nan)], axis=1)
            if not np.isfinite(stroke[:, :2]).all():
                raise InkError(f"{self.source}: stroke {number} has NaN or infinite coordinates")
            if np.abs(stroke[:, :2]).max() > MAX_COORDINATE:
                raise InkError(f"{self.source}: stroke {number} has absurd coordinates (|value| > {MAX_COORDINATE:g})")
            strokes.append(stroke)
        if not strokes:
            raise InkError(f"{self.source}: the ink has no points")
        # One rule for every reader: timestamps are used only when every point has a finite one. Ink
        # with some missing (NaN) is read as untimed, and the dropped timestamps are counted.
        times = np.concatenate([stroke[:, 2] for stroke in strokes])
        if np.isinf(times).any():
            raise InkError(f"{self.source}: {int(np.isinf(times).sum())} point(s) have an infinite timestamp")
        timed = np.isfinite(times)
        if timed.any() and not timed.all():
            self.dropped_times = int(timed.sum())
            for stroke in strokes:
                stroke[:, 2] = np.nan
        self.strokes = strokes

    @property
    def has_time(self) -> bool:
        """Whether every point has a finite timestamp."""
        return all(np.isfinite(stroke[:, 2]).all() for stroke in self.strokes)

    @property
    def num_points(self) -> int:
        return sum(len(stroke) for stroke in self.strokes)

    def points(self) -> np.ndarray:
        """All points as one (N, 3) array, strokes in order."""
        return np.concatenate(self.strokes)

    def stroke_ids(self) -> np.ndarray:
        """(N,) index of the stroke each point belongs to."""
        return np.concatenate([np.full(len(stroke), i) for i, stroke in enumerate(self.strokes)])

    def stroke_starts(self) -> np.ndarray:
        """(N,) True on the first point of every stroke (the pen was lifted before it)."""
        starts = np.zeros(self.num_points, dtype=bool)
        starts[np.cumsum([0] + [len(stroke) for stroke in self.strokes[:-1]])] = True
        return starts
