"""Synthetic online handwriting: text lines written as pen trajectories with the Hershey vector fonts.

Each line is 2 to 7 random words from :data:`WORDS` (the speech corpus's list), laid out glyph by glyph
in one of :data:`FONTS` and then varied the way writers vary: size, slant, rotation, letter and word
spacing, a wavy baseline, letters that wobble in size and height, and smooth tremor. Strokes are
resampled evenly along the path and timed with a pen speed that drops in tight curves and at the ends of
strokes, with pen-up gaps in between. Cursive words come out as few long strokes: font strokes that
meet end to start are written without lifting the pen, and some writers dot their i's and cross their
t's only after the word. Nothing is downloaded: the fonts come inside the ``Hershey-Fonts`` wheel.

Coordinates are tablet-like units with y growing downwards (as :class:`recognizer.ink.Ink` expects); a
capital letter is :data:`HEIGHT` units tall. Layout written by :func:`prepare`::

    out/ink/<split>/<split>-<index>.json   {"strokes": [[[x, y, t], ...], ...], "text": ...}
    out/train.jsonl, dev.jsonl, test.jsonl
    out/corpus.json                        parameters; written last, so it marks a complete corpus

The corpus depends only on its parameters (seed and sizes), not on the number of worker processes.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from recognizer.corpora.generated import SPLITS as SPLITS  # the corpus's splits, for its users
from recognizer.corpora.generated import CorpusGenerator, Item, generate
from recognizer.corpora.synthetic_speech import WORDS
from recognizer.ink import Ink
from recognizer.ink.formats import write_json_ink

# Hershey faces with distinct lower-case letters ("cursive" repeats "scripts", "rowmans" repeats
# "futural"). scriptc and timesi draw thick lines as several parallel passes, which are dropped on
# loading, so that every face is written with a single pen line.
FONTS: tuple[str, ...] = ("scripts", "scriptc", "futural", "timesi")

# (low, high) bounds of each line's uniform draws. Lengths are in cap heights (the height of a capital
# letter) unless they say otherwise.
WORDS_PER_LINE = (2, 7)
MAX_CHARS = 40  # words are dropped from the end, down to two, until the line fits
HEIGHT = (30.0, 80.0)  # output units per cap height
SLANT_DEG = (-10.0, 20.0)  # positive leans right
ROTATION_DEG = (-2.0, 2.0)
LETTER_SPACING = (-0.03, 0.12)  # added to each letter's advance
WORD_SPACING = (0.6, 1.4)  # times the font's space width
LETTER_WOBBLE = (0.0, 0.06)  # standard deviation of each letter's relative size; half that for its height
DRIFT_AMPLITUDE = (0.0, 0.15)  # the baseline is a sine along x
DRIFT_WAVELENGTH = (6.0, 30.0)
JITTER = (0.003, 0.02)  # standard deviation of the smooth tremor
STEP = (0.05, 0.09)  # distance between points along the path
SPEED = (8.0, 20.0)  # pen speed on straight lines, cap heights per second
PEN_UP_S = (0.05, 0.2)  # drawn for every gap between strokes
ORIGIN = ((0.0, 3.0), (1.5, 4.0))  # x and baseline y of the line's start
DEFER_MARKS = 0.6  # probability that a writer dots and crosses after each word

# Bump whenever the output for given parameters changes (word list, fonts, draws), so that corpora made
# by an older version are regenerated rather than reused.
GENERATOR_VERSION = 1
# Items are drawn independently, so this only sets how work is shared out between processes.
CHUNK_SIZE = 100

# Font units (the Hershey grid, y down) below which two stroke ends meet, and within which a stroke
# only retraces earlier ones.
_MEET = 0.5
_RETRACE = 1.6
_JOIN = 0.03  # cap heights (about _MEET): where one letter's exit meets the next one's entry
# A mark (i dot, t bar, top serif) is small and lies high, so that a writer may add it after the word.
_MARK_SIZE = 0.4  # cap heights, bounding-box diagonal
_MARK_TOP = -0.45  # cap heights: its lowest point is above this (about the x-height line)
_RAMP = 0.3  # cap heights over which the pen gets up to speed and slows down again
_CURVATURE_SCALE = 2.0  # curvature (1 / cap heights) at which the pen runs at 1/sqrt(2) of its speed
_MIN_DT = 0.002  # seconds; keeps times strictly increasing once rounded to milliseconds


@dataclass(frozen=True)
class _Glyph:
    """One character in cap heights: x from the glyph's left edge, y down from the baseline."""

    strokes: tuple[np.ndarray, ...]  # in writing order, marks last
    num_marks: int
    width: float
    entry: np.ndarray | None  # where the first non-mark stroke starts, if there is one
    exit_: np.ndarray | None  # where the last non-mark stroke ends, relative to the right edge


