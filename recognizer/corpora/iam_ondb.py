"""IAM On-Line Handwriting Database (IAM-OnDB): read IAM's layout, write one manifest per official split.

Layout, as IAM distributes it (folders, or the tarballs they come in)::

    lineStrokes-all.tar.gz -> lineStrokes/a01/a01-000/a01-000u-01.xml   one XML per ink line
    ascii-all.tar.gz       -> ascii/a01/a01-000/a01-000u.txt            the form's text after "CSR:"
    trainset.txt, testset_v.txt, testset_t.txt [, testset_f.txt]        form ids, one per line

Stroke file ``<form>-NN.xml`` is line NN (counting from 1) of the form's ``CSR:`` block. Transcriptions
are kept as IAM wrote them (including the LOB-style spaces before punctuation in most forms, and ``#``
marking crossed-out words); only encoding artifacts are normalized, see :func:`normalize_text`.

Usage: ``recognizer-prepare iam-ondb --root ../shared/data/iam-ondb --out data/iam-ondb``.
"""

from __future__ import annotations

import argparse
import html
import re
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from recognizer.corpora.archive import safe_extract
from recognizer.ink.formats import read_iam_ondb_strokes
from recognizer.ink.ink import InkError
from recognizer.manifest import write_manifest

#: manifest name -> IAM's split list; the last one (the held-out test set) is optional
SPLITS = {"train": "trainset.txt", "val1": "testset_v.txt", "val2": "testset_t.txt", "test": "testset_f.txt"}
OPTIONAL_SPLITS = ("test",)
TARBALLS = {"lineStrokes": "lineStrokes-all.tar.gz", "ascii": "ascii-all.tar.gz"}

_LINE_ID = re.compile(r"^(?P<form>.+)-(?P<number>\d+)$")
# Only XML character references count as escapes: a bare "&" ("Genius & food") is real text.
_ENTITY = re.compile(r"&(?:quot|amp|apos|lt|gt|#\d+|#[xX][0-9a-fA-F]+);")
# In a08-551z the CSR block joins the last two ink lines with a run of "%" where the line breaks.
_LINE_BREAK_MARK = re.compile(r"\s*%{3,}\s*")


def normalize_text(line: str) -> str:
    """Undo encoding artifacts in one transcription line; keep everything the annotators wrote.

    Normalized: carriage returns (the ``*z`` forms have CRLF line ends), leading/trailing and repeated
    whitespace (trailing blanks on ~800 lines, double blanks on 6), and XML character references such
    as ``&quot;`` (none in IAM's ascii files, but other IAM exports carry them).
    """
    line = _ENTITY.sub(lambda match: html.unescape(match.group()), line)
    return " ".join(line.split())


