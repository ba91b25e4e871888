"""Ink file formats: IAM-OnDB ``lineStrokes`` XML, W3C InkML, and the project's own JSON.

All XML goes through ``defusedxml``: documents declaring entities (billion laughs, external entities)
are refused before anything is expanded or fetched. Every failure is an :class:`InkError` naming the file.

Times are returned in seconds counted from the sample's first point; coordinates are kept as stored
(IAM-OnDB and most pen devices have y growing downwards, as :class:`Ink` expects).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import Element, ParseError

import defusedxml
import defusedxml.ElementTree as DefusedET
import numpy as np

from .ink import Ink, InkError

__all__ = [
    "INK_SUFFIXES",
    "load_ink",
    "read_iam_ondb_strokes",
    "read_inkml",
    "read_json_ink",
    "write_json_ink",
]

INK_SUFFIXES = (".xml", ".inkml", ".json")

INKML_NAMESPACE = "http://www.w3.org/2003/InkML"
_XML_ID = "{http://www.w3.org/XML/1998/namespace}id"
# Time channel units InkML files use in practice, as factors to seconds.
_TIME_UNITS = {"": 1.0, "s": 1.0, "sec": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6}


# --------------------------------------------------------------------------------------------- XML


def _parse_xml(path: Path) -> Element:
    try:
        with open(path, "rb") as f:
            root = DefusedET.parse(f, forbid_dtd=False, forbid_entities=True, forbid_external=True).getroot()
    except defusedxml.DefusedXmlException as error:
        raise InkError(f"{path}: refusing XML with entity declarations or external references ({error!r})") from None
    except ParseError as error:
        raise InkError(f"{path}: malformed XML ({error})") from None
    except OSError as error:
        raise InkError(f"{path}: cannot read ({error.strerror or error})") from None
    if root is None:  # a parsed document always has one; the type allows None
        raise InkError(f"{path}: no XML root element")
    return root


def _local(tag: Any) -> str | None:
    """The element's name without the InkML namespace; None for comments and foreign namespaces."""
    if not isinstance(tag, str):
        return None
    if tag.startswith("{"):
        namespace, _, name = tag[1:].partition("}")
        return name if namespace == INKML_NAMESPACE else None
    return tag


def _number(value: str | None, what: str) -> float:
    if value is None:
        raise InkError(f"{what}: missing")
    try:
        return float(value)
    except ValueError:
        raise InkError(f"{what}: not a number ({value!r})") from None


# --------------------------------------------------------------------------------------- IAM-OnDB


def read_iam_ondb_strokes(path: str | os.PathLike) -> Ink:
    """Read one IAM-OnDB ``lineStrokes`` file (``<WhiteboardCaptureSession>``) as an :class:`Ink`.

    Points carry ``x``, ``y`` (whiteboard units, y downwards) and ``time`` (absolute seconds); time is
    shifted so the first point is at 0. Points without ``time`` get t = NaN (``Ink`` then reads a
    sample where only some lack it as untimed, as for every format). Empty ``<Stroke>`` elements are dropped and counted in
    ``Ink.empty_strokes``. The text is None: IAM keeps transcriptions in separate ``ascii`` files.
    """
    path = Path(path)
    root = _parse_xml(path)
    if root.tag != "WhiteboardCaptureSession":
        raise InkError(f"{path}: not an IAM-OnDB lineStrokes file (root element <{root.tag}>)")
    strokes = []
    for s, stroke in enumerate(root.iter("Stroke"), start=1):
        points = []
        for p, point in enumerate(stroke.iter("Point"), start=1):
            where = f"{path}: stroke {s}, point {p} (counting from 1)"
            x = _number(point.get("x"), f"{where}: attribute 'x'")
            y = _number(point.get("y"), f"{where}: attribute 'y'")
            time = point.get("time")
            if time is None:
                t = math.nan
            else:
                t = _number(time, f"{where}: attribute 'time'")  # NaN: missing; infinite: refused by Ink
            points.append((x, y, t))
        strokes.append(np.array(points, dtype=np.float64).reshape(-1, 3))
    _repair_zero_times(strokes)
    _shift_time(strokes)
    return Ink(strokes, text=None, source=str(path))


