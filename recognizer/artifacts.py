"""What recognizer's files say they are: the model-file format and its version, where an ONNX model
keeps its settings, the one error every unusable file raises, and the atomic writer every file goes
through. A leaf without torch, so that running an ONNX model needs neither torch nor Lightning
(``recognizer.onnx_runtime``)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: what a model file (``recognizer.model.Model.save``) or an exported ONNX model says it is, and the
#: newest layout this code reads
MODEL_FORMAT = "recognizer-model"
MODEL_VERSION = 1
#: where an ONNX model keeps its settings (metadata key), and what its graph takes: a speech graph the
#: waveform, any other the front-end's features
ONNX_METADATA_KEY = "recognizer"
#: the suffix of ONNX models: ``recognizer.load`` runs such a file through onnxruntime
ONNX_SUFFIX = ".onnx"
WAVEFORM, FEATURES = "waveform", "features"


class CheckpointError(ValueError):
    """A file that is not a usable recognizer checkpoint; the message names it and says why."""


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def one_line(error: BaseException | str) -> str:
    """An error's whole message on one line (whitespace runs, newlines included, become one space)."""
    return " ".join(str(error).split())


def check_model_version(path: str | os.PathLike, fmt: Any, version: Any) -> None:
    """A model file's (or ONNX model's) stated format and version must be ours and readable here."""
    if fmt != MODEL_FORMAT:
        raise CheckpointError(f"{path}: not a recognizer model file (its format is {fmt!r})")
    if type(version) is not int or version < 1:
        raise CheckpointError(f"{path}: a recognizer model file without a valid version ({version!r})")
    if version > MODEL_VERSION:
        raise CheckpointError(
            f"{path}: a model file of version {version}, newer than this recognizer reads ({MODEL_VERSION}): "
            "upgrade recognizer"
        )


def save_atomically(out: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """Write ``out`` through ``write(temporary)`` beside it, then rename: a kill or a failed write never
    leaves a truncated file, nor replaces an existing one. A failure is an ``OSError`` naming ``out``."""
    out = Path(out)
    temporary = out.with_name(f".{out.name}.partial")
    try:
        write(temporary)
        os.replace(temporary, out)
    except (OSError, RuntimeError) as error:  # torch.save's zip writer raises RuntimeError (disk full, ...)
        raise OSError(f"{out}: cannot write it ({first_line(error)})") from None
    finally:
        temporary.unlink(missing_ok=True)
    return out
