"""What every runtime of transcription shares: its inputs (sources, their checks and names), the
result of one input (``Transcript``), the JSON-lines writer with ``--resume`` (``ResultWriter``),
``recognizer-transcribe``'s arguments other than decoding, its exit status, and which runtime its
arguments allow (``torch_free``). Without torch, so that an ONNX model transcribes without it
(``recognizer.onnx_runtime``)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, NoReturn, Protocol

from .artifacts import ONNX_SUFFIX, one_line
from .batching import DEFAULT_MAX_FRAMES

DEFAULT_CHUNK = 256  # inputs whose features are held in memory at once
#: what to do with an input that cannot be read: stop, or record its error and go on
OnError = Literal["raise", "skip"]
#: the decoder of the torch-free runtime (``recognizer.decoding``'s ``greedy``, the default)
GREEDY = "greedy"


class Progress(Protocol):
    def update(self, n: int = 1) -> object: ...


class _Hidden:
    """The progress of a bar that is not drawn."""

    def update(self, n: int = 1) -> None:
        pass


@contextmanager
def progress_bar(total: int, shown: bool) -> Iterator[Progress]:
    """tqdm's bar over ``total`` inputs on stderr when ``shown``, else one that draws nothing; tqdm is
    imported only to draw (it takes 40 ms, a tenth of a torch-free run's start-up)."""
    if not shown:
        yield _Hidden()
        return
    from tqdm import tqdm

    with tqdm(total=total, desc="transcribing", unit="input", file=sys.stderr, leave=False) as bar:
        yield bar


def show_progress(inputs: Sequence[Any]) -> bool:
    """Whether ``recognizer-transcribe`` draws a progress bar: several inputs, and stderr a terminal
    (a log file or a pipe would get every redraw)."""
    return len(inputs) > 1 and sys.stderr.isatty()


def warn(message: str) -> None:
    """One line on stderr, above a progress bar if one is drawn."""
    tqdm = sys.modules.get("tqdm")  # imported only where a bar is drawn (``progress_bar``)
    if tqdm is None:
        print(message, file=sys.stderr, flush=True)
    else:
        tqdm.tqdm.write(message, file=sys.stderr)


@dataclass
class Transcript:
    """One input's transcription.

    ``source`` is its path, or ``<array N>`` for in-memory input; ``score`` the log-probability of the
    best hypothesis; ``nbest`` the alternatives (``{"text", "score"}``, best first) when more than one
    was asked for; ``words`` the word timestamps and confidences (``{"word", "start", "end",
    "confidence"}``, in ``unit``: seconds for audio, indices of the ink's points as read for ink) when asked for;
    ``error`` the one-line reason an input failed (with ``on_error="skip"``); ``lines`` the transcript of
    each text line (same fields) when an ink held several lines, which ``text`` then joins with newlines
    (``score`` their sum, ``words`` all of them; n-best lists are per line).
    """

    source: str
    text: str | None
    score: float | None = None
    nbest: list[dict[str, Any]] | None = None
    words: list[dict[str, Any]] | None = None
    unit: str | None = None
    #: why this input could not be transcribed (``text`` is then None); set only with ``on_error="skip"``
    error: str | None = None
    lines: list[dict[str, Any]] | None = None

    @classmethod
    def failure(cls, source: str, error: BaseException) -> Transcript:
        """The record of an input that could not be transcribed (``on_error="skip"``)."""
        return cls(source=source, text=None, error=one_line(error))

    def to_dict(self) -> dict[str, Any]:
        """The fields that are set, for JSON."""
        return {key: value for key, value in asdict(self).items() if value is not None}

    @classmethod
    def joined(cls, lines: list[Transcript]) -> Transcript:
        """One input's transcript from the transcripts of its lines, top to bottom."""
        words = [word for line in lines for word in line.words or []]
        return cls(
            source="",
            text="\n".join(line.text or "" for line in lines),
            score=sum(line.score or 0.0 for line in lines),
            words=words if any(line.words is not None for line in lines) else None,
            unit=lines[0].unit,
            lines=[{key: value for key, value in line.to_dict().items() if key != "source"} for line in lines],
        )


def on_error_of(args: argparse.Namespace) -> OnError:
    """``--on-error``'s choice (skip, stop) as the ``on_error`` of transcription (skip, raise)."""
    return "skip" if args.on_error == "skip" else "raise"


def check_on_error(on_error: str) -> None:
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error={on_error!r}: expected 'raise' or 'skip'")


def split_sample(source: str | os.PathLike) -> tuple[Path, str | None]:
    """``page.inkml#line3`` -> (``page.inkml``, ``"line3"``): a sample inside a multi-sample file. A
    path that names an existing file is taken whole, even with a ``#`` in its name."""
    path = Path(source)
    if "#" in path.name and not path.is_file():
        file, _, sample = str(source).rpartition("#")
        return Path(file), sample
    return path, None


def check_source(source: Any, suffixes: Sequence[str], modality: str) -> None:
    """An input given as a path (``page.inkml#id`` for a sample inside a file) must be an existing
    file of a kind the model reads; in-memory inputs are checked by their front-end."""
    if not isinstance(source, (str, os.PathLike)):
        return
    path, _ = split_sample(source)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    if path.suffix.lower() not in suffixes:
        raise ValueError(f"{path}: the checkpoint is a {modality} model, which reads {', '.join(suffixes)} files")


def as_list(inputs: Sequence[Any]) -> list[Any]:
    """The inputs as a list; a lone path or string is a mistake that would be read character by character."""
    if isinstance(inputs, (str, bytes, os.PathLike)):
        raise TypeError(
            f"inputs must be a list of inputs, got a single {type(inputs).__name__}: pass [{str(inputs)!r}]"
        )
    return list(inputs)


def source_name(inputs: Sequence[Any], index: int) -> str:
    """What a transcript calls its input: the path, or ``<array N>`` for in-memory input N."""
    source = inputs[index]
    return str(source) if isinstance(source, (str, os.PathLike)) else f"<array {index}>"


#: exit status when some inputs failed and were recorded (``--on-error skip``); 1 is a failure of the run
SOME_FAILED = 3


class ResultWriter:
    """Where results go as each batch finishes: ``path<TAB>text`` lines on stdout, or JSON lines in a
    file (flushed per batch). Opened before the model loads, so an unwritable path fails first."""

    def __init__(self, path: str | None, resume: bool) -> None:
        self.path = Path(path) if path else None
        self.done: set[str] = set()
        self._file = None
        if self.path is None:
            return
        if resume and self.path.is_file():
            self.done = completed_sources(self.path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Append mode: an existing file is emptied only at the first result, not when a later
            # step (loading the checkpoint) fails.
            self._file = open(self.path, "a", encoding="utf-8")
        except OSError as error:
            raise OSError(f"{self.path}: cannot write the output ({error.strerror or error})") from None
        self._truncate = not resume

    def write(self, transcript: Transcript) -> None:
        if transcript.error is not None:
            warn(f"recognizer-transcribe: {transcript.error}")
        if self._file is None:
            if transcript.error is None:  # one row per text line: an ink of several lines gives several
                print(
                    "\n".join(f"{transcript.source}\t{line}" for line in (transcript.text or "").split("\n")),
                    flush=True,
                )
        else:
            if self._truncate:
                self._file.truncate(0)
                self._truncate = False
            self._file.write(json.dumps(transcript.to_dict(), ensure_ascii=False) + "\n")
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def completed_sources(path: Path) -> set[str]:
    """Sources already in a JSON-lines output (results and error records alike). A last line cut
    short by a kill (no newline) is removed, so that input is done again."""
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        data = data[: data.rfind(b"\n") + 1]
        with open(path, "rb+") as f:
            f.truncate(len(data))
    done = set()
    for number, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            done.add(json.loads(line)["source"])
        except (ValueError, KeyError, TypeError):
            raise ValueError(
                f"{path}:{number}: not a recognizer-transcribe result line; cannot --resume into this file"
            ) from None
    return done


def add_io_arguments(parser: argparse.ArgumentParser) -> None:
    """``recognizer-transcribe``'s arguments other than the decoder's (``decoding.arguments``)."""
    parser.add_argument(
        "files", nargs="+", help="input files (audio for a speech model; ink, with page.inkml#id for one sample)"
    )
    parser.add_argument(
        "--checkpoint",
        required=True,
        help="a .ckpt written by `recognizer fit`, or a model file or .onnx written by `recognizer export`",
    )
    parser.add_argument(
        "--output",
        help="write JSON lines here (flushed after every batch) instead of printing `path<TAB>text` "
        "(one row per text line of an ink written over several lines)",
    )
    parser.add_argument("--resume", action="store_true", help="with --output: append, skipping inputs already in it")
    parser.add_argument(
        "--on-error",
        choices=("skip", "stop"),
        default="skip",
        help="skip (default): report an unusable input (stderr, and a {source, error} line in --output), "
        "go on, exit 3 at the end (1 if all failed); stop: exit 1 at the first one",
    )
    parser.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    parser.add_argument("--timestamps", action="store_true", help="word timestamps and confidences (JSON output)")
    parser.add_argument("--max-frames", type=int, default=DEFAULT_MAX_FRAMES, help="feature frames per batch")
    parser.add_argument(
        "--no-split-lines",
        action="store_true",
        help="read each ink as one text line (by default an ink written over several lines is read line by line)",
    )


def write_all(results: Iterable[tuple[int, Transcript]], output: ResultWriter, total: int) -> int:
    """Write each result as it comes; the exit status of ``recognizer-transcribe``: 0 when every one
    of the ``total`` inputs was transcribed, ``SOME_FAILED`` when some (not all) failed, else 1."""
    failed = 0
    try:
        for _, transcript in results:  # batch by batch, as each finishes
            output.write(transcript)
            failed += transcript.error is not None
    finally:
        output.close()
    if failed:
        print(f"recognizer-transcribe: {failed} of {total} input(s) failed", file=sys.stderr)
        return 1 if failed == total else SOME_FAILED
    return 0


class _Quiet(argparse.ArgumentParser):
    """A parser that raises instead of printing usage and exiting: ``torch_free`` only asks."""

    def error(self, message: str) -> NoReturn:
        raise ValueError(message)


def torch_free_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``parser`` with the arguments of ``recognizer-transcribe`` that the torch-free runtime takes."""
    add_io_arguments(parser)
    parser.add_argument("--decoder", choices=[GREEDY], default=GREEDY)
    return parser


def torch_free(argv: Sequence[str]) -> bool:
    """Whether ``recognizer-transcribe`` with these arguments can run without torch
    (``recognizer.onnx_runtime``): an ``.onnx`` model, greedy decoding, no timestamps, the CPU, and
    nothing else asked of the decoder. (A model that turns out not to be a speech model is handed to
    ``recognizer.transcribe`` by ``onnx_runtime.main``.)"""
    try:
        args = torch_free_parser(_Quiet(add_help=False, allow_abbrev=False)).parse_args(argv)
    except ValueError:  # an option of another decoder, --help, or a mistake the full parser will report
        return False
    return (
        Path(args.checkpoint).suffix.lower() == ONNX_SUFFIX
        and not args.timestamps
        and args.device in (None, "cpu")
        and not (args.resume and not args.output)
    )