def _densify(points: np.ndarray, step: float) -> np.ndarray:
    """Points every ``step`` (at most) along the polyline, ends kept; a single point if it has no length."""
    lengths = np.hypot(*np.diff(points, axis=0).T)
    total = float(lengths.sum())
    if total <= 0.0:
        return points[:1].copy()
    along = np.concatenate([[0.0], np.cumsum(lengths)])
    keep = np.concatenate([[True], lengths > 0])  # np.interp needs increasing positions
    samples = np.linspace(0.0, total, int(np.ceil(total / step)) + 1)
    return np.stack([np.interp(samples, along[keep], points[keep, i]) for i in range(2)], axis=1)


def _glyph(strokes: list[list[tuple[int, int]]], left: int, width: int, cap: float, base: float) -> _Glyph:
    kept: list[np.ndarray] = []
    seen = np.zeros((0, 2))
    for stroke in strokes:
        points = np.asarray(stroke, dtype=np.float64)
        dense = _densify(points, 0.5)
        if len(seen) and np.hypot(*(dense[:, None, :] - seen[None]).transpose(2, 0, 1)).min(axis=1).max() < _RETRACE:
            continue
        seen = np.concatenate([seen, dense])
        if kept and np.hypot(*(kept[-1][-1] - points[0])) < _MEET:
            kept[-1] = np.concatenate([kept[-1], points[1:]])
        else:
            kept.append(points)
    scale = base - cap
    kept = [np.stack([(s[:, 0] - left) / scale, (s[:, 1] - base) / scale], axis=1) for s in kept]

    def is_mark(s: np.ndarray) -> bool:
        return float(np.hypot(*np.ptp(s, axis=0))) < _MARK_SIZE and float(s[:, 1].max()) < _MARK_TOP

    marks = [s for s in kept if is_mark(s)]
    main = [s for s in kept if not is_mark(s)]
    if not main:  # a glyph of marks only (".", ":"): nothing for them to follow
        main, marks = marks, []
    advance = width / scale
    return _Glyph(
        strokes=tuple(main + marks),
        num_marks=len(marks),
        width=advance,
        entry=main[0][0] if main else None,
        exit_=main[-1][-1] - (advance, 0.0) if main else None,
    )


@cache
def _font(name: str) -> dict[str, _Glyph]:
    """Character -> glyph of a Hershey face, loaded once per process."""
    from HersheyFonts import HersheyFonts

    font = HersheyFonts()
    font.load_default_font(name)
    options = font.render_options
    # The grid's y grows downwards, as ink's does: the cap line is above the baseline, so smaller.
    cap, base = float(options["cap_line"]), float(options["base_line"])
    return {
        char: _glyph([list(s) for s in glyph.strokes], glyph.left_offset, glyph.char_width, cap, base)
        for char, glyph in font.all_glyphs.items()
    }


def _kernel(width: float) -> np.ndarray:
    """Gaussian of standard deviation ``width`` samples, summing to one."""
    radius = int(np.ceil(3 * width))
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / width) ** 2)
    return kernel / kernel.sum()


