"""The encoder contract, and building an encoder from plain settings.

An encoder is a plain ``nn.Module`` that maps a padded batch of features to CTC log-probabilities:

    forward(features (batch, T, input_dim), lengths (batch,)) -> log_probs (batch, T', vocab_size), lengths (batch,)

with ``T' = output_lengths(T)`` and one output frame every ``stride`` input frames (what timestamps
need). Every encoder normalizes its input with training-set statistics (``normalizer``, filled in
before the first training step) and must give an utterance the same outputs alone and in a padded
batch. ``CTCModule`` trains any encoder; transcription, alignment and notebooks use only this contract.

In a config an encoder is chosen like a front-end, by class and settings::

    model:
      encoder:
        class_path: recognizer.encoders.LSTMEncoder
        init_args: {hidden_size: 512, num_layers: 4}

``input_dim`` and ``vocab_size`` are not settings: the front-end and the tokenizer give them. The
checkpoint stores ``{"class_path", "init_args"}`` with every setting spelled out, so a model is rebuilt
exactly even if a default changes later.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import torch
from torch import nn

from ..classpath import name_of, resolve
from .layers import FeatureNormalizer, padding_mask

#: what the config gives for ``model.encoder``: a class (or jsonargparse's partial of it) still missing
#: ``input_dim`` and ``vocab_size``
EncoderFactory = Callable[[int, int], "Encoder"]
#: arguments an encoder gets from the data, never from its settings
DATA_ARGUMENTS = ("input_dim", "vocab_size")


class Encoder(nn.Module):
    """Base class of the encoders (see the module docstring).

    Args:
        input_dim: feature size per input frame (from the front-end).
        vocab_size: output classes including the CTC blank (from the tokenizer).
    """

    #: input frames per output frame
    stride: int = 1
    #: settings that shape training but not what the weights compute (a resumed run may change them)
    training_only: tuple[str, ...] = ("dropout",)
    #: weight of the auxiliary CTC losses (``forward_auxiliary``) in the training loss
    auxiliary_weight: float = 0.0
    #: whether ``recognizer export`` can trace it into an ONNX graph that follows every input length
    onnx_exportable: bool = True
    #: submodules whose outputs are the labels (one row per label): ``model.init_from`` matches their
    #: rows label by label when the alphabets differ (``recognizer.initialization``)
    label_layers: tuple[str, ...] = ()

    def __init__(self, input_dim: int, vocab_size: int) -> None:
        super().__init__()
        self.input_dim, self.vocab_size = input_dim, vocab_size
        self.normalizer = FeatureNormalizer(input_dim)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Output frames for inputs of ``lengths`` frames."""
        raise NotImplementedError

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(batch, T, input_dim), (batch,) -> log-probabilities (batch, T', vocab_size), lengths (batch,)."""
        raise NotImplementedError

    def forward_auxiliary(
        self, features: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """``forward``, plus log-probabilities from inside the encoder (same shape and lengths) that
        training adds CTC losses for, weighted by ``auxiliary_weight`` (intermediate CTC). None by default."""
        log_probs, lengths = self(features, lengths)
        return log_probs, lengths, []

    def normalize(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Normalized features with the padding zeroed, so that it cannot leak into real frames."""
        x = self.normalizer(features)
        return x * padding_mask(lengths, x.shape[1]).unsqueeze(-1).to(x.dtype)


def encoder_class(class_path: object) -> type[Encoder]:
    """The ``Encoder`` subclass named by ``module.Class`` (see ``recognizer.classpath``)."""
    return resolve(class_path, Encoder, "encoder")


def settings(cls: type[Encoder]) -> dict[str, Any]:
    """An encoder class's settings and their defaults: its ``__init__`` parameters but the data's and,
    where it passes ``**kwargs`` on (``super().__init__(input_dim, vocab_size, **kwargs)``), its base
    class's settings, which come first."""
    chain = []
    for klass in cls.__mro__:
        if (init := vars(klass).get("__init__")) is not None:
            parameters = inspect.signature(init).parameters
            chain.append(parameters)
            if klass is Encoder or all(p.kind is not p.VAR_KEYWORD for p in parameters.values()):
                break
    found: dict[str, Any] = {}
    for parameters in reversed(chain):  # a subclass's default replaces its base's
        for name, p in parameters.items():
            if name != "self" and name not in DATA_ARGUMENTS and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                found[name] = None if p.default is p.empty else p.default
    return found


def encoder_config(encoder: EncoderFactory | Mapping[str, Any] | None) -> dict[str, Any]:
    """Plain ``{"class_path", "init_args"}`` with every setting spelled out, from what a config or a
    checkpoint gives: such a mapping, a class, or a ``functools.partial`` of one (jsonargparse's form)."""
    if encoder is None:
        encoder = DEFAULT_ENCODER
    if isinstance(encoder, Mapping):
        unknown = set(encoder) - {"class_path", "init_args"}
        init_args = encoder.get("init_args") or {}
        if unknown or "class_path" not in encoder or not isinstance(init_args, Mapping):
            raise ValueError(f"an encoder is given as {{class_path, init_args: {{...}}}}, got {dict(encoder)!r}")
        cls, given = encoder_class(encoder["class_path"]), dict(init_args)
    elif isinstance(encoder, partial) and len(classes := _encoder_classes(encoder)) == 1:
        # jsonargparse gives partial(cls, **init_args), or partial(<its call wrapper>, <instantiator>, cls,
        # **init_args) inside LightningCLI: either way the keywords are the settings
        cls, given = classes[0], dict(encoder.keywords)
    elif isinstance(encoder, type):
        cls, given = encoder, {}
    else:
        raise ValueError(f"cannot use {encoder!r} as an encoder: give a class_path and init_args")
    if not issubclass(cls, Encoder):
        raise ValueError(f"{name_of(cls)} is not a recognizer.encoders.Encoder")
    known = settings(cls)
    unknown_settings = sorted(set(given) - set(known))
    if unknown_settings:
        raise ValueError(
            f"{cls.__qualname__} has no setting {', '.join(unknown_settings)}; its settings: {', '.join(known)}"
        )
    return {"class_path": name_of(cls), "init_args": {**known, **given}}


def _encoder_classes(factory: partial) -> list[type[Encoder]]:
    return [c for c in (factory.func, *factory.args) if isinstance(c, type) and issubclass(c, Encoder)]


def build_encoder(config: Mapping[str, Any], input_dim: int, vocab_size: int) -> Encoder:
    """An encoder from ``encoder_config`` output, for features of ``input_dim`` and ``vocab_size`` classes."""
    cls = encoder_class(config["class_path"])
    return cls(input_dim, vocab_size, **config["init_args"])


#: the encoder of a config that names none
DEFAULT_ENCODER = {"class_path": "recognizer.encoders.BLSTMEncoder", "init_args": {}}
