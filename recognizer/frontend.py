"""What a modality's front-end provides to the shared data pipeline, model and transcription.

A front-end turns one input (a file or an in-memory array) into a float tensor of features with
shape (frames, feature_dim). The rest of the project never looks inside: batching, the encoder,
CTC training, decoding and transcription are the same for every modality. A front-end is a frozen
dataclass whose fields are its settings, with defaults that are named constants of its modality's
module; ``config()`` turns them into plain values for the checkpoint, from which ``from_config``
rebuilds it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from .classpath import name_of, resolve

#: modality -> front-end class, for checkpoints written before front-ends stored their class_path.
#: A new modality needs no entry: its checkpoints store the class_path.
FIRST_FORMAT_FRONTENDS = {
    "audio": "recognizer.audio.AudioFrontend",
    "ink": "recognizer.ink.frontend.InkFrontend",
}


class Frontend:
    """Base class of the modality front-ends (see the module docstring).

    Subclasses are frozen dataclasses; the class attributes below are not fields (no annotation in the
    subclass). A field whose constructor argument has another name (one that would hide a method, such
    as ``features``) names it in its metadata: ``field(metadata={"setting": "features"})``; fields with
    ``init=False`` (caches) are not settings.
    """

    modality: str = ""
    #: manifest field holding the input file's path
    path_key: str = ""
    #: file suffixes this front-end reads (for error messages and file discovery)
    suffixes: tuple[str, ...] = ()
    #: settings that only shape training (augmentation): a resumed run may change them, the weights
    #: do not depend on them
    training_only: tuple[str, ...] = ()

    @property
    def feature_dim(self) -> int:
        """Size of one feature frame."""
        raise NotImplementedError

    #: what timestamps count: "seconds" for audio, "points" (indices of the ink's points as read) for ink
    timestamp_unit: str = ""
    #: whether every feature frame covers ``frame_unit``; if not, ``frame_boundaries`` places the timestamps
    even_frames: bool = True

    @property
    def frame_unit(self) -> float:
        """Timestamp units per feature frame (seconds per frame for audio, 1 point for ink)."""
        raise NotImplementedError

    def frame_boundaries(self, raw: Any) -> np.ndarray | None:
        """Where each feature frame of ``raw`` starts, then where the last one ends ((frames + 1,), in
        ``timestamp_unit``), for front-ends whose frames do not each cover ``frame_unit`` (ink: the
        original points a resampled point or a curve stands for); None: frame i starts at i x frame_unit."""
        return None

    def load(self, source: Any) -> Any:
        """Read an input (path or in-memory data) into the front-end's raw form."""
        raise NotImplementedError

    def load_parts(self, source: Any) -> list[tuple[Any, np.ndarray | None]]:
        """An input as the parts the model reads one at a time (ink: its text lines), each in ``load``'s
        form, with the indices of its points among the whole input's (None: the part is the input)."""
        return [(self.load(source), None)]

    def expand(self, path: str) -> list[str]:
        """The inputs one file holds, as sources ``load`` accepts: the file itself, unless its format
        holds several samples (e.g. InkML pages)."""
        return [path]

    def load_entry(self, entry: dict[str, Any]) -> Any:
        """Read a manifest entry's input (the path under ``path_key``; a modality may use more fields)."""
        return self.load(entry[self.path_key])

    def features(self, raw: Any, rng: np.random.Generator | None = None) -> torch.Tensor:
        """Raw input -> (frames, feature_dim) float32 features; with ``rng``, randomly augmented for
        training (each modality augments where it makes sense: audio on the spectrogram, ink before
        resampling)."""
        raise NotImplementedError

    def estimate_frames(self, entry: dict[str, Any]) -> int:
        """Cheap estimate of an entry's feature frames (for batching by a length budget)."""
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        """Plain settings for the checkpoint: ``modality``, ``class_path`` and every field under its constructor
        argument's name, tuples as lists (as YAML and the checkpoint's hyperparameters hold them)."""
        settings: dict[str, Any] = {"modality": self.modality, "class_path": name_of(type(self))}
        for field in dataclasses.fields(self):  # type: ignore[arg-type]  # subclasses are dataclasses
            if not field.init:  # a cache or derived value, not a setting
                continue
            value = getattr(self, field.name)
            settings[field.metadata.get("setting", field.name)] = list(value) if isinstance(value, tuple) else value
        return settings


def frontend_class(config: Mapping[str, Any]) -> type[Frontend]:
    """The front-end class of ``Frontend.config()`` output (``class_path``; the modality for the first format)."""
    modality = config.get("modality")
    class_path = config.get("class_path") or FIRST_FORMAT_FRONTENDS.get(str(modality))
    if class_path is None:
        raise ValueError(f"a front-end config names its class_path (or a known modality), got modality {modality!r}")
    cls = resolve(class_path, Frontend, "front-end")
    if modality is not None and cls.modality != modality:
        raise ValueError(f"front-end {class_path} reads {cls.modality!r}, not the stated modality {modality!r}")
    return cls


def frontend_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """The constructor arguments in ``Frontend.config()`` output: all but what names the class."""
    return {key: value for key, value in config.items() if key not in ("modality", "class_path")}


def from_config(config: Mapping[str, Any]) -> Frontend:
    """Rebuild a front-end from ``Frontend.config()`` output."""
    return frontend_class(config)(**frontend_settings(config))
