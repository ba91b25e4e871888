"""Running an exported ONNX model with onnxruntime and numpy alone: no torch, no Lightning.

``OnnxSession`` opens a file written by ``recognizer export`` and reads its settings (the model's
alphabet and what its graph takes); ``recognizer.onnx_model.OnnxModel`` builds on it to serve every
decoder, timestamps and ink through ``recognizer.load``. ``OnnxTranscriber`` transcribes audio with a
speech model (its graph holds the front-end) and greedy decoding, importing only onnxruntime, numpy
and soundfile besides the standard library, so a server or a short-lived process starts in a
fraction of a second::

    from recognizer.onnx_runtime import OnnxTranscriber
    print(OnnxTranscriber("an4.onnx").transcribe(["utterance.wav"])[0].text)

``recognizer-transcribe --checkpoint model.onnx`` takes this path whenever it gives the same result
(``transcripts.torch_free``: a speech model, greedy decoding, no timestamps, the CPU); anything else goes through
``recognizer.transcribe``. Audio at another rate than the model's is resampled with torchaudio, as
training did, so only then is torch imported.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from .artifacts import (
    FEATURES,
    ONNX_METADATA_KEY,
    WAVEFORM,
    CheckpointError,
    check_model_version,
    first_line,
)
from .batching import DEFAULT_MAX_FRAMES, forward_batches
from .ctc import best_path
from .environment import import_torchaudio
from .tokenizer import Tokenizer
from .transcripts import (
    DEFAULT_CHUNK,
    OnError,
    ResultWriter,
    Transcript,
    as_list,
    check_on_error,
    check_source,
    on_error_of,
    progress_bar,
    show_progress,
    source_name,
    torch_free_parser,
    write_all,
)
from .waveform import AUDIO_SUFFIXES, check_window, read_input

#: where a container's CPU quota is set: cgroup v2 (``cpu.max``: "quota period" or "max period"), v1
CPU_QUOTA_FILES = (Path("/sys/fs/cgroup/cpu.max"), Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"))


def cpu_quota(files: Sequence[Path] = CPU_QUOTA_FILES) -> float | None:
    """The CPUs a container's quota allows (e.g. 2.0 for ``docker run --cpus 2``), or None if unset."""
    for path in files:
        try:
            fields = path.read_text().split()
            if path.name == "cpu.max":
                quota, period = fields[0], fields[1]
            else:  # cgroup v1: the period is in the file beside it
                quota, period = fields[0], (path.parent / "cpu.cfs_period_us").read_text().split()[0]
            if quota in ("max", "-1"):
                return None
            return int(quota) / int(period)
        except (OSError, ValueError, IndexError, ZeroDivisionError):
            continue
    return None