class _Line:
    """All strokes of a line as one array, so that each step is a few numpy calls rather than one per stroke."""

    def __init__(self, points: np.ndarray, sizes: np.ndarray) -> None:
        self.points = points  # (points, 2), stroke after stroke
        self.sizes = sizes  # points per stroke
        self.starts = np.cumsum(sizes) - sizes
        self.ids = np.repeat(np.arange(len(sizes)), sizes)

    def split(self, values: np.ndarray) -> list[np.ndarray]:
        """Per-point ``values`` cut into strokes."""
        return np.split(values, self.starts[1:])

    def densify(self, step: float) -> _Line:
        """The strokes resampled every ``step`` (at most) along their paths, ends kept."""
        steps = np.hypot(*np.diff(self.points, axis=0).T)
        steps[self.starts[1:] - 1] = 0.0  # no path between one stroke's end and the next one's start
        along = np.concatenate([[0.0], np.cumsum(steps)])
        lengths = along[self.starts + self.sizes - 1] - along[self.starts]
        # One unit between strokes keeps positions increasing for np.interp, which then never samples there.
        position = along + self.ids
        keep = np.concatenate([[True], steps > 0])
        keep[self.starts] = True
        counts = np.where(lengths > 0, np.ceil(lengths / step).astype(int) + 1, 1)
        ids = np.repeat(np.arange(len(counts)), counts)
        local = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        samples = position[self.starts][ids] + lengths[ids] * local / np.maximum(counts - 1, 1)[ids]
        resampled = np.stack([np.interp(samples, position[keep], self.points[keep, i]) for i in range(2)], axis=1)
        return _Line(resampled, counts)

    def smooth(self, values: np.ndarray, width: float) -> np.ndarray:
        """Gaussian smoothing within each stroke, standard deviation ``width`` points, stroke ends held."""
        if width <= 0.3:
            return values
        kernel = _kernel(width)
        radius = len(kernel) // 2
        padded_sizes = self.sizes + 2 * radius
        ids = np.repeat(np.arange(len(self.sizes)), padded_sizes)
        padded_starts = np.cumsum(padded_sizes) - padded_sizes
        local = np.arange(padded_sizes.sum()) - padded_starts[ids] - radius
        padded = values[np.clip(local, 0, self.sizes[ids] - 1) + self.starts[ids]]
        # "valid" output i is centred on padded sample i + radius.
        centres = padded_starts[self.ids] + np.arange(len(values)) - self.starts[self.ids]
        columns = padded.reshape(len(padded), -1).T
        smoothed = np.stack([np.convolve(column, kernel, mode="valid")[centres] for column in columns], axis=1)
        return smoothed.reshape(values.shape)

    def times(self, height: float, speed: float, rng: np.random.Generator) -> np.ndarray:
        """Seconds from the line's first point: slower in tight curves and near stroke ends, pen-up gaps between.

        ``height`` is the cap height in output units, ``speed`` the top pen speed in cap heights per second.
        """
        steps = np.hypot(*np.diff(self.points, axis=0).T) / height
        inside = self.ids[1:] == self.ids[:-1]
        steps[~inside] = 0.0
        along = np.concatenate([[0.0], np.cumsum(steps)])
        along -= along[self.starts][self.ids]
        length = along[self.starts + self.sizes - 1][self.ids]
        headings = np.arctan2(*np.diff(self.points, axis=0).T[::-1])
        turns = np.abs((np.diff(headings) + np.pi) % (2 * np.pi) - np.pi)
        curvature = np.zeros(len(self.points))
        interior = inside[:-1] & inside[1:]
        mean_step = np.maximum(0.5 * (steps[:-1] + steps[1:]), 1e-9)
        curvature[1:-1] = np.where(interior, turns / mean_step, 0.0)
        curvature = self.smooth(curvature, 1.0)
        # Pen speed falls with curvature (the "power law" of handwriting) and towards the stroke's ends.
        velocity = speed * (1.0 + curvature / _CURVATURE_SCALE) ** -0.5
        ramp = np.minimum(1.0, np.minimum(along, length - along) / _RAMP)
        velocity *= 0.3 + 0.7 * np.sqrt(ramp)
        # A slow wavering of speed along each stroke.
        periods = rng.uniform(1.0, 3.0, size=len(self.sizes))
        phases = rng.uniform(0.0, 2 * np.pi, size=len(self.sizes))
        velocity *= 1.0 + 0.15 * np.sin(2 * np.pi * along / periods[self.ids] + phases[self.ids])
        dt = np.maximum(steps / (0.5 * (velocity[:-1] + velocity[1:])), _MIN_DT)
        dt[~inside] = rng.uniform(*PEN_UP_S, size=len(self.sizes) - 1)
        return np.concatenate([[0.0], np.cumsum(dt)])


