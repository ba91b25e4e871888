"""An exported ONNX model run by onnxruntime, behind the same interface as ``recognizer.model.Model``.

``recognizer.load("model.onnx")`` wraps it in a ``Recognizer``: transcription, every decoder, n-best
lists and timestamps work as with a checkpoint. The graph computes the log-probabilities (for speech
from the raw waveform, front-end included); torch only carries them to the decoders. The settings
come from the file's metadata (``recognizer.export``), so no other file is needed. (Greedy
transcription of speech needs no torch at all: ``recognizer.onnx_runtime``.)
"""

from __future__ import annotations

import os
from typing import Any

import torch

from .artifacts import WAVEFORM
from .decoding import DecodingOptions
from .frontend import from_config
from .onnx_runtime import OnnxSession


class OnnxModel(OnnxSession):
    """An ONNX file written by ``recognizer export`` with its front-end and decoding settings rebuilt;
    ``threads``: how many batches run at once, one thread each (``OnnxSession``)."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None) -> None:
        super().__init__(path, threads)
        try:
            self.frontend = from_config(self.settings["frontend"])
            self.decoding = DecodingOptions.from_checkpoint(self.settings.get("decoding") or {})
        except (KeyError, TypeError, ValueError) as error:
            self.unusable(error)

    def prepare(self, raw: Any) -> torch.Tensor:
        """What the graph takes for one input read by the front-end: the waveform itself (speech), or
        its features."""
        return raw.float() if self.takes == WAVEFORM else self.frontend.features(raw)

    def __call__(self, inputs: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A padded batch of ``prepare`` outputs and their lengths -> log-probabilities and lengths."""
        log_probs, out_lengths = self.run(inputs.detach().cpu().float().numpy(), lengths.detach().cpu().numpy())
        return torch.from_numpy(log_probs), torch.from_numpy(out_lengths)
