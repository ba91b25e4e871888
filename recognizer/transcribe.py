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
from .module import CTCModule

DEFAULT_MAX_FRAMES = 100_000  # per batch of inference: ~17 minutes of audio at a 10 ms hop


@dataclass
class Transcript:
    """One input's transcription; ``source`` is its path, or ``<array N>`` for in-memory input."""

    source: str
    text: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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
        max_frames: int = DEFAULT_MAX_FRAMES,
        progress: bool = False,
    ) -> list[Transcript]:
        """Transcribe paths or in-memory inputs (for audio: waveforms at the model's rate, or
        ``(waveform, rate)`` pairs), in batches of similar length. Results keep the input order."""
        features = []
        for number, source in enumerate(inputs):
            self._check_source(source)
            features.append(self.frontend.features(self.frontend.load(source)))
        lengths = [f.shape[0] for f in features]
        order = sorted(range(len(inputs)), key=lengths.__getitem__)
        results: list[Transcript | None] = [None] * len(inputs)
        batches = budget_batches(order, lengths, max_frames)
        for batch in tqdm(batches, desc="transcribing", unit="batch", disable=not progress, file=sys.stderr):
            texts = self._transcribe_batch([features[i] for i in batch])
            for index, text in zip(batch, texts):
                source = inputs[index]
                name = str(source) if isinstance(source, (str, os.PathLike)) else f"<array {index}>"
                results[index] = Transcript(source=name, text=text)
        return results  # type: ignore[return-value]

    def _transcribe_batch(self, features: list[torch.Tensor]) -> list[str]:
        lengths = torch.tensor([f.shape[0] for f in features])
        padded = torch.nn.utils.rnn.pad_sequence(features, batch_first=True).to(self.device)
        log_probs, out_lengths = self.module(padded, lengths.to(self.device))
        return self.module.decode(log_probs, out_lengths)


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
    parser.add_argument("--max-frames", type=int, default=DEFAULT_MAX_FRAMES, help="feature frames per batch")
    args = parser.parse_args(argv)
    try:
        recognizer = load(args.checkpoint, args.device)
        results = recognizer.transcribe(args.files, max_frames=args.max_frames, progress=len(args.files) > 1)
    except (OSError, ValueError) as error:
        print(f"recognizer-transcribe: error: {error}", file=sys.stderr)
        return 1
    _write(results, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
