"""Transcription: ``recognizer.load(checkpoint).transcribe(inputs)`` and ``recognizer-transcribe``.

A checkpoint is self-contained: it carries the tokenizer, the front-end settings and the weights.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
from tqdm import tqdm

from .data import budget_batches
from .decoding import DECODERS, Decoder, align_chars, align_words, decode, forced_align, scale_spans
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
        decoder: Decoder = "greedy",
        beam_size: int = 8,
        nbest: int = 1,
        timestamps: bool = False,
        max_frames: int = DEFAULT_MAX_FRAMES,
        progress: bool = False,
    ) -> list[Transcript]:
        """Transcribe paths or in-memory inputs in batches of similar length; results keep the input order.

        Args:
            inputs: file paths, or in-memory inputs: for audio a waveform at the model's rate or a
                ``(waveform, rate)`` pair; for ink a ``recognizer.ink.Ink``.
            decoder: ``greedy`` (best path) or ``beam`` (prefix beam search).
            beam_size: hypotheses kept by the beam search.
            nbest: alternatives to return (beam search).
            timestamps: align the best transcript to the input: word start/end and confidence.
            max_frames: feature frames per batch.
            progress: show a progress bar.
        """
        features = []
        for source in inputs:
            self._check_source(source)
            features.append(self.frontend.features(self.frontend.load(source)))
        lengths = [f.shape[0] for f in features]
        order = sorted(range(len(inputs)), key=lengths.__getitem__)
        results: list[Transcript | None] = [None] * len(inputs)
        batches = budget_batches(order, lengths, max_frames)
        for batch in tqdm(batches, desc="transcribing", unit="batch", disable=not progress, file=sys.stderr):
            transcripts = self._transcribe_batch([features[i] for i in batch], decoder, beam_size, nbest, timestamps)
            for index, transcript in zip(batch, transcripts):
                source = inputs[index]
                transcript.source = str(source) if isinstance(source, (str, os.PathLike)) else f"<array {index}>"
                results[index] = transcript
        return results  # type: ignore[return-value]

    def _transcribe_batch(
        self, features: list[torch.Tensor], decoder: Decoder, beam_size: int, nbest: int, timestamps: bool
    ) -> list[Transcript]:
        lengths = torch.tensor([f.shape[0] for f in features])
        padded = torch.nn.utils.rnn.pad_sequence(features, batch_first=True).to(self.device)
        log_probs, out_lengths = self.module(padded, lengths.to(self.device))
        hypotheses = decode(log_probs, out_lengths, decoder, beam_size, nbest)
        transcripts = [
            Transcript(
                source="",
                text=self.tokenizer.decode(best[0].labels),
                score=best[0].score,
                nbest=[{"text": self.tokenizer.decode(h.labels), "score": h.score} for h in best] if nbest > 1 else None,
            )
            for best in hypotheses
        ]
        if timestamps:
            paths = forced_align(log_probs, out_lengths, [best[0].labels for best in hypotheses])
            unit = self.frontend.frame_unit * self.module.model.stride
            for transcript, path, frames in zip(transcripts, paths, log_probs):
                words = align_words(align_chars(path, frames, self.tokenizer))
                transcript.words = [
                    {"word": w.word, "start": round(w.start, 3), "end": round(w.end, 3), "confidence": round(w.confidence, 4)}
                    for w in scale_spans(words, unit)
                ]
                transcript.unit = self.frontend.timestamp_unit
        return transcripts


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


def main(argv: Sequence[str] | None = None) -> int:
    """``recognizer-transcribe --checkpoint model.ckpt FILE...``"""
    parser = argparse.ArgumentParser(prog="recognizer-transcribe", description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", help="input files (audio for a speech model)")
    parser.add_argument("--checkpoint", required=True, help="a .ckpt written by `recognizer fit`")
    parser.add_argument("--output", help="write JSON lines here instead of printing `path<TAB>text`")
    parser.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    parser.add_argument("--decoder", choices=DECODERS, default="greedy", help="greedy (best path) or beam (prefix beam search)")
    parser.add_argument("--beam", type=int, default=8, help="beam size for --decoder beam")
    parser.add_argument("--nbest", type=int, default=1, help="alternatives per input (JSON output)")
    parser.add_argument("--timestamps", action="store_true", help="word timestamps and confidences (JSON output)")
    parser.add_argument("--max-frames", type=int, default=DEFAULT_MAX_FRAMES, help="feature frames per batch")
    args = parser.parse_args(argv)
    try:
        recognizer = load(args.checkpoint, args.device)
        results = recognizer.transcribe(
            args.files, decoder=args.decoder, beam_size=args.beam, nbest=args.nbest, timestamps=args.timestamps,
            max_frames=args.max_frames, progress=len(args.files) > 1,
        )
    except (OSError, ValueError) as error:
        print(f"recognizer-transcribe: error: {error}", file=sys.stderr)
        return 1
    _write(results, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
