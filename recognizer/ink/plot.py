"""Drawing online handwriting with matplotlib: strokes, per-point colours (e.g. aligned characters), labels.

    figure = render(ink, colors=character_index_per_point, labels=characters, title="aligned")
    save_png(ink, "line.png")

matplotlib is imported only inside the functions, so importing this module (or ``recognizer.ink``)
costs nothing where nothing is drawn.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .ink import Ink

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["render", "save_png"]

_UNCOLORED = "0.7"  # points whose colour is None (e.g. aligned to the CTC blank)


def _point_colors(colors: Sequence | np.ndarray | None, count: int) -> list[tuple[float, ...]]:
    import matplotlib
    from matplotlib.colors import to_rgba

    if colors is None:
        return [to_rgba("black")] * count
    if isinstance(colors, np.ndarray) and colors.ndim == 2:
        colors = [tuple(row) for row in colors]
    if len(colors) != count:
        raise ValueError(f"render: {len(colors)} colors for {count} points")
    palette = matplotlib.colormaps["tab10"]
    result: list[tuple[float, ...]] = []
    for color in colors:
        if color is None:
            result.append(to_rgba(_UNCOLORED))
        elif isinstance(color, (int, np.integer)) and not isinstance(color, bool):
            # Integers (e.g. the index of the aligned character) cycle through a palette; negative = none.
            result.append(to_rgba(_UNCOLORED) if color < 0 else palette(int(color) % palette.N))
        else:
            result.append(to_rgba(color))
    return result


def render(
    ink: Ink,
    ax: Axes | None = None,
    colors: Sequence | np.ndarray | None = None,
    labels: Sequence[str | None] | None = None,
    linewidth: float = 1.5,
    title: str | None = None,
) -> Figure:
    """Draw the strokes (y axis inverted, equal aspect: it looks like the handwriting).

    Args:
        ink: what to draw.
        ax: draw into these axes; by default a new figure sized to the ink's aspect ratio.
        colors: one colour per point (any matplotlib colour, an integer index into a palette,
            negative or None for "no colour" in light grey, or an (N, 3|4) RGB(A) array). The
            segment ending at a point takes that point's colour, so runs of equal colours are
            drawn as lines in that colour; lone points of a colour are drawn as dots.
        labels: text placed above the first point of each run of equal colours (or, without
            ``colors``, of equal labels), e.g. the aligned character: one label per point, or one
            per run. None or "" draws nothing.
        linewidth: stroke width in points.
        title: optional axes title.

    Returns:
        The figure (not registered with pyplot, so nothing needs closing and no display is used).
    """
    from matplotlib.collections import LineCollection
    from matplotlib.figure import Figure

    points = ink.points()
    count = len(points)
    rgba = _point_colors(colors, count)
    if labels is not None:
        labels = list(labels)

    if ax is None:
        width, height = np.ptp(points[:, 0]), np.ptp(points[:, 1])
        ratio = float(np.clip((width + 1e-9) / (height + 1e-9), 0.5, 8.0))
        figure = Figure(figsize=(min(2.5 * ratio + 0.6, 16.0), 2.8), layout="constrained")
        ax = figure.add_subplot()
    else:
        parent = ax.figure
        # Axes in a subfigure: return the figure that holds it (the one that can be saved).
        figure = parent if isinstance(parent, Figure) else parent.figure

    starts = ink.stroke_starts()
    ends = np.concatenate([starts[1:], [True]])
    inner = np.flatnonzero(~starts)
    segments = np.stack([points[inner - 1, :2], points[inner, :2]], axis=1)
    ax.add_collection(
        LineCollection(
            list(segments), colors=[rgba[i] for i in inner], linewidths=linewidth, capstyle="round", joinstyle="round"
        )
    )
    # A point that no segment of its own colour reaches would be invisible: draw it as a dot.
    lone = [i for i in range(count) if starts[i] and (ends[i] or rgba[i + 1] != rgba[i])]
    if lone:
        ax.scatter(points[lone, 0], points[lone, 1], s=(1.6 * linewidth) ** 2, c=[rgba[i] for i in lone], zorder=2)

    if labels is not None:
        keys: list[Any] = rgba if colors is not None else labels
        run_starts = [i for i in range(count) if i == 0 or keys[i] != keys[i - 1]]
        if len(labels) == count:
            texts = [labels[i] for i in run_starts]
        elif len(labels) == len(run_starts):
            texts = labels
        else:
            raise ValueError(f"render: {len(labels)} labels for {count} points and {len(run_starts)} colour runs")
        for i, text in zip(run_starts, texts):
            if text:
                ax.annotate(
                    str(text),
                    (float(points[i, 0]), float(points[i, 1])),
                    xytext=(0, 4),
                    textcoords="offset points",
                    ha="center",
                    va="bottom",
                    fontsize=8,
                    color=rgba[i] if colors is not None else "tab:blue",
                )

    ax.set_aspect("equal", adjustable="box")
    ax.autoscale_view()
    if not ax.yaxis_inverted():
        ax.invert_yaxis()
    ax.tick_params(labelsize=7)
    if title:
        ax.set_title(title, fontsize=9)
    return figure


def save_png(ink: Ink, path: str | os.PathLike, dpi: int = 150, **kwargs: Any) -> Path:
    """Render ``ink`` (keyword arguments as for ``render``) into a PNG file; returns its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure = render(ink, **kwargs)
    figure.savefig(path, format="png", dpi=dpi)
    return path