def _layout(
    text: str,
    font: dict[str, _Glyph],
    rng: np.random.Generator,
    letter_spacing: float,
    word_spacing: float,
    wobble: float,
    defer_marks: bool,
) -> list[np.ndarray]:
    """Strokes of the line in cap heights, baseline at y = 0, before any writer transform."""
    strokes: list[np.ndarray] = []
    deferred: list[np.ndarray] = []
    x = 0.0
    previous: _Glyph | None = None  # the glyph whose last stroke may be continued, if any
    for char in text:
        glyph = font[char]
        if char == " ":
            strokes += deferred
            deferred, previous = [], None
            x += glyph.width * word_spacing
            continue
        size = 1.0 + wobble * float(np.clip(rng.standard_normal(), -2.5, 2.5))
        shift = 0.5 * wobble * float(np.clip(rng.standard_normal(), -2.5, 2.5))
        placed = [s * size + (x, shift) for s in glyph.strokes]
        joins = (
            previous is not None
            and glyph.entry is not None
            and float(np.hypot(*(previous.exit_ - glyph.entry))) < _JOIN
        )
        main, marks = placed[: len(placed) - glyph.num_marks], placed[len(placed) - glyph.num_marks :]
        if joins and main:
            strokes[-1] = np.concatenate([strokes[-1], main[0]])
            main = main[1:]
        strokes += main
        if defer_marks:
            deferred += marks
        else:
            strokes += marks
        previous = glyph if glyph.entry is not None and (defer_marks or not marks) else None
        x += glyph.width * size + letter_spacing
    return strokes + deferred


def synthesize_line(text: str, rng: np.random.Generator) -> Ink:
    """Write ``text`` as a line of online handwriting by a writer drawn from ``rng``.

    ``text`` may hold any printable ASCII characters (the corpus uses lower-case words and single
    spaces). Returns an :class:`~recognizer.ink.Ink` with x, y in output units (y down; a capital letter
    is :data:`HEIGHT` units tall) and t in seconds from 0, strictly increasing over the whole line.
    The same text and generator state give the same ink. Raises ValueError for text the fonts cannot
    write or that has nothing to write.
    """
    fonts = [_font(name) for name in FONTS]
    missing = sorted({char for char in text if any(char not in font for font in fonts)})
    if missing:
        raise ValueError(f"the Hershey fonts cannot write {''.join(missing)!r} in {text!r}")
    if not text.strip():
        raise ValueError(f"nothing to write in {text!r}")

    # The order of draws below is part of the corpus definition: changing it means bumping GENERATOR_VERSION.
    font = fonts[int(rng.integers(len(fonts)))]
    height = rng.uniform(*HEIGHT)
    slant = np.radians(rng.uniform(*SLANT_DEG))
    rotation = np.radians(rng.uniform(*ROTATION_DEG))
    letter_spacing = rng.uniform(*LETTER_SPACING)
    word_spacing = rng.uniform(*WORD_SPACING)
    wobble = rng.uniform(*LETTER_WOBBLE)
    drift = rng.uniform(*DRIFT_AMPLITUDE)
    wavelength = rng.uniform(*DRIFT_WAVELENGTH)
    drift_phase = rng.uniform(0.0, 2 * np.pi)
    jitter = rng.uniform(*JITTER)
    step = rng.uniform(*STEP)
    speed = rng.uniform(*SPEED)
    origin = np.array([rng.uniform(*ORIGIN[0]), rng.uniform(*ORIGIN[1])])
    defer_marks = bool(rng.random() < DEFER_MARKS)

    strokes = _layout(text, font, rng, letter_spacing, word_spacing, wobble, defer_marks)
    points = np.concatenate(strokes)
    x = points[:, 0]
    y = points[:, 1] + drift * np.sin(2 * np.pi * x / wavelength + drift_phase)
    # Above the baseline y < 0, so a rightward lean moves points right by -y tan(slant).
    points = np.stack([x - y * np.tan(slant), y], axis=1)
    cos, sin = np.cos(rotation), np.sin(rotation)
    points = points @ np.array([[cos, -sin], [sin, cos]]).T
    line = _Line((points + origin) * height, np.array([len(s) for s in strokes])).densify(step * height)
    # The fonts' corners sit on a coarse grid; a pen rounds them off.
    points = line.smooth(line.points, 0.03 / step)
    # Tremor: white noise smoothed over about a quarter of a cap height, rescaled to unit deviation.
    width = 0.25 / step
    noise = line.smooth(rng.standard_normal(points.shape), width) / np.sqrt((_kernel(width) ** 2).sum())
    line = _Line(points + noise * jitter * height, line.sizes)
    times = line.times(height, speed, rng)
    result = [np.concatenate([s, t[:, None]], axis=1) for s, t in zip(line.split(line.points), line.split(times))]
    return Ink(result, text=text, source="<synthetic>")