def available_cpus() -> int:
    """The CPUs this process may use: its affinity mask (which ``taskset`` narrows), within its
    container's CPU quota (which the mask does not show)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    quota = cpu_quota()
    return max(1, min(cpus, math.ceil(quota)) if quota is not None else cpus)


class OnnxSession:
    """An ONNX file written by ``recognizer export``, open in onnxruntime, with its settings checked.

    Each run of the graph uses one thread, and ``threads`` batches (None: one per CPU this process may
    use) run at once (``batching.forward_batches``' workers): a recurrent graph takes a small matrix
    product per time step, which one core does about as fast as two (15 against 14 ms for one AN4
    utterance), while batches on separate cores scale fully (benchmarks/RESULTS.md, "Deployment").
    """

    def __init__(self, path: str | os.PathLike, threads: int | None = None) -> None:
        import onnxruntime

        self.path = Path(path)
        if not self.path.is_file():
            raise CheckpointError(f"{self.path}: no such model file")
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be at least 1, not {threads}")
        #: how many batches run at once, each on one thread
        self.workers = threads or available_cpus()
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        try:
            self.session = onnxruntime.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime's InvalidProtobuf, Fail, ...: a truncated or foreign file
            raise CheckpointError(f"{self.path}: not a readable ONNX model ({first_line(error)})") from None
        self.settings = settings = self._settings()
        try:
            self.tokenizer = Tokenizer(**settings["tokenizer"])
            self.stride = int(settings["stride"])
            self.takes = str(settings["input"])
            if self.takes not in (WAVEFORM, FEATURES):
                raise ValueError(f"input {self.takes!r}")
            #: what the graph's time axis counts per feature frame: samples of a waveform, or 1
            self.rows_per_frame = int(settings["rows_per_frame"])
            if not isinstance(settings["frontend"], dict):
                raise ValueError(f"frontend {settings['frontend']!r}")
        except (KeyError, TypeError, ValueError) as error:
            self.unusable(error)
        inputs = sorted(i.name for i in self.session.get_inputs())
        if inputs != sorted([self.takes, "lengths"]):
            raise CheckpointError(
                f"{self.path}: its graph takes {inputs}, not the [{self.takes!r}, 'lengths'] its settings say"
            )

    def unusable(self, error: BaseException) -> NoReturn:
        """Raise the error of settings that cannot be used, naming the file."""
        raise CheckpointError(f"{self.path}: its recognizer settings are unusable ({first_line(error)})") from None

    def _settings(self) -> dict[str, Any]:
        stored = self.session.get_modelmeta().custom_metadata_map.get(ONNX_METADATA_KEY)
        if stored is None:
            raise CheckpointError(
                f"{self.path}: an ONNX model without recognizer settings (not written by `recognizer export`)"
            )
        try:
            settings = json.loads(stored)
        except ValueError as error:
            raise CheckpointError(f"{self.path}: its recognizer settings are not JSON ({error})") from None
        if not isinstance(settings, dict):
            raise CheckpointError(f"{self.path}: its recognizer settings are not a JSON object")
        check_model_version(self.path, settings.get("format"), settings.get("version"))
        return settings

    def run(self, inputs: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A padded batch (float32) and its lengths -> log-probabilities (batch, frames, vocab) and lengths."""
        log_probs, out_lengths = self.session.run(
            None, {self.takes: inputs.astype(np.float32, copy=False), "lengths": lengths.astype(np.int64)}
        )
        return log_probs, out_lengths

    def outputs(self, rows: list[np.ndarray]) -> list[np.ndarray]:
        """Inputs of any lengths through the graph as one padded batch: each one's log-probabilities."""
        lengths = np.array([len(r) for r in rows], dtype=np.int64)
        padded = np.zeros((len(rows), int(lengths.max()), *rows[0].shape[1:]), dtype=np.float32)
        for i, r in enumerate(rows):
            padded[i, : len(r)] = r
        log_probs, out_lengths = self.run(padded, lengths)
        return [row[:n].copy() for row, n in zip(log_probs, out_lengths.tolist())]  # copies: not views of the batch


class OnnxTranscriber:
    """A speech model's ONNX file transcribing audio with greedy decoding, numpy and onnxruntime only
    (see the module docstring). Inputs and results are those of ``Recognizer.transcribe`` (which also
    offers the other decoders and timestamps)."""

    def __init__(self, model: str | os.PathLike | OnnxSession, threads: int | None = None) -> None:
        self.model = model if isinstance(model, OnnxSession) else OnnxSession(model, threads)
        if self.model.takes != WAVEFORM:
            raise CheckpointError(
                f"{self.model.path}: not a speech model (its graph takes {self.model.takes}): use recognizer.load"
            )
        try:
            self.sample_rate = int(self.model.settings["frontend"]["sample_rate"])
            self.window_ms = float(self.model.settings["frontend"]["window_ms"])
        except (KeyError, TypeError, ValueError) as error:
            self.model.unusable(error)

    def read(self, source: Any) -> np.ndarray:
        """One input's waveform at the model's rate, as ``AudioFrontend.load`` reads it."""
        check_source(source, AUDIO_SUFFIXES, "audio")
        samples, rate, name = read_input(source, self.sample_rate)
        if rate != self.sample_rate:  # rare: resample exactly as training did, with torchaudio
            from .audio import resampled

            samples = resampled(samples, rate, self.sample_rate).numpy()
        check_window(len(samples), self.sample_rate, self.window_ms, name)
        return samples

    def transcribe(self, inputs: Sequence[Any], **options: Any) -> list[Transcript]:
        """Transcripts of ``inputs`` in their order (the options of ``transcribe_iter``)."""
        inputs = as_list(inputs)
        results: list[Transcript | None] = [None] * len(inputs)
        for index, transcript in self.transcribe_iter(inputs, **options):
            results[index] = transcript
        return results  # type: ignore[return-value]  # all set

    def transcribe_iter(
        self,
        inputs: Sequence[Any],
        *,
        max_frames: int = DEFAULT_MAX_FRAMES,
        progress: bool = False,
        on_error: OnError = "raise",
        chunk: int = DEFAULT_CHUNK,
    ) -> Iterator[tuple[int, Transcript]]:
        """``(input index, Transcript)`` as each batch finishes, reading ``chunk`` inputs at a time;
        ``on_error="skip"`` gives an unusable input a ``Transcript`` whose ``error`` says why."""
        check_on_error(on_error)
        inputs, chunk = as_list(inputs), max(1, chunk)
        with progress_bar(len(inputs), progress) as bar:
            for start in range(0, len(inputs), chunk):
                indices, waveforms = [], []
                for index in range(start, min(start + chunk, len(inputs))):
                    try:
                        waveforms.append(self.read(inputs[index]))
                        indices.append(index)
                    except (ValueError, OSError) as error:
                        if on_error == "raise":
                            raise
                        bar.update(1)
                        yield index, Transcript.failure(source_name(inputs, index), error)
                for batch, outputs in forward_batches(
                    waveforms,
                    self.model.outputs,
                    np.concatenate,
                    max_frames,
                    self.model.rows_per_frame,
                    self.model.stride,
                    workers=self.model.workers,
                ):
                    for position, output in zip(batch, outputs):
                        ((labels, score),) = best_path(output[None], [len(output)])
                        index = indices[position]
                        yield index, Transcript(source_name(inputs, index), self.model.tokenizer.decode(labels), score)
                    bar.update(len(batch))


def main(argv: Sequence[str] | None = None) -> int:
    """``recognizer-transcribe`` for the arguments ``transcripts.torch_free`` accepts: the same
    transcripts, errors and exit status as ``recognizer.transcribe.main``."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = torch_free_parser(argparse.ArgumentParser(prog="recognizer-transcribe", allow_abbrev=False))
    args = parser.parse_args(argv)
    if args.resume and not args.output:
        parser.error("--resume needs --output")
    output = ResultWriter(args.output, args.resume)  # before the model: an unwritable path fails first
    try:
        session = OnnxSession(args.checkpoint)
        if session.takes != WAVEFORM:  # an ink model: its front-end runs in torch
            output.close()
            return _with_torch(argv)
        transcriber = OnnxTranscriber(session)
    except BaseException:
        output.close()
        raise
    inputs = [i for i in args.files if i not in output.done]
    results = transcriber.transcribe_iter(
        inputs,
        max_frames=args.max_frames,
        progress=show_progress(inputs),
        on_error=on_error_of(args),
    )
    return write_all(results, output, len(inputs))


def _with_torch(argv: Sequence[str]) -> int:
    import_torchaudio()  # a torch/torchaudio mismatch is one clear error here too
    from . import transcribe

    return transcribe.main(argv)
