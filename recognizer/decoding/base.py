"""What a decoder is, the registry of decoders, and the one entry point every caller decodes through.

A decoder is declared in one file: a frozen dataclass of its options (each field made with
:func:`option`, which gives it a help text and, if needed, a flag) and a :class:`Decoder` subclass
that names it, points at those options, says which device it runs on, and is registered::

    @dataclass(frozen=True)
    class ToyOptions:
        boost: float = option(DEFAULT_BOOST, "how much to boost")

    @register
    class ToyDecoder(Decoder):
        name, summary, Options = "toy", "a toy", ToyOptions

        def search(self, log_probs, lengths):
            ...

Everything else follows from that declaration: ``DecodingOptions("toy", boost=2.0)``, ``decode(...)``,
``model.transcribe(files, "toy", boost=2.0)``, ``--model.decoding.decoder toy`` in a config, and the
``--decoder toy --boost 2`` flags of ``recognizer-transcribe`` and ``recognizer-tune``
(``recognizer.decoding.arguments``). The built-in decoders (``greedy``, ``beam``, ``lm``) are declared
the same way in ``greedy.py``, ``beam.py`` and ``flashlight.py``.

This module imports no decoder, so the decoders can import it without a cycle; the package's
``__init__`` imports the built-in ones, which registers them.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import torch
from torch import Tensor

#: the decoder used when none is named (the fastest, and the one training validates with)
DEFAULT_DECODER = "greedy"


@dataclass
class Hypothesis:
    """A decoded label sequence (blank-free) and its log score; what every decoder returns."""

    labels: list[int]
    score: float


def option(default: Any, help: str, *, flag: str | None = None) -> Any:
    """A field of a decoder's options dataclass: its default, its help text (shown by ``--help``), and
    its command-line flag when that is not ``--`` + the field's name with dashes (e.g. ``--beam``)."""
    return dataclasses.field(default=default, metadata={"help": help, "flag": flag})


class Decoder(ABC):
    """A decoder built for one set of options: ``decoder(log_probs, lengths)`` -> n-best per utterance.

    Subclasses set the class attributes and implement :meth:`search`; their ``__init__`` (if any)
    loads what the search needs (an LM, a lexicon) so that a bad file fails before any model runs.

    Class attributes:
        name: what ``--decoder`` and ``DecodingOptions(decoder=...)`` call it.
        summary: a few words for ``--decoder``'s help.
        Options: its options, a frozen dataclass whose fields are made with :func:`option`.
        implied_by: options that select this decoder when none is named (``--lm`` selects ``lm``).
        device: where the search runs: a device name (flashlight's C++ search: ``"cpu"``), or None
            for wherever the log-probabilities are (the batched PyTorch searches). Set it in the class,
            or in ``__init__`` when it depends on the options.
    """

    name: ClassVar[str]
    summary: ClassVar[str]
    Options: ClassVar[type[Any]]
    implied_by: ClassVar[tuple[str, ...]] = ()
    device: str | None = None

    def __init__(self, options: Any, alphabet: str | None = None) -> None:
        """``options``: an instance of ``Options``; ``alphabet``: the tokenizer's, for decoders that spell words."""
        self.options = options
        self.alphabet = alphabet

    @abstractmethod
    def search(self, log_probs: Tensor, lengths: Tensor) -> list[list[Hypothesis]]:
        """N-best hypotheses per utterance, best first, of (batch, time, vocab) log-probabilities
        (already on :attr:`device`, if set) and their (batch,) lengths (on any device)."""

    def __call__(self, log_probs: Tensor, lengths: Tensor) -> list[list[Hypothesis]]:
        """:meth:`search` on :attr:`device` (the log-probabilities are moved there if it is set)."""
        if self.device is not None:
            log_probs = log_probs.to(self.device)
        # inference_mode is cheaper per operation than no_grad: the searches run many small ones.
        with torch.inference_mode():
            return self.search(log_probs, lengths)


_REGISTRY: dict[str, type[Decoder]] = {}
DecoderClass = TypeVar("DecoderClass", bound=type[Decoder])