def read_transcriptions(path: Path) -> list[str]:
    """The lines of the ``CSR:`` block of one ascii file (line N of the form is item N-1)."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")  # IAM's files predate UTF-8; ISO-8859-1 like their XML
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip() == "CSR:"]
    if len(starts) != 1:
        raise ValueError(f"{path}: expected one 'CSR:' line, found {len(starts)}")
    block = [normalize_text(line) for line in lines[starts[0] + 1 :]]
    while block and not block[0]:
        block.pop(0)
    while block and not block[-1]:
        block.pop()
    return block


def read_split_list(path: Path) -> list[tuple[str, int | None]]:
    """(form id, line number or None for the whole form) per entry; entries may be form or line ids."""
    entries: list[tuple[str, int | None]] = []
    seen: set[str] = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        name = line.strip()  # IAM's lists indent every id by one space
        if not name or name in seen:
            continue
        seen.add(name)
        # Form ids have two dash-separated parts (a01-000u, a01-003); line ids add a numeric third.
        match = _LINE_ID.match(name)
        if match and name.count("-") >= 2:
            entries.append((match["form"], int(match["number"])))
        else:
            entries.append((name, None))
    return entries


def find_folder(root: Path, out: Path, name: str) -> Path:
    """``root/<name>``, else the tarball ``root/<name>-all.tar.gz`` extracted (once) into ``out``."""
    for candidate in (root / name, out / name):
        if candidate.is_dir():
            return candidate
    tarball = root / TARBALLS[name]
    if not tarball.is_file():
        raise FileNotFoundError(f"{root}: neither {name}/ nor {TARBALLS[name]} is here")
    out.mkdir(parents=True, exist_ok=True)
    # Extract beside the destination and rename, so an interrupted run leaves no half folder behind.
    staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=out))
    try:
        print(f"extracting {tarball} -> {out}", file=sys.stderr)
        safe_extract(tarball, staging, hint="the copy may be damaged")
        if not (staging / name).is_dir():
            raise FileNotFoundError(f"{tarball}: no {name}/ folder in the archive")
        (staging / name).rename(out / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out / name


def _index(folder: Path, suffix: str) -> dict[str, Path]:
    """File stem -> path for every file below ``folder`` (robust to how the sub-folders are named)."""
    return {path.stem: path.resolve() for path in sorted(folder.rglob(f"*{suffix}"))}


def group_stroke_files(files: dict[str, Path]) -> dict[str, dict[int, Path]]:
    """Form id -> {line number: stroke file} from stem -> path (stems like ``a01-000u-01``)."""
    forms: dict[str, dict[int, Path]] = {}
    for stem, path in files.items():
        match = _LINE_ID.match(stem)
        if match:
            forms.setdefault(match["form"], {})[int(match["number"])] = path
    return forms


def _align(form: str, texts: list[str], numbers: list[int]) -> list[str] | None:
    """Texts to pair with stroke files 1..N, or None when the two cannot be lined up safely."""
    if not numbers or max(numbers) <= len(texts):
        return texts
    repaired = [part for line in texts for part in _LINE_BREAK_MARK.split(line) if part]
    if max(numbers) <= len(repaired) and len(repaired) != len(texts):
        print(f"iam-ondb {form}: split a CSR line at its '%%%' mark to pair {len(repaired)} ink lines", file=sys.stderr)
        return repaired
    return None


def read_split(
    split_list: Path,
    strokes: dict[str, dict[int, Path]],
    ascii_files: dict[str, Path],
    validate: bool = True,
) -> tuple[list[dict[str, Any]], Counter[str]]:
    """Manifest entries for one split list, and the count of skipped lines by reason.

    With ``validate`` every stroke file is parsed, so that unreadable ink is skipped here rather than
    failing a training run.
    """
    entries: list[dict[str, Any]] = []
    skipped: Counter[str] = Counter()
    for form, wanted in read_split_list(split_list):
        files = strokes.get(form, {})
        if form not in ascii_files:
            lost = 1 if wanted is not None else max(len(files), 1)
            skipped["form without ascii file" if files else "form not found"] += lost
            continue
        texts = read_transcriptions(ascii_files[form])
        aligned = _align(form, texts, list(files))
        if aligned is None:
            print(
                f"warning: {ascii_files[form]}: {len(texts)} text lines but stroke files up to "
                f"{max(files):02d}; skipping the form",
                file=sys.stderr,
            )
            skipped["text/ink line count mismatch"] += len(files)
            continue
        numbers = [wanted] if wanted is not None else range(1, max(len(aligned), max(files, default=0)) + 1)
        for number in numbers:
            line_id = f"{form}-{number:02d}"
            if number not in files:
                skipped["missing stroke file"] += 1
                continue
            if number > len(aligned) or not aligned[number - 1]:
                skipped["no transcription"] += 1
                continue
            if validate:
                try:
                    read_iam_ondb_strokes(files[number])
                except InkError as error:
                    print(f"warning: skipping {line_id}: {error}", file=sys.stderr)
                    skipped["unreadable ink"] += 1
                    continue
            entry = {"ink_filepath": str(files[number]), "line_id": line_id, "text": aligned[number - 1]}
            entries.append({**entry, "id": line_id, "form": form})
    return entries, skipped


def prepare(root: str | Path, out: str | Path, validate: bool = True) -> dict[str, Path]:
    """Write ``train.jsonl``, ``val1.jsonl``, ``val2.jsonl`` and, if ``testset_f.txt`` exists, ``test.jsonl``.

    ``root`` holds the split lists and either the ``lineStrokes/`` and ``ascii/`` folders or their
    tarballs (then extracted into ``out``). Entries hold the absolute ``ink_filepath``. IAM-OnDB's
    lineStrokes files carry no writer ids, so entries have no ``writer`` field. Returns split -> manifest.
    """
    root = Path(root).expanduser().resolve()
    out = Path(out).expanduser().resolve()
    lists: dict[str, Path] = {}
    for split, name in SPLITS.items():
        if (root / name).is_file():
            lists[split] = root / name
        elif split not in OPTIONAL_SPLITS:
            raise FileNotFoundError(f"{root / name}: IAM-OnDB split list not found")
    strokes = group_stroke_files(_index(find_folder(root, out, "lineStrokes"), ".xml"))
    ascii_files = _index(find_folder(root, out, "ascii"), ".txt")

    manifests: dict[str, Path] = {}
    owner: dict[str, str] = {}  # line id -> the first split that lists it
    for split, split_list in lists.items():
        entries, skipped = read_split(split_list, strokes, ascii_files, validate=validate)
        for entry in entries:
            if entry["id"] in owner:
                print(f"warning: {entry['id']} is in both {owner[entry['id']]} and {split}", file=sys.stderr)
            owner.setdefault(entry["id"], split)
        manifests[split] = write_manifest(out / f"{split}.jsonl", entries, relative=False)
        reasons = ", ".join(f"{count} {reason}" for reason, count in sorted(skipped.items())) or "none"
        forms = len({entry["form"] for entry in entries})
        print(
            f"iam-ondb {split} ({split_list.name}): {len(entries)} lines from {forms} forms written, "
            f"{sum(skipped.values())} skipped ({reasons}) -> {manifests[split]}"
        )
    return manifests


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--root", required=True, help="IAM-OnDB folder: split lists and lineStrokes/, ascii/ or their tarballs"
    )
    parser.add_argument("--out", required=True, help="folder for the manifests (and extracted tarballs)")
    parser.add_argument("--no-validate", action="store_true", help="do not parse every stroke file")
    args = parser.parse_args(argv)
    prepare(args.root, args.out, validate=not args.no_validate)


if __name__ == "__main__":
    main()
