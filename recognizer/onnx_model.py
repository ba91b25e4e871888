"""An exported ONNX model run by onnxruntime, behind the same interface as ``recognizer.model.Model``.

``recognizer.load("model.onnx")`` wraps it in a ``Recognizer``: transcription, every decoder, n-best
lists and timestamps work as with a checkpoint. The graph computes the log-probabilities (for speech
from the raw waveform, front-end included); torch only carries them to the decoders. The settings
come from the file's metadata (``recognizer.export``), so no other file is needed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .checkpoint import FEATURES, ONNX_METADATA_KEY, WAVEFORM, CheckpointError, check_model_version, first_line
from .decoding import DecodingOptions
from .frontend import from_config
from .tokenizer import Tokenizer


class OnnxModel:
    """An ONNX file written by ``recognizer export``; ``threads``: onnxruntime's intra-op threads
    (None: its default, one per physical core)."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None) -> None:
        import onnxruntime

        self.path = Path(path)
        if not self.path.is_file():
            raise CheckpointError(f"{self.path}: no such model file")
        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = onnxruntime.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime's InvalidProtobuf, Fail, ...: a truncated or foreign file
            raise CheckpointError(f"{self.path}: not a readable ONNX model ({first_line(error)})") from None
        settings = self._settings()
        try:
            self.tokenizer = Tokenizer(**settings["tokenizer"])
            self.frontend = from_config(settings["frontend"])
            self.decoding = DecodingOptions.from_checkpoint(settings.get("decoding") or {})
            self.stride = int(settings["stride"])
            self.takes = str(settings["input"])
            if self.takes not in (WAVEFORM, FEATURES):
                raise ValueError(f"input {self.takes!r}")
            #: what the graph's time axis counts per feature frame: samples of a waveform, or 1
            self.rows_per_frame = int(settings["rows_per_frame"])
        except (KeyError, TypeError, ValueError) as error:
            raise CheckpointError(f"{self.path}: its recognizer settings are unusable ({first_line(error)})") from None
        self.settings = settings
        inputs = sorted(i.name for i in self.session.get_inputs())
        if inputs != sorted([self.takes, "lengths"]):
            raise CheckpointError(
                f"{self.path}: its graph takes {inputs}, not the [{self.takes!r}, 'lengths'] its settings say"
            )

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

    def prepare(self, raw: Any) -> torch.Tensor:
        """What the graph takes for one input read by the front-end: the waveform itself (speech), or
        its features."""
        return raw.float() if self.takes == WAVEFORM else self.frontend.features(raw)

    def __call__(self, inputs: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A padded batch of ``prepare`` outputs and their lengths -> log-probabilities and lengths."""
        log_probs, out_lengths = self.session.run(
            None,
            {
                self.takes: inputs.detach().cpu().float().numpy(),
                "lengths": lengths.detach().cpu().numpy().astype(np.int64),
            },
        )
        return torch.from_numpy(log_probs), torch.from_numpy(out_lengths)