def register(cls: DecoderClass) -> DecoderClass:
    """Add a decoder class to the registry (usable as a class decorator). Its options are checked now,
    so that a declaration the command line cannot express fails at import, not at ``--help``."""
    if not (isinstance(cls, type) and issubclass(cls, Decoder)):
        raise TypeError(f"{cls!r} is not a Decoder subclass")
    for attribute in ("name", "summary", "Options"):
        if not hasattr(cls, attribute):
            raise TypeError(f"decoder {cls.__name__} has no {attribute!r}")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"a decoder named {cls.name!r} is already registered ({_REGISTRY[cls.name].__qualname__})")
    params = getattr(cls.Options, "__dataclass_params__", None)  # what @dataclass was given
    if params is None or not params.frozen:
        raise TypeError(f"decoder {cls.name!r}: Options must be a frozen dataclass")
    fields = {f.name: f for f in dataclasses.fields(cls.Options)}
    for field in fields.values():
        if "help" not in field.metadata:
            raise TypeError(f"decoder {cls.name!r}: option {field.name!r} has no help text; declare it with option()")
        if field.default is dataclasses.MISSING:
            raise TypeError(f"decoder {cls.name!r}: option {field.name!r} has no default")
        kind = option_type(cls.Options, field.name)
        for other in _REGISTRY.values():
            if field.name in _option_names(other) and option_type(other.Options, field.name) is not kind:
                raise TypeError(
                    f"decoder {cls.name!r}: option {field.name!r} has type {kind.__name__}, "
                    f"but decoder {other.name!r} gives it type {option_type(other.Options, field.name).__name__}"
                )
    unknown = set(cls.implied_by) - set(fields)
    if unknown:
        raise TypeError(f"decoder {cls.name!r}: implied_by names {sorted(unknown)}, which are not its options")
    _REGISTRY[cls.name] = cls
    return cls


def unregister(name: str) -> None:
    """Remove a decoder from the registry (for tests and plugins that are unloaded)."""
    _REGISTRY.pop(name, None)


def decoder_names() -> tuple[str, ...]:
    """The registered decoders, in the order they were registered."""
    return tuple(_REGISTRY)


