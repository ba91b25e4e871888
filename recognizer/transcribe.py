"""Transcription: ``recognizer.load(checkpoint).transcribe(inputs)`` and ``recognizer-transcribe``.

A checkpoint is self-contained: it carries the tokenizer, the front-end settings and the weights.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
from tqdm import tqdm

from .data import budget_batches
from .decoding import (
    DECODERS,
    DEFAULT_BEAM_SIZE,
    Decoder,
    DecodingOptions,
    align_chars,
    align_words,
    decode,
    forced_align,
    prepare,
    scale_spans,
)
from .module import CTCModule

DEFAULT_MAX_FRAMES = 100_000  # per batch of inference: ~17 minutes of audio at a 10 ms hop


@dataclass
class Transcript:
    """One input's transcription.

    ``source`` is its path, or ``<array N>`` for in-memory input; ``score`` the log-probability of the
    best hypothesis; ``nbest`` the alternatives (``{"text", "score"}``, best first) when more than one
    was asked for; ``words`` the word timestamps and confidences (``{"word", "start", "end",
    "confidence"}``, in ``unit``: seconds for audio, resampled-point indices for ink) when asked for.
    """

    source: str
    text: str
    score: float | None = None
    nbest: list[dict[str, Any]] | None = None
    words: list[dict[str, Any]] | None = None
    unit: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The fields that are set, for JSON."""
        return {key: value for key, value in asdict(self).items() if value is not None}


