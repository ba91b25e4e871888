"""The trained model without Lightning: a tokenizer, a front-end and an encoder, and the model file.

``Model`` is what transcription runs (``recognizer.load``). ``CTCModule`` trains the same three parts,
built by ``build_parts`` from the same settings, so a training checkpoint and a model file give one
model. A model file (``recognizer export CKPT --out model.pt``) holds only what ``Model`` needs: the
settings and the encoder's weights, no optimizer or trainer state; both load with ``weights_only``
and neither needs ``pytorch_lightning``.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from .artifacts import MODEL_FORMAT, MODEL_VERSION, CheckpointError, first_line
from .checkpoint import read_checkpoint, write_checkpoint
from .decoding import DecodingOptions
from .encoders import Encoder, build_encoder, encoder_config
from .frontend import Frontend, from_config
from .tokenizer import Tokenizer

#: the weights a model keeps of a training checkpoint's ``state_dict`` (the rest is training state)
WEIGHT_PREFIX = "encoder."


def build_parts(
    tokenizer: Mapping[str, Any], frontend: Mapping[str, Any], encoder: Any
) -> tuple[Tokenizer, Frontend, Encoder, dict[str, Any]]:
    """The tokenizer, front-end and encoder from their settings (as configs and checkpoints hold them),
    and the encoder's settings spelled out (``encoder_config``)."""
    built_tokenizer = Tokenizer(**tokenizer)
    built_frontend = from_config(frontend)
    settings = encoder_config(encoder)
    return (
        built_tokenizer,
        built_frontend,
        build_encoder(settings, built_frontend.feature_dim, built_tokenizer.vocab_size),
        settings,
    )


M = TypeVar("M", bound=nn.Module)


def load_module(cls: type[M], path: str | os.PathLike, map_location: str | torch.device, prefix: str = "") -> M:
    """``cls`` built from a checkpoint's settings (those its constructor takes) with the checkpoint's
    weights whose names start with ``prefix``, in eval mode; read without unpickling code. A file that
    is no recognizer checkpoint, or whose weights do not fit its settings, is a ``CheckpointError``."""
    checkpoint = read_checkpoint(path, map_location)
    accepted = inspect.signature(cls.__init__).parameters
    try:
        module = cls(**{k: v for k, v in checkpoint["hyper_parameters"].items() if k in accepted})
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: its settings cannot build a model ({first_line(error)})") from None
    try:
        module.load_state_dict({k: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)})
    except (RuntimeError, TypeError, ValueError) as error:
        reason = " ".join(str(error).split())  # torch lists the missing and unexpected weights over lines
        raise CheckpointError(
            f"{path}: the weights do not fit the model its settings describe ({reason[:300]})"
        ) from None
    return module.eval()


class Model(nn.Module):
    """A trained recognizer's parts: features -> encoder -> log-probabilities, and how to read them.

    Args:
        tokenizer, frontend, encoder: settings as a checkpoint's ``hyper_parameters`` hold them.
        decoding: the default decoding stored with the model (``DecodingOptions.to_dict``).
    """

    def __init__(
        self,
        tokenizer: Mapping[str, Any],
        frontend: Mapping[str, Any],
        encoder: Any = None,
        decoding: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.tokenizer, self.frontend, self.encoder, encoder_settings = build_parts(tokenizer, frontend, encoder)
        self.decoding = DecodingOptions.from_config(decoding)
        #: plain settings that rebuild this model (``Model(**settings)``), as the model file stores them
        self.settings: dict[str, Any] = {
            "tokenizer": dict(tokenizer),
            "frontend": self.frontend.config(),
            "encoder": encoder_settings,
            "decoding": self.decoding.to_dict(),
        }

    #: what ``forward``'s time axis counts per feature frame (an exported speech graph counts samples)
    rows_per_frame = 1
    #: batches run at once (``batching.forward_batches``): one, as torch spreads each over its own threads
    workers = 1

    @property
    def stride(self) -> int:
        """Feature frames per output frame."""
        return self.encoder.stride

    def prepare(self, raw: Any) -> torch.Tensor:
        """What ``forward`` takes for one input read by the front-end: its features (frames, dim)."""
        return self.frontend.features(raw)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features (batch, T, F) and lengths -> log-probabilities (batch, T', vocab) and lengths."""
        return self.encoder(features, lengths)

    @classmethod
    def load(cls, path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Model:
        """A model from a training checkpoint or a model file; a file that is neither, or whose weights
        do not fit its settings, is a ``CheckpointError`` naming it."""
        return load_module(cls, path, map_location, WEIGHT_PREFIX)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the model file: settings and weights (on the CPU, in the dtype they have), nothing of
        training. The file appears whole or not at all (``artifacts.save_atomically``)."""
        state = {key: value.detach().cpu() for key, value in self.state_dict().items()}
        contents = {"format": MODEL_FORMAT, "version": MODEL_VERSION, "hyper_parameters": self.settings}
        return write_checkpoint({**contents, "state_dict": state}, path)