def decoder_class(name: str) -> type[Decoder]:
    """The registered decoder called ``name``."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown decoder {name!r}; choose from {', '.join(_REGISTRY)}") from None


def registered_options() -> dict[str, list[tuple[type[Decoder], dataclasses.Field]]]:
    """Every option of the registered decoders, in declaration order: name -> [(decoder, field), ...]."""
    owners: dict[str, list[tuple[type[Decoder], dataclasses.Field]]] = {}
    for cls in _REGISTRY.values():
        for field in dataclasses.fields(cls.Options):
            owners.setdefault(field.name, []).append((cls, field))
    return owners


def option_type(options: type[Any], name: str) -> type:
    """The type of an option (``int | None`` -> ``int``): what its flag parses. bool, int, float and str
    are supported; a ``Literal`` of strings is a str with choices (see ``arguments``)."""
    hint = typing.get_type_hints(options)[name]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(members) != 1:
            raise TypeError(f"{options.__name__}.{name}: {hint} is not one type (or one type | None)")
        hint = members[0]
    if typing.get_origin(hint) is typing.Literal:
        return str
    if hint not in (bool, int, float, str):
        raise TypeError(f"{options.__name__}.{name}: options must be bool, int, float or str (or | None), not {hint}")
    return typing.cast(type, hint)


def accepts_none(options: type[Any], name: str) -> bool:
    """Whether None is a value of the option (``token_beam: int | None``: None means every label)."""
    hint = typing.get_type_hints(options)[name]
    return typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in typing.get_args(hint)


def _option_names(cls: type[Decoder]) -> set[str]:
    return {f.name for f in dataclasses.fields(cls.Options)}


def not_taken_message(decoder: str, names: Iterable[str], spell: Mapping[str, str] | None = None) -> str:
    """One line saying that ``decoder`` does not take these options, and which decoders do.

    ``spell`` maps an option to how the user wrote it (its flag on the command line)."""
    names = list(names)
    shown = ", ".join((spell or {}).get(n, n) for n in names)
    owners = [cls.name for cls in _REGISTRY.values() if set(names) <= _option_names(cls)]
    known = set().union(*(_option_names(cls) for cls in _REGISTRY.values()))
    if not set(names) <= known:
        unknown = ", ".join((spell or {}).get(n, n) for n in names if n not in known)
        return f"unknown decoding option {unknown}; the decoders' options are {', '.join(sorted(known))}"
    verb = "is not an option" if len(names) == 1 else "are not options"
    hint = f"use {' or '.join(f'decoder={o!r}' for o in owners)}" if owners else "no one decoder takes them all"
    return f"{shown} {verb} of decoder={decoder!r}; {hint}"


@dataclass(frozen=True, init=False)
class DecodingOptions:
    """A decoder's name and its options: how to turn log-probabilities into text.

    ``DecodingOptions("beam", beam_size=16, nbest=3)``; the options are those of the decoder's
    ``Options`` dataclass (``greedy``: none; ``beam``: ``beam.BeamOptions``; ``lm``:
    ``flashlight.LMOptions``), readable as attributes (``options.beam_size``). An option the decoder
    does not take is a ValueError that says which decoder takes it. Build the decoder with
    :func:`build_decoder`; store it with :meth:`to_dict`, read it back with :meth:`from_config`.
    """

    decoder: str
    settings: Any  #: the decoder's ``Options`` instance

    def __init__(self, decoder: str = DEFAULT_DECODER, **options: Any) -> None:
        cls = decoder_class(decoder)
        foreign = [name for name in options if name not in _option_names(cls)]
        if foreign:
            raise ValueError(not_taken_message(decoder, foreign))
        object.__setattr__(self, "decoder", decoder)
        object.__setattr__(self, "settings", cls.Options(**options))

    def __getattr__(self, name: str) -> Any:
        # Only called for what the dataclass itself lacks: the decoder's options, e.g. options.lm.
        # Dunder lookups (pickle, copy) and a half-built instance must not recurse into settings.
        if name.startswith("__") or "settings" not in self.__dict__:
            raise AttributeError(name)
        try:
            return getattr(self.settings, name)
        except AttributeError:
            raise AttributeError(f"decoder {self.decoder!r} has no option {name!r}") from None

    def replace(self, **changes: Any) -> DecodingOptions:
        """A copy with some options (or the decoder) changed; checked like the constructor."""
        decoder = changes.pop("decoder", self.decoder)
        return DecodingOptions(decoder, **{**dataclasses.asdict(self.settings), **changes})

    def to_dict(self) -> dict[str, Any]:
        """Plain values, ``{"decoder": name, **its options}``: for checkpoints (read with weights_only)
        and configs."""
        return {"decoder": self.decoder, **dataclasses.asdict(self.settings)}

    @classmethod
    def from_config(cls, value: DecodingOptions | Mapping[str, Any] | None) -> DecodingOptions:
        """Options from a checkpoint or config: a dict as :meth:`to_dict` writes it (None: the defaults).

        Checkpoints written before decoders had options of their own store every option of every
        decoder (``{"decoder": "greedy", "beam_size": None, "lm": None, "lm_weight": 1.0, ...}``):
        an option the decoder does not take is dropped when it holds None or another decoder's
        default, and None for an option that has no None value means its default. Any other
        option the decoder does not take is an error, as in the constructor.
        """
        if value is None:
            return cls()
        if isinstance(value, DecodingOptions):
            return value
        values = dict(value)
        name = values.pop("decoder", None) or DEFAULT_DECODER
        decoder = decoder_class(name)
        own = _option_names(decoder)
        defaults = registered_options()
        kept, foreign = {}, []
        for key, item in values.items():
            if key in own:
                if item is not None or accepts_none(decoder.Options, key):
                    kept[key] = item
            elif not (item is None or any(item == f.default for _, f in defaults.get(key, []))):
                foreign.append(key)
        if foreign:
            raise ValueError(not_taken_message(name, foreign))
        return cls(name, **kept)


def build_decoder(options: DecodingOptions | None = None, alphabet: str | None = None) -> Decoder:
    """The decoder for ``options`` (default: greedy), built now: an LM or lexicon is loaded here, so a bad
    file fails before any model runs. ``alphabet`` (the tokenizer's) is needed by decoders that spell
    words (``lm``)."""
    options = options or DecodingOptions()
    return decoder_class(options.decoder)(options.settings, alphabet)


def decode(
    log_probs: Tensor,
    lengths: Tensor,
    options: DecodingOptions | Decoder | None = None,
    alphabet: str | None = None,
) -> list[list[Hypothesis]]:
    """N-best label sequences with their scores, best first, per utterance: the one entry point.

    ``options``: a ``DecodingOptions`` (default: greedy), or a decoder already built (to decode many
    batches with one). Scores: ``greedy`` the best path's log-probability (one hypothesis); ``beam``
    the prefix's log-probability; ``lm`` the acoustic log-probability plus the weighted LM score and
    bonuses.
    """
    decoder = options if isinstance(options, Decoder) else build_decoder(options, alphabet)
    return decoder(log_probs, lengths)