class Recognizer:
    """A trained model ready to transcribe files or arrays of its modality."""

    def __init__(self, module: CTCModule, device: str | torch.device = "cpu") -> None:
        self.module = module.to(device).eval()
        self.device = torch.device(device)
        self.frontend = module.frontend
        self.tokenizer = module.tokenizer

    @property
    def modality(self) -> str:
        return self.frontend.modality

    def _check_source(self, source: Any) -> None:
        if isinstance(source, (str, os.PathLike)):
            path = Path(source)
            if not path.is_file():
                raise FileNotFoundError(f"{path}: no such file")
            if path.suffix.lower() not in self.frontend.suffixes:
                raise ValueError(
                    f"{path}: the checkpoint is a {self.modality} model, which reads {', '.join(self.frontend.suffixes)} files"
                )

    @torch.no_grad()
    def transcribe(
        self,
        inputs: Sequence[Any],
        decoder: Decoder | DecodingOptions = "greedy",
        *,
        timestamps: bool = False,
        max_frames: int = DEFAULT_MAX_FRAMES,
        progress: bool = False,
        **options: Any,
    ) -> list[Transcript]:
        """Transcribe paths or in-memory inputs in batches of similar length; results keep the input order.

        Args:
            inputs: file paths, or in-memory inputs: for audio a waveform at the model's rate or a
                ``(waveform, rate)`` pair; for ink a ``recognizer.ink.Ink``.
            decoder: ``greedy`` (best path), ``beam`` (prefix beam search) or ``lm`` (beam search with
                an n-gram LM and/or lexicon), or a whole ``DecodingOptions``.
            timestamps: align the best transcript to the input: word start/end and confidence.
            max_frames: feature frames per batch.
            progress: show a progress bar.
            options: ``DecodingOptions`` fields: ``beam_size``, ``nbest``, ``lm``, ``lexicon``,
                ``lm_weight``, ``word_score``, ``token_beam``, ...
        """
        options = _options(decoder, options)
        prepare(options, self.tokenizer.alphabet)  # a bad LM or lexicon fails before the model runs
        emissions = self.log_probs(inputs, max_frames=max_frames, progress=progress)
        transcripts = self.decode(emissions, options, timestamps=timestamps, max_frames=max_frames)
        for index, (source, transcript) in enumerate(zip(inputs, transcripts)):
            transcript.source = str(source) if isinstance(source, (str, os.PathLike)) else f"<array {index}>"
        return transcripts

    @torch.no_grad()
    def log_probs(self, inputs: Sequence[Any], max_frames: int = DEFAULT_MAX_FRAMES, progress: bool = False) -> list[torch.Tensor]:
        """The model's output for each input: (frames, vocab) log-probabilities on the CPU, in input order.

        Decode them with ``decode`` (e.g. many times, with different settings, as tuning does).
        """
        features = []
        for source in inputs:
            self._check_source(source)
            features.append(self.frontend.features(self.frontend.load(source)))
        results: list[torch.Tensor | None] = [None] * len(inputs)
        batches = _length_batches([f.shape[0] for f in features], max_frames)
        for batch in tqdm(batches, desc="transcribing", unit="batch", disable=not progress, file=sys.stderr):
            padded, lengths = _pad([features[i] for i in batch])
            log_probs, out_lengths = self.module(padded.to(self.device), lengths.to(self.device))
            for index, row, length in zip(batch, log_probs.cpu(), out_lengths.tolist()):
                results[index] = row[:length].clone()  # not a view that would keep the whole batch alive
        return results  # type: ignore[return-value]

    @torch.no_grad()
    def decode(
        self,
        log_probs: Sequence[torch.Tensor],
        decoder: Decoder | DecodingOptions = "greedy",
        *,
        timestamps: bool = False,
        max_frames: int = DEFAULT_MAX_FRAMES,
        **options: Any,
    ) -> list[Transcript]:
        """Decode the output of ``log_probs`` (same arguments as ``transcribe``); sources are left empty."""
        options = _options(decoder, options)
        unit = self.frontend.frame_unit * self.module.model.stride
        transcripts: list[Transcript | None] = [None] * len(log_probs)
        for batch in _length_batches([e.shape[0] for e in log_probs], max_frames):
            padded, lengths = _pad([log_probs[i] for i in batch])
            if options.decoder != "lm" or timestamps:  # flashlight's search runs on the CPU
                padded = padded.to(self.device)  # the batched searches and alignment run on the model's device
            hypotheses = decode(padded, lengths, options, self.tokenizer.alphabet)
            paths = forced_align(padded, lengths, [h[0].labels for h in hypotheses]) if timestamps else None
            for position, (index, nbest) in enumerate(zip(batch, hypotheses)):
                transcript = Transcript(
                    source="",
                    text=self.tokenizer.decode(nbest[0].labels),
                    score=nbest[0].score,
                    nbest=[{"text": self.tokenizer.decode(h.labels), "score": h.score} for h in nbest] if options.nbest > 1 else None,
                )
                if paths is not None:
                    words = align_words(align_chars(paths[position], padded[position], self.tokenizer))
                    transcript.words = [
                        {"word": w.word, "start": round(w.start, 3), "end": round(w.end, 3), "confidence": round(w.confidence, 4)}
                        for w in scale_spans(words, unit)
                    ]
                    transcript.unit = self.frontend.timestamp_unit
                transcripts[index] = transcript
        return transcripts  # type: ignore[return-value]


def _options(decoder: Decoder | DecodingOptions, overrides: dict[str, Any]) -> DecodingOptions:
    if isinstance(decoder, DecodingOptions):
        return dataclasses.replace(decoder, **overrides)
    return DecodingOptions(decoder=decoder, **overrides)


def _length_batches(lengths: list[int], max_frames: int) -> list[list[int]]:
    """Indices in batches of similar length within the frame budget."""
    return budget_batches(sorted(range(len(lengths)), key=lengths.__getitem__), lengths, max_frames)