def _repair_zero_times(strokes: list[np.ndarray]) -> None:
    """Interpolate ``time="0.00"`` glitches from the neighbouring points' times.

    A few IAM-OnDB files (47 points in 13 of the 8,320 distributed lines) have points, or a whole
    stroke, stamped 0.00 amid a session clock in the hundreds or thousands of seconds: left alone,
    they would put those points thousands of seconds before the rest of the line.
    """
    if not strokes:
        return
    times = np.concatenate([stroke[:, 2] for stroke in strokes])
    glitch = times == 0.0
    if not glitch.any() or glitch.all() or np.median(times) <= 1.0:
        return
    index = np.arange(len(times))
    times[glitch] = np.interp(index[glitch], index[~glitch], times[~glitch])
    start = 0
    for stroke in strokes:
        stroke[:, 2] = times[start : start + len(stroke)]
        start += len(stroke)


def _shift_time(strokes: list[np.ndarray]) -> None:
    """Make time start at 0 at the sample's first point (absolute clock values are meaningless)."""
    for stroke in strokes:
        if len(stroke):
            start = stroke[0, 2]
            if math.isfinite(start):
                for other in strokes:
                    other[:, 2] -= start
            return


# ------------------------------------------------------------------------------------------ InkML


# One value of a point: optional difference prefix, then a number (sign may be detached), hex, or a
# special value. Values need no separator when the next one starts with a sign or prefix ("3-5").
_INKML_VALUE = re.compile(
    r"""\s*(?P<prefix>[!'"]?)\s*
        (?P<value>-?\s*(?:(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|\#[0-9A-Fa-f]+)|[?*TF])""",
    re.VERBOSE,
)


class _TraceFormat:
    """Where X, Y and T sit among a trace's regular channels, and T's factor to seconds."""

    def __init__(self, names: list[str], time_scale: float = 1.0) -> None:
        self.names = names
        self.time_scale = time_scale

    @classmethod
    def parse(cls, element: Element, path: Path) -> _TraceFormat:
        names, time_scale = [], 1.0
        for channel in element.iter():
            if _local(channel.tag) == "intermittentChannels":
                break  # intermittent values trail the regular ones and may be absent: ignored
            if _local(channel.tag) != "channel":
                continue
            name = channel.get("name", "")
            names.append(name)
            if name == "T":
                units = channel.get("units", "").strip()
                if units not in _TIME_UNITS:
                    raise InkError(f"{path}: unsupported time unit {units!r} on channel T (expected one of s, ms, us)")
                time_scale = _TIME_UNITS[units]
        for required in ("X", "Y"):
            if required not in names:
                raise InkError(f"{path}: <traceFormat> has no {required} channel (channels: {', '.join(names)})")
        return cls(names, time_scale)


_DEFAULT_FORMAT = _TraceFormat(["X", "Y"])


