"""CMU AN4 ("census") speech corpus: read CMU's layout, split off ESPnet's dev100, write manifests.

Layout (as in CMU's ``an4_sphere.tar.gz``, under a top folder ``an4/``)::

    etc/an4_train.transcription   <s> ERASE I S L F THIRTY EIGHT </s> (an311-fkai-b)
    etc/an4_train.fileids         an4_clstk/fkai/an311-fkai-b
    etc/an4_test.transcription    (held-out split; read when present)
    etc/an4_test.fileids
    wav/an4_clstk/<speaker>/<uttid>.sph   (or .wav in converted copies)
    wav/an4test_clstk/<speaker>/<uttid>.sph

Usage: ``python -m recognizer.corpora.an4 --root data/an4 --out data/an4/manifests``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path, PurePosixPath

import soundfile

from recognizer.corpora.archive import check_member as _check_member  # noqa: F401  (kept importable from here)
from recognizer.corpora.archive import safe_extract as _safe_extract
from recognizer.manifest import write_manifest

AN4_URL = "http://www.speech.cs.cmu.edu/databases/an4/an4_sphere.tar.gz"

SPLITS = ("train", "test")
# CMU's tarball has SPHERE audio, converted copies (e.g. the Sphinx tutorial's) have WAV.
AUDIO_EXTENSIONS = (".wav", ".sph")
# The tag pair is optional so that transcriptions exported without sentence markers still read.
_TRANSCRIPT_LINE = re.compile(r"^(?:<s>\s+)?(?P<text>.*?)\s*(?:</s>)?\s*\((?P<id>[^()\s]+)\)$")
_PROGRESS_MIN_BYTES = 8 << 20


def read_split(root: Path, split: str) -> list[dict]:
    """Read one AN4 split (``"train"`` or ``"test"``) from a corpus folder holding ``etc/`` and ``wav/``.

    Returns one entry per utterance, in the corpus's order: ``id`` (``speaker-uttid``),
    ``audio_filepath`` (absolute), ``duration`` (seconds), ``text`` and ``speaker``.
    Raises ValueError for a malformed line or a transcription that disagrees with the fileids list
    (the message names the file and line), FileNotFoundError for missing lists or audio.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown AN4 split {split!r}; expected one of {', '.join(SPLITS)}")
    root = Path(root).expanduser().resolve()
    transcription = root / "etc" / f"an4_{split}.transcription"
    fileids = root / "etc" / f"an4_{split}.fileids"
    for path in (transcription, fileids):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: AN4 {split} list not found")

    transcripts = _read_transcription(transcription)
    ids = _read_fileids(fileids)
    for index in range(max(len(transcripts), len(ids))):
        if index >= len(transcripts):
            line, _ = ids[index]
            raise ValueError(
                f"{fileids}:{line}: more file ids ({len(ids)}) than transcripts ({len(transcripts)}) in {transcription}"
            )
        if index >= len(ids):
            line, _, _ = transcripts[index]
            raise ValueError(
                f"{transcription}:{line}: more transcripts ({len(transcripts)}) than file ids ({len(ids)}) in {fileids}"
            )
        t_line, uttid, _ = transcripts[index]
        f_line, fileid = ids[index]
        if PurePosixPath(fileid).stem != uttid:
            raise ValueError(
                f"{fileids}:{f_line}: file id {fileid!r} does not match utterance {uttid!r} at {transcription}:{t_line}"
            )

    entries = []
    seen: dict[str, str] = {}
    for (_, uttid, text), (f_line, fileid) in zip(transcripts, ids):
        speaker = PurePosixPath(fileid).parent.name
        key = f"{speaker}-{uttid}"
        where = f"{fileids}:{f_line}"
        if key in seen:
            raise ValueError(f"{where}: utterance {key!r} already listed at {seen[key]}")
        seen[key] = where
        audio = _find_audio(root / "wav", fileid)
        if audio is None:
            expected = root / "wav" / PurePosixPath(fileid).with_suffix(AUDIO_EXTENSIONS[0])
            raise FileNotFoundError(
                f"{where}: no audio for {key}: expected {expected} (or {expected.with_suffix('.sph').name})"
            )
        entries.append(
            {"id": key, "audio_filepath": str(audio), "duration": _duration(audio), "text": text, "speaker": speaker}
        )
    return entries


def split_dev(entries: list[dict], num_dev: int = 100) -> tuple[list[dict], list[dict]]:
    """Split off ESPnet's ``dev100``: sort by ``id`` (``speaker-uttid``); the first ``num_dev`` are dev.

    Returns ``(train, dev)``, both sorted by id. On AN4's training list this keeps dev speakers out of train.
    """
    if not 0 <= num_dev <= len(entries):
        raise ValueError(f"cannot split {num_dev} dev utterances off {len(entries)}")
    ordered = sorted(entries, key=lambda entry: entry["id"])
    return ordered[num_dev:], ordered[:num_dev]


def download(root: Path, url: str = AN4_URL) -> Path:
    """Download CMU's AN4 tarball into ``root``, extract it there, and return the folder holding ``etc/``.

    Any URL urllib opens works (``file://`` included). A tarball already in ``root`` is reused. Members
    that would land outside ``root`` (absolute paths, ``..``, links pointing out) reject the whole archive.
    """
    root = Path(root).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    name = PurePosixPath(urllib.parse.urlparse(url).path).name or PurePosixPath(AN4_URL).name
    tarball = root / name
    if not tarball.is_file():
        _fetch(url, tarball)

    # Extract beside the destination first so that a failed extraction leaves no half corpus for
    # prepare() to mistake for a complete one on the next run.
    staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=root))
    try:
        _safe_extract(tarball, staging)
        moved = []
        for item in sorted(staging.iterdir()):
            target = root / item.name
            if target.exists():
                raise FileExistsError(f"{target} already exists; remove it to extract {tarball} again")
            item.rename(target)
            moved.append(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)

    for candidate in [root / "an4", *moved, root]:
        if (candidate / "etc" / "an4_train.transcription").is_file():
            return candidate
    raise FileNotFoundError(f"{tarball}: no etc/an4_train.transcription in the archive")


