"""Reading checkpoints safely, and holding a run's config to the checkpoint it resumes or evaluates.

The checkpoint is the truth: its tokenizer, front-end and encoder settings are what the weights
were trained with. A config that disagrees on something that changes what the model computes is an
error naming the field; on a training-only setting (augmentation, dropout) it is a warning. Nothing
here needs Lightning.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from .artifacts import CheckpointError, check_model_version, first_line, save_atomically
from .decoding import DecodingOptions
from .encoders.base import encoder_config

#: what a recognizer checkpoint's hyper_parameters must hold to rebuild the model (every format)
CHECKPOINT_SETTINGS = ("tokenizer", "frontend")


def read_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only`` (no code is unpickled) and check that it is ours.

    Truncated, random, pickled-code or another project's files raise ``CheckpointError`` naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except RuntimeError as error:
        if "device" in str(error).lower() or "cuda" in str(error).lower():
            raise CheckpointError(f"{path}: cannot load onto {map_location}: {first_line(error)}") from None
        raise CheckpointError(
            f"{path}: not a readable checkpoint (truncated or not a PyTorch file: {first_line(error)})"
        ) from None
    except Exception as error:  # pickle.UnpicklingError (weights_only refusals), EOFError, zip errors, ...
        lines = str(error).splitlines()
        refusal = next((line.strip() for line in lines if "Unsupported global" in line), None)
        reason = (
            f"it holds code, which is never loaded: {refusal}"
            if refusal
            else f"{type(error).__name__}: {first_line(error)}"
        )
        raise CheckpointError(f"{path}: not a readable checkpoint ({reason})") from None
    if isinstance(checkpoint, dict) and "format" in checkpoint:
        check_model_version(path, checkpoint.get("format"), checkpoint.get("version"))
    hparams = checkpoint.get("hyper_parameters") if isinstance(checkpoint, dict) else None
    if not isinstance(hparams, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise CheckpointError(f"{path}: not a recognizer checkpoint (no hyper_parameters and state_dict)")
    missing = [name for name in CHECKPOINT_SETTINGS if not isinstance(hparams.get(name), dict)]
    if missing:
        raise CheckpointError(f"{path}: not a recognizer checkpoint (its hyper_parameters lack {', '.join(missing)})")
    upgrade(checkpoint)
    try:  # settings every later step relies on: checked once, here, with the file's name
        if not isinstance(hparams["encoder"], dict):
            raise ValueError(f"expected {{class_path, init_args}}, got {hparams['encoder']!r}")
        hparams["encoder"] = encoder_config(hparams["encoder"])
    except ValueError as error:
        raise CheckpointError(f"{path}: its encoder settings are unusable: {first_line(error)}") from None
    return checkpoint


def write_checkpoint(checkpoint: dict[str, Any], out: str | os.PathLike) -> Path:
    """Save a checkpoint (or model file) to ``out`` atomically (``save_atomically``), creating its folder."""
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    return save_atomically(out, lambda temporary: torch.save(checkpoint, temporary))


#: the first format's flat encoder settings (before encoders were components): a BLSTMEncoder's
V0_ENCODER_SETTINGS = ("hidden_size", "num_layers", "stack", "stride", "dropout")
#: the first format's weight names -> today's (most specific first)
V0_WEIGHT_PREFIXES = (("model.blstm.", "encoder.rnn."), ("model.", "encoder."))


def upgrade(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """Bring a checkpoint of an earlier format to today's, in place: the first format kept the BLSTM's
    settings flat in ``hyper_parameters`` and its weights under ``model.``. The stored decoding (only
    the default of validation) is read leniently, ``DecodingOptions.from_checkpoint``: options its
    decoder does not take are dropped, an unknown decoder is greedy, with a warning."""
    hparams = checkpoint["hyper_parameters"]
    if "decoding" in hparams:
        hparams["decoding"] = DecodingOptions.from_checkpoint(hparams["decoding"]).to_dict()
    if "encoder" in hparams:
        return checkpoint
    init_args = {name: hparams.pop(name) for name in V0_ENCODER_SETTINGS if name in hparams}
    hparams["encoder"] = {"class_path": "recognizer.encoders.BLSTMEncoder", "init_args": init_args}
    checkpoint["state_dict"] = {_renamed(key): value for key, value in checkpoint["state_dict"].items()}
    return checkpoint


def _renamed(key: str) -> str:
    for old, new in V0_WEIGHT_PREFIXES:
        if key.startswith(old):
            return new + key[len(old) :]
    return key


class Disagreement(CheckpointError):
    """A config setting that contradicts the checkpoint on something the weights depend on."""


def plain(value: Any) -> Any:
    """Tuples as lists, so a YAML list and a stored tuple compare equal."""
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def agree(
    field: str, configured: Any, default: Any, stored: Any, checkpoint: str | os.PathLike, training_only: bool = False
) -> tuple[Any, str | None]:
    """The value a run must use for ``field``, and a warning if the config is overridden.

    The checkpoint's value wins. A configured value equal to the parameter's default counts as not
    set (the config said nothing). Any other difference is a ``Disagreement`` naming the field, except
    for ``training_only`` settings, where the config's value is kept (it changes how training
    goes on, not what the weights compute) with a warning.
    """
    if plain(configured) == plain(stored) or plain(configured) == plain(default):
        return stored, None
    if training_only:
        return configured, f"{field}: the config's {configured!r} replaces the checkpoint's {stored!r} (training only)"
    raise Disagreement(
        f"{checkpoint}: {field} is {configured!r} in the config but {stored!r} in the checkpoint, which was "
        f"trained with it; remove the setting or pass the matching checkpoint"
    )