class _InkmlDocument:
    def __init__(self, path: Path, root: Element) -> None:
        self.path = path
        self.root = root
        self.by_id: dict[str, Element] = {}
        for element in root.iter():
            identifier = element.get(_XML_ID) or element.get("id")
            if identifier is not None:
                self.by_id.setdefault(identifier, element)
        self.default_format = self._default_format()
        self._formats: dict[int, _TraceFormat] = {}

    def _default_format(self) -> _TraceFormat:
        # The document's current format: a <traceFormat> directly under <ink>, or inside a <context>
        # directly under <ink>. Formats only declared in <definitions> apply where referenced.
        for child in self.root:
            name = _local(child.tag)
            if name == "traceFormat":
                return _TraceFormat.parse(child, self.path)
            if name == "context":
                found = self._context_format(child)
                if found is not None:
                    return found
        return _DEFAULT_FORMAT

    def _context_format(self, context: Element) -> _TraceFormat | None:
        for child in context:
            if _local(child.tag) == "traceFormat":
                return _TraceFormat.parse(child, self.path)
        reference = context.get("traceFormatRef")
        if reference:
            return _TraceFormat.parse(self.resolve(reference, "traceFormatRef"), self.path)
        reference = context.get("contextRef")
        if reference:
            return self._context_format(self.resolve(reference, "contextRef"))
        return None

    def resolve(self, reference: str, attribute: str) -> Element:
        identifier = reference[1:] if reference.startswith("#") else reference
        if identifier not in self.by_id:
            raise InkError(f"{self.path}: {attribute}={reference!r} refers to no element with that id")
        return self.by_id[identifier]

    def trace_format(self, trace: Element, contexts: list[str]) -> _TraceFormat:
        """The format of a trace: its own contextRef, else the nearest enclosing group's, else the default."""
        for reference in [trace.get("contextRef"), *reversed(contexts)]:
            if reference:
                context = self.resolve(reference, "contextRef")
                found = self._context_format(context) if _local(context.tag) == "context" else None
                if found is not None:
                    return found
        return self.default_format

    def strokes(self, element: Element, contexts: list[str] | None = None, depth: int = 0) -> Iterator[np.ndarray]:
        """Every pen-down trace inside ``element`` in document order, following traceViews."""
        if depth > 64:
            raise InkError(f"{self.path}: traceView references nest too deeply (a reference cycle?)")
        contexts = list(contexts or [])
        reference = element.get("contextRef")
        if reference:
            contexts.append(reference)
        for child in element:
            name = _local(child.tag)
            if name == "trace":
                if child.get("type", "penDown") == "penUp":
                    continue  # hover movement, not ink
                yield self.parse_trace(child, self.trace_format(child, contexts))
            elif name == "traceGroup":
                yield from self.strokes(child, contexts, depth)
            elif name == "traceView":
                if child.get("from") or child.get("to"):
                    raise InkError(f"{self.path}: <traceView> with from/to ranges is not supported")
                reference = child.get("traceDataRef")
                if reference:
                    target = self.resolve(reference, "traceDataRef")
                    if _local(target.tag) == "trace":
                        yield self.parse_trace(target, self.trace_format(target, contexts))
                    else:
                        yield from self.strokes(target, contexts, depth + 1)
                else:
                    yield from self.strokes(child, contexts, depth + 1)

    def parse_trace(self, trace: Element, fmt: _TraceFormat) -> np.ndarray:
        identifier = trace.get(_XML_ID) or trace.get("id")
        where = f"{self.path}: trace {identifier!r}" if identifier else f"{self.path}: a trace"
        text = (trace.text or "").strip()
        if not text:
            return np.zeros((0, 3))
        width = len(fmt.names)
        if "," in text:
            rows = [_parse_point(chunk, where, number) for number, chunk in enumerate(text.split(","), start=1)]
        else:
            # Early drafts of the spec (and some exporters) put points one after another without commas.
            values = _parse_point(text, where, 1)
            if len(values) % width:
                raise InkError(f"{where}: {len(values)} values do not split into points of {width} channels")
            rows = [values[i : i + width] for i in range(0, len(values), width)]
        return _decode_values(rows, fmt, where)


def _parse_point(chunk: str, where: str, number: int) -> list[tuple[str, str]]:
    values, position = [], 0
    chunk = chunk.rstrip()
    while position < len(chunk):
        match = _INKML_VALUE.match(chunk, position)
        if match is None:
            raise InkError(f"{where}: point {number}: cannot read {chunk[position:].strip()[:20]!r}")
        values.append((match["prefix"], re.sub(r"\s", "", match["value"])))
        position = match.end()
    if not values:
        raise InkError(f"{where}: point {number} is empty")
    return values