def _line_text(rng: np.random.Generator) -> str:
    num_words = int(rng.integers(WORDS_PER_LINE[0], WORDS_PER_LINE[1] + 1))
    words = [WORDS[i] for i in rng.choice(len(WORDS), size=num_words, replace=False)]
    while len(words) > WORDS_PER_LINE[0] and len(" ".join(words)) > MAX_CHARS:
        words.pop()
    return " ".join(words)


def _make_item(directory: Path, name: str, rng: np.random.Generator) -> Item:
    """Write one line, drawn from ``rng`` (the line's own stream), into ``directory/<name>.json``."""
    ink = synthesize_line(_line_text(rng), rng)
    # A thousandth of a unit and a millisecond are plenty; full floats would double the files.
    ink = Ink([np.round(stroke, 3) for stroke in ink.strokes], text=ink.text, source=ink.source)
    path = directory / f"{name}.json"
    write_json_ink(path, ink)
    entry = {"ink_filepath": str(path), "text": ink.text or "", "id": name, "num_points": ink.num_points}
    return Item(entry, float(ink.strokes[-1][-1, 2]))


def _summary(items: list[Item]) -> str:
    points = sum(item.entry["num_points"] for item in items)
    minutes = sum(item.seconds for item in items) / 60
    return f"{len(items)} lines, {points} points, {minutes:.1f} min of writing"


def _setup() -> dict[str, Any]:
    """Fonts are loaded here so that a broken install fails with one clear error, not one per worker."""
    for name in FONTS:
        _font(name)
    try:
        hershey = version("Hershey-Fonts")
    except PackageNotFoundError:
        hershey = "unknown"
    return {"hershey_fonts": hershey, "fonts": list(FONTS)}


GENERATOR = CorpusGenerator(
    name="synthetic-ink",
    module="recognizer.corpora.synthetic_ink",
    version=GENERATOR_VERSION,
    folder="ink",
    make_item=_make_item,
    summary=_summary,
    setup=_setup,
    chunk_size=CHUNK_SIZE,
)


def prepare(
    out: str | Path,
    num_train: int = 4000,
    num_dev: int = 200,
    num_test: int = 200,
    seed: int = 0,
    workers: int | None = None,
) -> dict[str, Path]:
    """Generate the synthetic ink corpus into ``out`` (unless it is already there); returns split -> manifest.

    Writes one JSON ink file per line under ``out/ink/<split>/`` and manifests ``out/train.jsonl``,
    ``dev.jsonl`` and ``test.jsonl`` (``ink_filepath``, ``text``, ``id``, ``num_points``), then
    ``out/corpus.json``. If ``corpus.json`` shows a complete corpus made with the same sizes, seed and
    generator version, nothing is regenerated. The output depends on ``seed`` and the sizes only;
    ``workers`` (default: all CPUs) just sets how many processes share the work.
    """
    return generate(GENERATOR, out, num_train, num_dev, num_test, seed, workers)