def _pad(rows: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.nn.utils.rnn.pad_sequence(rows, batch_first=True), torch.tensor([r.shape[0] for r in rows])


def load(checkpoint: str | os.PathLike, device: str | torch.device | None = None) -> Recognizer:
    """Load a checkpoint written by ``recognizer fit``; ``device`` defaults to CUDA when available."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return Recognizer(CTCModule.from_checkpoint(checkpoint, map_location=device), device)


def _write(results: Iterable[Transcript], output: str | None) -> None:
    if output is None:
        for result in results:
            print(f"{result.source}\t{result.text}")
        return
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    with open(output, "w", encoding="utf-8") as f:
        for result in results:
            f.write(json.dumps(result.to_dict(), ensure_ascii=False) + "\n")


def add_decoding_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``DecodingOptions`` as command-line options (shared by transcription and tuning)."""
    group = parser.add_argument_group("decoding")
    group.add_argument("--decoder", choices=DECODERS,
                       help="greedy (best path), beam (prefix beam search) or lm (beam search with --lm and/or "
                       "--lexicon); default: lm when they are given, else greedy")
    group.add_argument("--beam", type=int, dest="beam_size",
                       help=f"hypotheses kept per frame (default: {', '.join(f'{k} {v}' for k, v in DEFAULT_BEAM_SIZE.items())})")
    group.add_argument("--token-beam", type=int, help="labels tried per frame, most probable first (default: all)")
    group.add_argument("--lm", help="n-gram LM (ARPA or KenLM binary): a word LM with --lexicon, a character LM without")
    group.add_argument("--lexicon", help="lexicon file (recognizer-lm --lexicon); without it the LM decoder is lexicon-free")
    group.add_argument("--lm-weight", type=float, default=DecodingOptions.lm_weight, help="weight of the LM score (tune with recognizer-tune)")
    group.add_argument("--word-score", type=float, default=DecodingOptions.word_score,
                       help="insertion bonus per word (without a lexicon: per frame of word separator)")
    group.add_argument("--unk-score", type=float, default=DecodingOptions.unk_score,
                       help="with a lexicon: score of leaving it (default: never)")
    group.add_argument("--beam-threshold", type=float, default=DecodingOptions.beam_threshold,
                       help="lm: drop hypotheses this far below the best")
    group.add_argument("--blank-skip", type=float, default=DecodingOptions.blank_skip,
                       help="beam and lm: collapse runs of frames whose blank probability is at least this "
                       "before the search; 1 to search every frame")


def decoding_options(args: argparse.Namespace) -> DecodingOptions:
    """``DecodingOptions`` from arguments added by ``add_decoding_arguments``."""
    names = ("decoder", "beam_size", "token_beam", "lm", "lexicon", "lm_weight", "word_score", "unk_score",
             "beam_threshold", "blank_skip")
    values = {name: getattr(args, name) for name in names}
    values.update(nbest=getattr(args, "nbest", 1))
    if values["decoder"] is None:
        values["decoder"] = "lm" if args.lm or args.lexicon else "greedy"
    return DecodingOptions(**values)


def main(argv: Sequence[str] | None = None) -> int:
    """``recognizer-transcribe --checkpoint model.ckpt FILE...``"""
    parser = argparse.ArgumentParser(prog="recognizer-transcribe", description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", help="input files (audio for a speech model)")
    parser.add_argument("--checkpoint", required=True, help="a .ckpt written by `recognizer fit`")
    parser.add_argument("--output", help="write JSON lines here instead of printing `path<TAB>text`")
    parser.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    parser.add_argument("--nbest", type=int, default=1, help="alternatives per input (JSON output)")
    parser.add_argument("--timestamps", action="store_true", help="word timestamps and confidences (JSON output)")
    parser.add_argument("--max-frames", type=int, default=DEFAULT_MAX_FRAMES, help="feature frames per batch")
    add_decoding_arguments(parser)
    args = parser.parse_args(argv)
    try:
        options = decoding_options(args)
        recognizer = load(args.checkpoint, args.device)
        results = recognizer.transcribe(
            args.files, options, timestamps=args.timestamps, max_frames=args.max_frames, progress=len(args.files) > 1,
        )
    except (OSError, ValueError) as error:
        print(f"recognizer-transcribe: error: {error}", file=sys.stderr)
        return 1
    _write(results, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