def _decode_values(rows: list[list[tuple[str, str]]], fmt: _TraceFormat, where: str) -> np.ndarray:
    """Apply the InkML difference prefixes per channel; a prefix holds for later points until replaced.

    ``!`` explicit value, ``'`` first difference (value = previous + v), ``"`` second difference
    (difference = previous difference + v). ``?`` is an unknown value (NaN), ``*`` repeats the
    previous value (explicit mode only).
    """
    width = len(fmt.names)
    modes = ["!"] * width
    previous: list[float | None] = [None] * width
    delta: list[float | None] = [None] * width
    decoded = np.empty((len(rows), width))
    for number, row in enumerate(rows, start=1):
        if len(row) < width:
            raise InkError(f"{where}: point {number} has {len(row)} values; the trace format has {width} channels")
        for c in range(width):
            prefix, raw = row[c]
            if prefix:
                modes[c] = prefix
            mode, channel = modes[c], fmt.names[c]
            last, step = previous[c], delta[c]
            if raw in ("T", "F"):
                value = 1.0 if raw == "T" else 0.0
            elif raw == "?":
                value = math.nan
            elif raw == "*":
                if mode != "!" or last is None:
                    raise InkError(f"{where}: point {number}, channel {channel}: '*' with no previous explicit value")
                value = last
            elif raw.lstrip("-").startswith("#"):
                value = float(int(raw.replace("#", ""), 16))
            else:
                value = float(raw)
            if mode == "!" or raw == "*":
                delta[c] = None if last is None else value - last
                current = value
            elif mode == "'":
                if last is None:
                    raise InkError(
                        f"{where}: point {number}, channel {channel}: first difference with no previous point"
                    )
                delta[c] = value
                current = last + value
            else:
                if last is None or step is None:
                    raise InkError(
                        f"{where}: point {number}, channel {channel}: second difference needs two previous points"
                    )
                delta[c] = step = step + value
                current = last + step
            previous[c] = current
            decoded[number - 1, c] = current
    points = np.full((len(rows), 3), np.nan)
    points[:, 0] = decoded[:, fmt.names.index("X")]
    points[:, 1] = decoded[:, fmt.names.index("Y")]
    if "T" in fmt.names:
        points[:, 2] = decoded[:, fmt.names.index("T")] * fmt.time_scale
    return points


#: elements inside an ``<annotationXML>`` whose text is the transcription (lower-cased names), as
#: datasets write it: ``<annotationXML><Label>...</Label></annotationXML>``, ``<truth>``, ...
ANNOTATION_XML_TRUTH = ("truth", "label", "transcription", "text")


def _truth(element: Element) -> str | None:
    """The element's transcription: ``<annotation type="truth">``, or an ``<annotationXML>`` of type
    truth or holding one of ``ANNOTATION_XML_TRUTH`` (first found, in document order)."""
    for child in element:
        name = _local(child.tag)
        if name == "annotation" and child.get("type") == "truth":
            return (child.text or "").strip()
        if name == "annotationXML":
            if child.get("type") == "truth" and (child.text or "").strip():
                return (child.text or "").strip()
            for inner in child.iter():
                if inner is not child and (_local(inner.tag) or "").lower() in ANNOTATION_XML_TRUTH:
                    return " ".join("".join(inner.itertext()).split())
    return None


def _truth_groups(element: Element) -> Iterator[Element]:
    """Outermost truth-annotated traceGroups, in document order, outside <definitions>."""
    for child in element:
        name = _local(child.tag)
        if name == "definitions":
            continue
        if name == "traceGroup" and _truth(child) is not None:
            yield child  # nested truth groups belong to this sample
        else:
            yield from _truth_groups(child)


def read_inkml(path: str | os.PathLike) -> list[Ink]:
    """Read a W3C InkML file (namespaced or not) as a list of samples.

    Each ``<traceGroup>`` with an ``<annotation type="truth">`` (or an ``<annotationXML>`` holding
    the truth, see ``_truth``) is one sample (its nested traces and
    ``<traceView traceDataRef="#id">`` references, in order); without such groups the whole document
    is one sample whose text is the document-level truth annotation, if any. Channels come from
    ``<traceFormat>`` (X and Y required, T optional in s/ms/us; default X Y); the ``!``, ``'`` and
    ``"`` value prefixes are decoded. ``Ink.source`` is ``"<path>#<group xml:id or sample index>"``.
    """
    path = Path(path)
    root = _parse_xml(path)
    if _local(root.tag) != "ink":
        raise InkError(f"{path}: not an InkML file (root element <{root.tag}>)")
    document = _InkmlDocument(path, root)
    groups = list(_truth_groups(root))
    if not groups:
        strokes = list(document.strokes(root))
        _shift_time(strokes)
        return [Ink(strokes, text=_truth(root), source=f"{path}#0")]
    samples = []
    for index, group in enumerate(groups):
        strokes = list(document.strokes(group))
        _shift_time(strokes)
        name = group.get(_XML_ID) or group.get("id") or str(index)
        samples.append(Ink(strokes, text=_truth(group), source=f"{path}#{name}"))
    return samples


