"""Transcription: ``recognizer.load(checkpoint).transcribe(inputs)`` and ``recognizer-transcribe``.

A checkpoint is self-contained: it carries the tokenizer, the front-end settings and the weights.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch

from .artifacts import ONNX_SUFFIX
from .batching import DEFAULT_MAX_FRAMES, GPU_STEP_COST, STEP_COST, budget_batches, forward_batches
from .decoding import (
    DEFAULT_DECODER,
    Decoder,
    DecodingOptions,
    WordSpan,
    align_chars,
    align_words,
    build_decoder,
    forced_align,
    place_spans,
    scale_spans,
)
from .decoding.arguments import add_decoding_arguments, decoding_options
from .model import Model
from .transcripts import (
    DEFAULT_CHUNK,
    OnError,
    Progress,
    ResultWriter,
    Transcript,
    add_io_arguments,
    as_list,
    check_on_error,
    check_source,
    on_error_of,
    progress_bar,
    show_progress,
    source_name,
    write_all,
)

if TYPE_CHECKING:
    from .onnx_model import OnnxModel
    from .streaming import StreamSession


class _Part(NamedTuple):
    """What the model made of one part of an input (the input whole, or one of its text lines)."""

    input: int  # the input's index
    part: int
    parts: int
    output: torch.Tensor | BaseException  # log-probabilities, or why the input could not be read
    boundaries: np.ndarray | None  # Frontend.frame_boundaries, in the whole input's points


#: output frames (count x longest) per batch of decoding: the searches run utterance by utterance, so this
#: only bounds the padded log-probabilities a batch holds (the beam search's float64 copy: 8 bytes x labels
#: per frame, 24 MiB for 30 labels)
DECODE_MAX_FRAMES = 100_000


class Recognizer:
    """A trained model ready to transcribe files or arrays of its modality: a ``Model`` (from a training
    checkpoint or a model file) on ``device``, or an ``OnnxModel`` (onnxruntime, on the CPU)."""

    def __init__(self, model: Model | OnnxModel, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        if not isinstance(model, torch.nn.Module) and self.device.type != "cpu":
            raise ValueError(f"{model.path}: an ONNX model runs on the CPU here, not on {self.device}")
        self.model = model.to(self.device).eval() if isinstance(model, torch.nn.Module) else model
        self.frontend = model.frontend
        self.tokenizer = model.tokenizer

    @property
    def module(self) -> Model | OnnxModel:
        """The model, under its name before model files and ONNX (deprecated: use ``model``)."""
        warnings.warn("Recognizer.module is now Recognizer.model", DeprecationWarning, stacklevel=2)
        return self.model

    @property
    def modality(self) -> str:
        return self.frontend.modality

    @property
    def stride(self) -> int:
        """Feature frames per output frame of the encoder."""
        return self.model.stride

    @property
    def frame_duration(self) -> float:
        """Timestamp units (``frontend.timestamp_unit``: seconds, or ink points) per output frame."""
        return self.frontend.frame_unit * self.stride

    def check_source(self, source: Any) -> None:
        """A path must name an existing file of this model's modality (in-memory inputs are the front-end's)."""
        check_source(source, self.frontend.suffixes, self.modality)

    def _features(self, source: Any, split: bool, timestamps: bool) -> list[tuple[torch.Tensor, np.ndarray | None]]:
        """The features of each part of the input (its text lines with ``split``, else the input whole)
        and, with ``timestamps``, their frame boundaries in the whole input (None when evenly spaced;
        asked only then: a Bézier front-end would fit the ink's curves a second time)."""
        self.check_source(source)
        parts = self.frontend.load_parts(source) if split else [(self.frontend.load(source), None)]
        features = []
        for raw, points in parts:
            boundaries = self.frontend.frame_boundaries(raw) if timestamps else None
            if boundaries is not None and points is not None:  # a line's points -> the whole ink's
                boundaries = np.append(points, points[-1] + 1)[boundaries]
            features.append((self.model.prepare(raw), boundaries))
        return features

    @torch.no_grad()
    def transcribe(
        self, inputs: Sequence[Any], decoder: str | DecodingOptions | Decoder = DEFAULT_DECODER, **kwargs: Any
    ) -> list[Transcript]:
        """Transcribe paths or in-memory inputs in batches of similar length; results keep the input
        order. Takes the arguments of ``transcribe_iter``, e.g.
        ``transcribe(files, "beam", beam_size=8, nbest=3, timestamps=True, on_error="skip")``."""
        inputs = as_list(inputs)  # once: a generator would be empty the second time
        results: list[Transcript | None] = [None] * len(inputs)
        for index, transcript in self.transcribe_iter(inputs, decoder, **kwargs):
            results[index] = transcript
        return results  # type: ignore[return-value]

    @torch.no_grad()
    def transcribe_iter(
        self,
        inputs: Sequence[Any],
        decoder: str | DecodingOptions | Decoder = DEFAULT_DECODER,
        *,
        timestamps: bool = False,
        max_frames: int = DEFAULT_MAX_FRAMES,
        progress: bool = False,
        on_error: OnError = "raise",
        chunk: int = DEFAULT_CHUNK,
        split_lines: bool = True,
        **options: Any,
    ) -> Iterator[tuple[int, Transcript]]:
        """``(input index, Transcript)`` as each batch finishes (not in input order), holding the
        features of at most ``chunk`` inputs at a time: memory stays flat for any number of inputs.

        Args:
            inputs: a list of file paths, or in-memory inputs: for audio a waveform at the model's rate or a
                ``(waveform, rate)`` pair; for ink a ``recognizer.ink.Ink``.
            decoder: a registered decoder's name: ``greedy`` (best path), ``beam`` (prefix beam search) or
                ``lm`` (beam search with an n-gram LM and/or lexicon), ...; or a whole ``DecodingOptions``,
                or a decoder already built (``recognizer.decoding.build_decoder``).
            timestamps: align the best transcript to the input: word start/end and confidence.
            max_frames: feature frames per batch.
            progress: show a progress bar.
            on_error: ``raise`` stops at the first unusable input; ``skip`` gives it a ``Transcript``
                whose ``error`` says why, and goes on.
            chunk: inputs whose features are held in memory at once.
            split_lines: read an ink written over several lines one text line at a time (see
                ``Transcript``); False: each input as one line (e.g. to score line-level corpora).
            options: the decoder's options (``recognizer.decoding.BeamOptions``, ``LMOptions``, ...):
                ``beam_size``, ``nbest``, ``lm``, ``lexicon``, ``lm_weight``, ``word_score``, ``token_beam``, ...
        """
        inputs = as_list(inputs)
        built = self._decoder(decoder, options)  # built now: a bad LM or lexicon fails before the model runs
        lines: dict[int, list[Transcript | None]] = {}  # the lines decoded so far of inputs with several
        for batch in self._log_probs_iter(inputs, max_frames, progress, on_error, chunk, split_lines, timestamps):
            good = [part for part in batch if not isinstance(part.output, BaseException)]
            outputs = self.decode_log_probs(
                [part.output for part in good],  # type: ignore[misc]  # the exceptions are left out
                built,
                timestamps=timestamps,
                boundaries=[part.boundaries for part in good],
            )
            decoded = {(part.input, part.part): transcript for part, transcript in zip(good, outputs)}
            for part in batch:
                name = source_name(inputs, part.input)
                if isinstance(part.output, BaseException):
                    yield part.input, Transcript.failure(name, part.output)
                    continue
                transcript = decoded[part.input, part.part]
                if part.parts > 1:
                    done = lines.setdefault(part.input, [None] * part.parts)
                    done[part.part] = transcript
                    if any(line is None for line in done):
                        continue
                    transcript = Transcript.joined(lines.pop(part.input))  # type: ignore[arg-type]  # all set
                transcript.source = name
                yield part.input, transcript

    def stream(self, decoder: str | DecodingOptions | Decoder = DEFAULT_DECODER, **options: Any) -> StreamSession:
        """A streaming session (``recognizer.streaming``): ``feed`` it audio as it arrives, read partial
        results, ``finish`` for the transcript, decoded by ``decoder`` (as in ``transcribe``). Needs a
        speech model with a streaming encoder (``LCBLSTMEncoder``, ``LSTMEncoder``)."""
        from .streaming import StreamSession

        return StreamSession(self, self._decoder(decoder, options))

    @torch.no_grad()
    def log_probs(
        self, inputs: Sequence[Any], max_frames: int = DEFAULT_MAX_FRAMES, progress: bool = False
    ) -> list[torch.Tensor]:
        """The model's output for each input: (frames, vocab) log-probabilities on the CPU, in input order.

        Decode them with ``decode_log_probs`` (e.g. many times, with different settings, as tuning does).
        Each input is read whole: an ink is not split into text lines (``transcribe`` does that).
        """
        inputs = as_list(inputs)
        results: list[torch.Tensor | None] = [None] * len(inputs)
        for batch in self._log_probs_iter(inputs, max_frames, progress, "raise", DEFAULT_CHUNK, False, False):
            for part in batch:
                results[part.input] = part.output  # type: ignore[assignment]
        return results  # type: ignore[return-value]

    def _log_probs_iter(
        self,
        inputs: list[Any],
        max_frames: int,
        progress: bool,
        on_error: OnError,
        chunk: int,
        split: bool,
        timestamps: bool,
    ) -> Iterator[list[_Part]]:
        """Batches of parts of inputs (text lines with ``split``, else whole inputs) with their
        log-probabilities: features chunk by chunk, batched by length within a chunk; with
        ``on_error="skip"`` an unusable input comes as its exception."""
        check_on_error(on_error)
        with progress_bar(len(inputs), progress) as bar:
            yield from self._chunks(inputs, max_frames, on_error, chunk, bar, split, timestamps)

    def _chunks(
        self,
        inputs: list[Any],
        max_frames: int,
        on_error: OnError,
        chunk: int,
        bar: Progress,
        split: bool,
        timestamps: bool,
    ) -> Iterator[list[_Part]]:
        chunk = max(1, chunk)
        for start in range(0, len(inputs), chunk):
            keys, features, boundaries = [], [], []  # keys: (input, part, parts)
            unread: dict[int, int] = {}  # input -> its parts not yet through the model
            for index in range(start, min(start + chunk, len(inputs))):
                try:
                    parts = self._features(inputs[index], split, timestamps)
                except (ValueError, OSError) as error:
                    if on_error == "raise":
                        raise
                    bar.update(1)
                    yield [_Part(index, 0, 1, error, None)]
                    continue
                unread[index] = len(parts)
                for number, (feature, bounds) in enumerate(parts):
                    keys.append((index, number, len(parts)))
                    features.append(feature)
                    boundaries.append(bounds)
            # the budget counts feature frames; an exported speech graph takes samples
            step_cost = STEP_COST if self.device.type == "cpu" else GPU_STEP_COST
            for batch, outputs in forward_batches(
                features,
                self._forward,
                torch.cat,
                max_frames,
                self.model.rows_per_frame,
                self.stride,
                step_cost,
                self.model.workers,
            ):
                yield [_Part(*keys[p], output, boundaries[p]) for p, output in zip(batch, outputs)]
                finished = 0  # inputs whose last part went through the model now
                for p in batch:
                    unread[keys[p][0]] -= 1
                    finished += unread[keys[p][0]] == 0
                bar.update(finished)

    def _forward(self, rows: list[torch.Tensor]) -> list[torch.Tensor]:
        """One padded batch through the model: each input's log-probabilities, on the CPU."""
        padded, lengths = _pad(rows)
        log_probs, out_lengths = self.model(padded.to(self.device), lengths.to(self.device))
        # clone: not views that would keep the whole batch alive
        return [row[:n].clone() for row, n in zip(log_probs.cpu(), out_lengths.tolist())]

    @torch.no_grad()
    def decode_log_probs(
        self,
        log_probs: Sequence[torch.Tensor],
        decoder: str | DecodingOptions | Decoder = DEFAULT_DECODER,
        *,
        timestamps: bool = False,
        max_frames: int = DECODE_MAX_FRAMES,
        boundaries: Sequence[np.ndarray | None] | None = None,
        **options: Any,
    ) -> list[Transcript]:
        """Decode the output of ``log_probs`` (same arguments as ``transcribe``); sources are left empty.
        ``max_frames``: output frames per batch of decoding (see ``DECODE_MAX_FRAMES``).
        ``boundaries``: per input, its ``frontend.frame_boundaries`` (None: evenly spaced frames), which
        place the timestamps.

        The searches that run where their input is (greedy, beam) get the log-probabilities on the
        model's device; a decoder with a device of its own (``lm``: the CPU) gets them where they are
        and moves them itself. Timestamps are aligned on the model's device."""
        built = self._decoder(decoder, options)
        if timestamps and not self.frontend.even_frames and (boundaries is None or any(b is None for b in boundaries)):
            raise ValueError(
                f"timestamps of a {self.modality} model need each input's frame boundaries "
                "(frontend.frame_boundaries): use transcribe(..., timestamps=True)"
            )
        alternatives = getattr(built.options, "nbest", 1)  # n-best lists are given when more than one is asked for
        unit = self.frame_duration
        transcripts: list[Transcript | None] = [None] * len(log_probs)
        # the searches run one utterance at a time: batches only bound the padded copy's memory
        frames = [e.shape[0] for e in log_probs]
        for batch in budget_batches(sorted(range(len(frames)), key=frames.__getitem__), frames, max_frames):
            padded, lengths = _pad([log_probs[i] for i in batch])
            on_model = padded.to(self.device) if built.device is None or timestamps else padded
            hypotheses = built(on_model if built.device is None else padded, lengths)
            paths = forced_align(on_model, lengths, [h[0].labels for h in hypotheses]) if timestamps else None
            for position, (index, nbest) in enumerate(zip(batch, hypotheses)):
                transcript = Transcript(
                    source="",
                    text=self.tokenizer.decode(nbest[0].labels),
                    score=nbest[0].score,
                    nbest=[{"text": self.tokenizer.decode(h.labels), "score": h.score} for h in nbest]
                    if alternatives > 1
                    else None,
                )
                if paths is not None:
                    words = align_words(align_chars(paths[position], on_model[position], self.tokenizer))
                    transcript.words = [
                        {
                            "word": w.word,
                            "start": round(w.start, 3),
                            "end": round(w.end, 3),
                            "confidence": round(w.confidence, 4),
                        }
                        for w in self._place(words, unit, None if boundaries is None else boundaries[index])
                    ]
                    transcript.unit = self.frontend.timestamp_unit
                transcripts[index] = transcript
        return transcripts  # type: ignore[return-value]

    def _place(self, words: list[WordSpan], unit: float, boundaries: np.ndarray | None) -> list[WordSpan]:
        """Word spans from encoder frames to timestamp units: scaled, or looked up in the input's frame
        boundaries (encoder frame j starts at feature frame j x stride)."""
        if boundaries is None:
            return scale_spans(words, unit)
        frames = len(boundaries) - 1
        return place_spans(words, boundaries[np.minimum(np.arange(0, frames + self.stride, self.stride), frames)])

    def _decoder(self, decoder: str | DecodingOptions | Decoder, overrides: dict[str, Any]) -> Decoder:
        """The decoder for a name and options, a ``DecodingOptions`` (with options changed), or one built."""
        if isinstance(decoder, Decoder):
            if overrides:
                raise TypeError(f"options {sorted(overrides)} given with a decoder already built")
            return decoder
        if isinstance(decoder, DecodingOptions):
            options = decoder.replace(**overrides) if overrides else decoder
        else:
            options = DecodingOptions(decoder, **overrides)
        return build_decoder(options, self.tokenizer.alphabet)


def _pad(rows: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.nn.utils.rnn.pad_sequence(rows, batch_first=True), torch.tensor([r.shape[0] for r in rows])


def load(checkpoint: str | os.PathLike, device: str | torch.device | None = None) -> Recognizer:
    """Load a checkpoint written by ``recognizer fit``, a model file or an ONNX model (``.onnx``) written by
    ``recognizer export``. ``device`` defaults to CUDA when available (ONNX models: the CPU)."""
    if Path(checkpoint).suffix.lower() == ONNX_SUFFIX:
        from .onnx_model import OnnxModel  # onnxruntime only for ONNX models

        return Recognizer(OnnxModel(checkpoint), _device(device or "cpu"))
    device = _device(device)
    return Recognizer(Model.load(checkpoint, map_location=device), device)


def _device(device: str | torch.device | None) -> torch.device:
    """The device to run on (default: CUDA when available); one that does not exist is a ValueError."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"device {str(device)!r}: not a device name ({error}); use cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        count = torch.cuda.device_count()
        if count == 0 or (device.index or 0) >= count:
            raise ValueError(f"device {str(device)!r} does not exist: this machine has {count} CUDA device(s)")
    elif device.type not in ("cpu", "mps"):
        raise ValueError(f"device {str(device)!r}: unsupported; use cpu, cuda or cuda:N")
    return device


def _expand(frontend: Any, files: Sequence[str]) -> list[str]:
    """Each file's samples (several for a multi-sample InkML page); unreadable files stay as they are
    so that their error is reported like any other (and ``-``, standard input, too)."""
    inputs = []
    for file in files:
        if file == "-":
            inputs.append(file)
            continue
        try:
            inputs.extend(frontend.expand(file))
        except (ValueError, OSError):
            inputs.append(file)
    return inputs


def build_parser() -> argparse.ArgumentParser:
    """``recognizer-transcribe``'s arguments; the decoding ones are generated from the registered decoders."""
    parser = argparse.ArgumentParser(prog="recognizer-transcribe", description=__doc__.splitlines()[0])
    add_io_arguments(parser)  # files, --checkpoint, --output, ...
    parser.add_argument(
        "--stream",
        action="store_true",
        help="play each file (or `-`: raw 16-bit mono PCM at the model's rate on stdin) through a streaming "
        "session, partial results on stderr (a streaming speech model: LCBLSTMEncoder, LSTMEncoder)",
    )
    parser.add_argument("--chunk-ms", type=float, default=100.0, help="with --stream: audio per piece fed")
    add_decoding_arguments(parser)  # --decoder, --beam, --nbest, --lm, ...
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``recognizer-transcribe --checkpoint model.ckpt FILE...``; exits 0 when every input was
    transcribed, ``SOME_FAILED`` (3) when some (not all) were recorded as failed, 1 when none could be
    transcribed or the run itself failed."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.resume and not args.output:
        parser.error("--resume needs --output")
    options = decoding_options(args)
    output = ResultWriter(args.output, args.resume)  # before the model: an unwritable path fails first
    try:
        recognizer = load(args.checkpoint, args.device)
        inputs = [i for i in _expand(recognizer.frontend, args.files) if i not in output.done]
    except BaseException:
        output.close()
        raise
    if args.stream:
        from .streaming import show_partial, stream_inputs

        streamed = stream_inputs(
            recognizer,
            inputs,
            recognizer._decoder(options, {}),
            args.chunk_ms,
            on_error_of(args),
            show_partial,
            args.timestamps,
        )
        return write_all(streamed, output, len(inputs))
    results = recognizer.transcribe_iter(
        inputs,
        options,
        timestamps=args.timestamps,
        max_frames=args.max_frames,
        progress=show_progress(inputs),
        on_error=on_error_of(args),
        split_lines=not args.no_split_lines,
    )
    return write_all(results, output, len(inputs))


if __name__ == "__main__":
    sys.exit(main())
