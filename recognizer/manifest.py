"""JSON-lines manifests: one utterance (or ink line) per line.

Audio manifests are NeMo-compatible: ``{"audio_filepath": ..., "duration": ..., "text": ...}``.
Relative paths resolve against the manifest's own folder, so a corpus folder can be moved as a whole.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any


class ManifestError(ValueError):
    """A manifest line that cannot be used; the message names the manifest and the line."""


def read_manifest(
    path: str | os.PathLike,
    required: Sequence[str] = ("text",),
    path_key: str | None = None,
    allow_empty: bool = False,
) -> list[dict[str, Any]]:
    """Read a JSON-lines manifest.

    Every line must be a JSON object holding the ``required`` keys. If ``path_key`` is given, that
    field is a file path: it is resolved against the manifest's folder and must exist. Each entry
    gets an ``id`` (kept if present, else the file's stem, else ``<manifest>:<line>``) and a
    ``source`` (``<manifest>:<line>``) for error messages. Blank lines are skipped. A manifest with
    no entries is an error unless ``allow_empty``.
    """
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found")
    root = path.parent
    entries = []
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            where = f"{path}:{number}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise ManifestError(f"{where}: not UTF-8 text (byte {error.start + 1} of the line)") from None
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError as error:
                raise ManifestError(f"{where}: invalid JSON ({error.msg})") from None
            if not isinstance(entry, dict):
                raise ManifestError(f"{where}: expected a JSON object, got {type(entry).__name__}")
            keys = list(required) + ([path_key] if path_key else [])
            missing = [key for key in keys if key not in entry]
            if missing:
                raise ManifestError(f"{where}: missing field(s) {', '.join(map(repr, missing))}")
            if "text" in entry and not isinstance(entry["text"], str):
                raise ManifestError(f"{where}: field 'text' must be a string")
            if "duration" in entry:
                entry["duration"] = _duration(entry["duration"], where)
            if path_key:
                file = Path(os.path.expanduser(str(entry[path_key])))
                file = file if file.is_absolute() else root / file
                if not file.is_file():
                    raise ManifestError(f"{where}: {path_key} {str(file)!r} does not exist")
                entry[path_key] = str(file)
                entry.setdefault("id", file.stem if "line_id" not in entry else f"{file.stem}/{entry['line_id']}")
            entry.setdefault("id", where)
            entry["source"] = where
            entries.append(entry)
    if not entries and not allow_empty:
        raise ManifestError(f"{path}: the manifest has no entries")
    return entries


def _duration(value: Any, where: str) -> float:
    """A manifest duration: a finite, positive number of seconds."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ManifestError(f"{where}: field 'duration' must be a number of seconds, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ManifestError(f"{where}: field 'duration' must be a positive, finite number of seconds, got {value!r}")
    return float(value)


def write_manifest(path: str | os.PathLike, entries: Iterable[dict[str, Any]], relative: bool = True) -> Path:
    """Write entries as JSON lines; file paths under the manifest's folder are stored relative to it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    root = path.parent.resolve()
    with open(path, "w", encoding="utf-8") as f:
        for entry in entries:
            entry = {k: v for k, v in entry.items() if k != "source"}
            if relative:
                for key in ("audio_filepath", "ink_filepath"):
                    if key in entry:
                        entry[key] = _relative_if_inside(Path(entry[key]), root)
            f.write(json.dumps(entry, ensure_ascii=False) + "\n")
    return path


def _relative_if_inside(file: Path, root: Path) -> str:
    try:
        return str(file.resolve().relative_to(root))
    except ValueError:
        return str(file)