# ------------------------------------------------------------------------------------------- JSON


def read_json_ink(path: str | os.PathLike) -> Ink:
    """Read ``{"strokes": [[[x, y, t], ...], ...], "text": ...}``; t is optional but all-or-none per file."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as error:
        raise InkError(f"{path}: invalid JSON ({error.msg} at line {error.lineno}, column {error.colno})") from None
    except UnicodeDecodeError as error:
        raise InkError(f"{path}: not UTF-8 text ({error.reason})") from None
    except OSError as error:
        raise InkError(f"{path}: cannot read ({error.strerror or error})") from None
    if not isinstance(data, dict) or not isinstance(data.get("strokes"), list):
        raise InkError(f'{path}: expected a JSON object with a "strokes" list')
    text = data.get("text")
    if text is not None and not isinstance(text, str):
        raise InkError(f'{path}: "text" must be a string or null, got {type(text).__name__}')
    widths: set[int] = set()
    strokes = []
    for s, stroke in enumerate(data["strokes"], start=1):
        if not isinstance(stroke, list):
            raise InkError(f"{path}: stroke {s} (counting from 1) is not a list of points")
        for p, point in enumerate(stroke, start=1):
            if (
                not isinstance(point, list)
                or len(point) not in (2, 3)
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in point)
            ):
                raise InkError(
                    f"{path}: stroke {s}, point {p} (counting from 1): expected [x, y] or [x, y, t], got {point!r}"
                )
            widths.add(len(point))
        strokes.append(np.array(stroke, dtype=np.float64).reshape(-1, len(stroke[0]) if stroke else 3))
    if len(widths) > 1:
        raise InkError(f"{path}: some points have a time value and others do not; use [x, y, t] everywhere or nowhere")
    return Ink(strokes, text=text, source=str(path))


def write_json_ink(path: str | os.PathLike, ink: Ink) -> Path:
    """Write ``ink`` as JSON (values rounded to 4 decimals; t left out unless every point has one)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = 3 if ink.has_time else 2
    strokes = [[[_compact(v) for v in point[:columns]] for point in stroke.tolist()] for stroke in ink.strokes]
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"text": ink.text, "strokes": strokes}, f, ensure_ascii=False, separators=(",", ":"))
    return path


def _compact(value: float) -> float | int:
    value = round(value, 4)
    return int(value) if value.is_integer() else value


# --------------------------------------------------------------------------------------- dispatch


def load_ink(path: str | os.PathLike, line_id: str | None = None) -> Ink:
    """Read an ink file by suffix: ``.xml`` IAM-OnDB, ``.inkml`` InkML, ``.json`` this project's JSON.

    For InkML files holding several samples, ``line_id`` picks the one whose traceGroup id (or index)
    matches; it is ignored for single-sample formats.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".xml":
        return read_iam_ondb_strokes(path)
    if suffix == ".json":
        return read_json_ink(path)
    if suffix == ".inkml":
        samples = read_inkml(path)
        if line_id is None:
            if len(samples) == 1:
                return samples[0]
            raise InkError(f"{path}: holds {len(samples)} samples; say which one with line_id")
        for sample in samples:
            if sample.source.rpartition("#")[2] == str(line_id):
                return sample
        names = ", ".join(sample.source.rpartition("#")[2] for sample in samples[:10])
        more = ", ..." if len(samples) > 10 else ""
        raise InkError(f"{path}: no sample {line_id!r} among its {len(samples)} ({names}{more})")
    raise InkError(
        f"{path}: unknown ink file type {suffix or '(no suffix)'!r}; expected one of {', '.join(INK_SUFFIXES)}"
    )