def prepare(
    root: str | Path,
    out: str | Path,
    download_if_missing: bool = True,
    url: str = AN4_URL,
    *,
    num_dev: int = 100,
) -> dict[str, Path]:
    """Write ``train.jsonl``, ``dev.jsonl`` (ESPnet's dev100) and, if the test split exists, ``test.jsonl``.

    ``root`` is the corpus folder (holding ``etc/``) or the folder a previous download went into.
    If neither holds the corpus it is downloaded from ``url`` when ``download_if_missing``.
    Returns split name -> manifest path.
    """
    root = Path(root).expanduser()
    out = Path(out).expanduser()
    corpus = _find_corpus(root)
    if corpus is None:
        if not download_if_missing:
            raise FileNotFoundError(
                f"{root}: no AN4 corpus here (expected etc/an4_train.transcription); "
                f"download {url} and extract it, or allow downloading"
            )
        corpus = download(root, url)

    train, dev = split_dev(read_split(corpus, "train"), num_dev)
    splits = {"train": train, "dev": dev}
    if (corpus / "etc" / "an4_test.transcription").is_file():
        splits["test"] = read_split(corpus, "test")
    elif (out / "test.jsonl").exists():
        # Left alone (it may be wanted), but it cannot have come from this corpus copy.
        print(f"warning: {out / 'test.jsonl'} is not from {corpus}, which has no test split", file=sys.stderr)

    manifests = {}
    for split, entries in splits.items():
        # Absolute paths: the corpus usually lives outside the manifest folder.
        manifests[split] = write_manifest(out / f"{split}.jsonl", entries, relative=False)
        hours = sum(entry["duration"] for entry in entries) / 3600
        print(f"an4 {split}: {len(entries)} utterances, {hours:.2f} h -> {manifests[split]}")
    return manifests


def _read_transcription(path: Path) -> list[tuple[int, str, str]]:
    """(line number, utterance id, text) per non-blank line."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            line = line.strip()
            if not line:
                continue
            match = _TRANSCRIPT_LINE.match(line)
            if match is None:
                raise ValueError(f"{path}:{number}: expected '<s> TEXT </s> (utterance-id)', got {line!r}")
            text = " ".join(match["text"].split())
            if not text:
                raise ValueError(f"{path}:{number}: empty transcript for {match['id']!r}")
            rows.append((number, match["id"], text))
    return rows


def _read_fileids(path: Path) -> list[tuple[int, str]]:
    """(line number, file id such as ``an4_clstk/fkai/an311-fkai-b``) per non-blank line."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            fileid = line.strip()
            if not fileid:
                continue
            parts = PurePosixPath(fileid).parts
            # The speaker is the folder above the utterance; ids climbing out of wav/ would escape the corpus.
            if len(parts) < 2 or fileid.startswith("/") or ".." in parts or len(fileid.split()) != 1:
                raise ValueError(f"{path}:{number}: expected '<folder>/<speaker>/<utterance-id>', got {fileid!r}")
            rows.append((number, fileid))
    return rows


def _find_audio(wav_root: Path, fileid: str) -> Path | None:
    stem = wav_root / PurePosixPath(fileid)
    if stem.suffix.lower() in AUDIO_EXTENSIONS and stem.is_file():
        return stem
    for extension in AUDIO_EXTENSIONS:
        path = stem.with_name(stem.name + extension)
        if path.is_file():
            return path
    return None


def _duration(path: Path) -> float:
    try:
        info = soundfile.info(str(path))
    except RuntimeError as error:  # soundfile.LibsndfileError derives from it
        raise ValueError(
            f"{path}: cannot read audio ({error}); shorten-compressed SPHERE files must be "
            f"decompressed first (e.g. sph2pipe -f wav)"
        ) from None
    if info.frames <= 0:
        raise ValueError(f"{path}: empty audio")
    return info.frames / info.samplerate


def _find_corpus(root: Path) -> Path | None:
    for candidate in (root, root / "an4"):
        if (candidate / "etc" / "an4_train.transcription").is_file():
            return candidate
    return None


def _fetch(url: str, path: Path) -> None:
    """Download to ``<path>.part`` and rename, so an interrupted download is never taken for the tarball."""
    partial = path.with_name(path.name + ".part")
    print(f"downloading {url} -> {path}", file=sys.stderr)
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(partial, "wb") as f:
            total = int(response.headers.get("Content-Length") or 0)
            done, shown = 0, -1
            while chunk := response.read(1 << 20):
                f.write(chunk)
                done += len(chunk)
                if total >= _PROGRESS_MIN_BYTES and (percent := 100 * done // total) // 10 > shown:
                    shown = percent // 10
                    print(f"  {percent:3d}% of {total / 1e6:.0f} MB", file=sys.stderr)
        if total and done != total:
            raise OSError(f"{url}: got {done} of {total} bytes")
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="AN4 folder (holding etc/), or where to download it")
    parser.add_argument("--out", required=True, help="folder for train.jsonl, dev.jsonl, test.jsonl")
    parser.add_argument("--url", default=AN4_URL)
    parser.add_argument("--no-download", action="store_true", help="fail instead of downloading")
    parser.add_argument("--num-dev", type=int, default=100)
    args = parser.parse_args(argv)
    prepare(args.root, args.out, download_if_missing=not args.no_download, url=args.url, num_dev=args.num_dev)


if __name__ == "__main__":
    main()
