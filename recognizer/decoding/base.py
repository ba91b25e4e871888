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

Where a decoder lives decides when it is registered: a module of the ``recognizer.decoding`` package
itself is found and imported the first time the registry is asked for its names, a decoder or the
options (:func:`decoder_names`, :func:`decoder_class`, ...), so adding a decoder there is adding its
file, nothing else. A decoder in another package registers when its module is imported: import it
before building a parser or naming the decoder (a checkpoint whose stored decoding names a decoder
that is not registered is validated with greedy, with a warning).

``register`` refuses an option whose flag another decoder's option or the commands themselves use
(:data:`RESERVED`), so every registered decoder's flags fit on both commands.

This module imports no decoder, so the decoders can import it without a cycle.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import pkgutil
import sys
import types
import typing
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, TypeVar

import torch
from torch import Tensor

log = logging.getLogger(__name__)

#: the decoder used when none is named (the fastest, and the one training validates with)
DEFAULT_DECODER = "greedy"
#: the built-in decoders, first among --decoder's choices in this order (the others follow as registered)
BUILT_IN = ("greedy", "beam", "lm")
#: what ``recognizer-transcribe`` and ``recognizer-tune`` call their own arguments (argparse's ``dest``;
#: the flag is ``--`` + the name with dashes), and ``DecodingOptions``' own attributes: no decoder's
#: option may take one of these names or flags (``arguments.RESERVED``, checked by the commands' tests)
RESERVED = (
    "files",
    "checkpoint",
    "manifest",
    "output",
    "resume",
    "on_error",
    "device",
    "timestamps",
    "max_frames",
    "no_split_lines",
    "stream",
    "chunk_ms",
    "lm_weights",
    "word_scores",
    "unk_scores",
    "char_lm_weights",
    "help",
    "decoder",
    "settings",
)
#: the flags of :data:`RESERVED` (and argparse's ``-h``)
RESERVED_FLAGS = frozenset({"-h", *("--" + name.replace("_", "-") for name in RESERVED)})


@dataclass
class Hypothesis:
    """A decoded label sequence (blank-free) and its log score; what every decoder returns."""

    labels: list[int]
    score: float


def option(default: Any, help: str, *, flag: str | None = None) -> Any:
    """A field of a decoder's options dataclass: its default, its help text (shown by ``--help``), and
    its command-line flag when that is not ``--`` + the field's name with dashes (e.g. ``--beam``)."""
    return dataclasses.field(default=default, metadata={"help": help, "flag": flag})


class DecodingStream(Protocol):
    """A search fed one input's log-probabilities piece by piece (``Decoder.stream``)."""

    def advance(self, log_probs: Tensor) -> None:
        """The next (frames, vocab) log-probabilities."""

    def finish(self) -> None:
        """The input has ended."""

    def copy(self) -> DecodingStream:
        """An independent copy, to read ahead without changing this one."""

    def best(self) -> list[int]:
        """The labels of the best reading so far."""

    def agreed(self) -> list[int]:
        """The beginning of ``best`` that later frames cannot change."""


class Decoder(ABC):
    """A decoder built for one set of options: ``decoder(log_probs, lengths)`` -> n-best per utterance.

    Subclasses set the class attributes and implement :meth:`search`; their ``__init__`` (if any)
    loads what the search needs (an LM, a lexicon) so that a bad file fails before any model runs.

    Class attributes:
        name: what ``--decoder`` and ``DecodingOptions(decoder=...)`` call it.
        summary: a few words for ``--decoder``'s help.
        Options: its options, a frozen dataclass whose fields are made with :func:`option`.
        implied_by: options that select this decoder when none is named (``--lm`` selects ``lm``).
        device: where the search runs: a device name (the compiled and C++ searches: ``"cpu"``), or
            None for wherever the log-probabilities are. Set it in the class, or in ``__init__`` when it
            depends on the options.
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

    def stream(self) -> DecodingStream:
        """A search over one input whose frames arrive in pieces (``recognizer.streaming``'s partial
        results). Greedy and prefix beam search keep their state from piece to piece; a decoder without
        a streaming search of its own returns one that reads ahead for it (``lm``: the prefix beam)."""
        raise NotImplementedError(f"decoder {self.name!r} has no streaming search")

    def __call__(self, log_probs: Tensor, lengths: Tensor) -> list[list[Hypothesis]]:
        """:meth:`search` on :attr:`device` (the log-probabilities are moved there if it is set)."""
        if self.device is not None:
            log_probs = log_probs.to(self.device)
        # inference_mode is cheaper per operation than no_grad: the searches run many small ones.
        with torch.inference_mode():
            return self.search(log_probs, lengths)


_REGISTRY: dict[str, type[Decoder]] = {}
_discovered = False
DecoderClass = TypeVar("DecoderClass", bound=type[Decoder])


def _registry() -> dict[str, type[Decoder]]:
    """The registry, after importing every module of this package once (each registers its decoders)."""
    global _discovered
    if not _discovered:
        _discovered = True  # first: a module imported here may ask the registry again
        package = __name__.rpartition(".")[0]
        try:
            for module in pkgutil.iter_modules(sys.modules[package].__path__):
                if not module.name.startswith("_"):
                    importlib.import_module(f"{package}.{module.name}")
        except BaseException:
            _discovered = False
            raise
    return _REGISTRY


def option_flag(field: dataclasses.Field) -> str:
    """The command-line flag of an option: its declared ``flag``, else ``--`` + its name with dashes."""
    return field.metadata.get("flag") or "--" + field.name.replace("_", "-")


def _flags(cls: type[Decoder], field: dataclasses.Field) -> list[str]:
    """Every flag an option adds to a parser (a bool's ``--no-...`` too)."""
    flag = option_flag(field)
    return [flag, "--no-" + flag.lstrip("-")] if option_type(cls.Options, field.name) is bool else [flag]


def register(cls: DecoderClass) -> DecoderClass:
    """Add a decoder class to the registry (usable as a class decorator). Its options are checked now,
    so that a declaration the command line cannot express fails at import, not at ``--help``: an
    option's flag must be free (not another decoder's option's, unless it is the same option with the
    same type, and not one of the commands' own, :data:`RESERVED_FLAGS`).

    Registering does not discover this package's decoders first: whichever of two colliding decoders
    registers second is refused."""
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
    _check_flags(cls, list(fields.values()))
    unknown = set(cls.implied_by) - set(fields)
    if unknown:
        raise TypeError(f"decoder {cls.name!r}: implied_by names {sorted(unknown)}, which are not its options")
    _REGISTRY[cls.name] = cls
    return cls


def _check_flags(cls: type[Decoder], fields: list[dataclasses.Field]) -> None:
    """A ValueError naming the decoder and option whose name or flag is taken (see :func:`register`)."""
    taken: dict[str, tuple[str, str]] = {}  # flag -> (decoder, option) of the other decoders
    for other in (_REGISTRY[name] for name in _ordered(_REGISTRY)):
        if other is not cls:
            for field in dataclasses.fields(other.Options):
                for flag in _flags(other, field):
                    taken.setdefault(flag, (other.name, field.name))
    own: dict[str, str] = {}
    for field in fields:
        where = f"decoder {cls.name!r}: option {field.name!r}"
        if field.name in RESERVED:
            raise ValueError(f"{where}: {field.name!r} is reserved (the commands' own arguments); rename the option")
        for flag in _flags(cls, field):
            if flag in RESERVED_FLAGS:
                raise ValueError(
                    f"{where}: its flag {flag} is one of the commands' own; rename it or give another flag"
                )
            if own.setdefault(flag, field.name) != field.name:
                raise ValueError(f"{where}: its flag {flag} is also that of its option {own[flag]!r}")
            holder = taken.get(flag)
            if holder is not None and holder[1] != field.name:
                raise ValueError(f"{where}: its flag {flag} is already option {holder[1]!r} of decoder {holder[0]!r}")
        for other in _REGISTRY.values():
            shared = {f.name: f for f in dataclasses.fields(other.Options)}.get(field.name)
            if other is not cls and shared is not None and option_flag(shared) != option_flag(field):
                raise ValueError(
                    f"{where}: its flag {option_flag(field)} differs from {option_flag(shared)}, "
                    f"the flag of the same option of decoder {other.name!r}"
                )


def unregister(name: str) -> None:
    """Remove a decoder from the registry (for tests and plugins that are unloaded)."""
    _REGISTRY.pop(name, None)


def decoder_names() -> tuple[str, ...]:
    """The registered decoders: the built-in ones (:data:`BUILT_IN`), then the others as registered."""
    return _ordered(_registry())


def _ordered(registry: dict[str, type[Decoder]]) -> tuple[str, ...]:
    names = list(registry)
    return tuple(sorted(names, key=lambda n: BUILT_IN.index(n) if n in BUILT_IN else len(BUILT_IN) + names.index(n)))


def decoder_class(name: str) -> type[Decoder]:
    """The registered decoder called ``name``."""
    try:
        return _registry()[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown decoder {name!r}; choose from {', '.join(decoder_names())}") from None


def registered_options() -> dict[str, list[tuple[type[Decoder], dataclasses.Field]]]:
    """Every option of the registered decoders, in declaration order: name -> [(decoder, field), ...]."""
    owners: dict[str, list[tuple[type[Decoder], dataclasses.Field]]] = {}
    for cls in map(decoder_class, decoder_names()):
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


def option_choices(options: type[Any], name: str) -> tuple[Any, ...] | None:
    """The values of a ``Literal`` option (``mode: Literal["a", "b"]``), else None."""
    hint = typing.get_type_hints(options)[name]
    literal = [a for a in (hint, *typing.get_args(hint)) if typing.get_origin(a) is typing.Literal]
    return typing.get_args(literal[0]) if literal else None


_KINDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def checked_value(cls: type[Decoder], name: str, value: Any) -> Any:
    """``value`` if it is of the option's declared type (an int for a float option is made a float), else
    a ValueError naming the decoder and the option: configs and checkpoints give plain values of any type."""
    kind, choices = option_type(cls.Options, name), option_choices(cls.Options, name)
    if value is None and accepts_none(cls.Options, name):
        return value
    if choices is not None:
        good = isinstance(value, str) and value in choices
        wanted = "one of " + ", ".join(map(repr, choices))
    else:
        # bool is an int to Python, never to an option; a float option takes an int
        good = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
        good |= kind is float and isinstance(value, int) and not isinstance(value, bool)
        wanted = _KINDS[kind]
    if not good:
        wanted += " or None" if accepts_none(cls.Options, name) else ""
        raise ValueError(f"decoder {cls.name!r}: option {name!r} must be {wanted}, got {value!r}")
    return float(value) if kind is float else value


def _option_names(cls: type[Decoder]) -> set[str]:
    return {f.name for f in dataclasses.fields(cls.Options)}


def not_taken_message(decoder: str, names: Iterable[str], spell: Mapping[str, str] | None = None) -> str:
    """One line saying that ``decoder`` does not take these options, and which decoders do.

    ``spell`` maps an option to how the user wrote it (its flag on the command line)."""
    names = list(names)
    shown = ", ".join((spell or {}).get(n, n) for n in names)
    registry = [decoder_class(name) for name in decoder_names()]
    owners = [cls.name for cls in registry if set(names) <= _option_names(cls)]
    known = set().union(*(_option_names(cls) for cls in registry))
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
    does not take is a ValueError that says which decoder takes it, and so is a value not of the
    option's type. Build the decoder with :func:`build_decoder`; store it with :meth:`to_dict`, read it
    back with :meth:`from_config` (a config) or :meth:`from_checkpoint` (what a checkpoint stores).
    """

    decoder: str
    settings: Any  #: the decoder's ``Options`` instance

    def __init__(self, decoder: str = DEFAULT_DECODER, **options: Any) -> None:
        cls = decoder_class(decoder)
        foreign = [name for name in options if name not in _option_names(cls)]
        if foreign:
            raise ValueError(not_taken_message(decoder, foreign))
        options = {name: checked_value(cls, name, value) for name, value in options.items()}
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

    @classmethod
    def from_checkpoint(cls, value: DecodingOptions | Mapping[str, Any] | None) -> DecodingOptions:
        """What a checkpoint stores, read leniently: it is only the default of validation, and must not
        make the checkpoint unloadable. Never raises.

        Read as :meth:`from_config`, except that an option the decoder does not take (checkpoints of the
        flat options allowed ``greedy`` with ``nbest=3``) or whose value is not of its type is dropped,
        with a warning naming it; a decoder that is not registered, or options that cannot be used
        together, give greedy, with a warning.
        """
        if isinstance(value, DecodingOptions):
            return value
        if value is None:
            return cls()
        if not isinstance(value, Mapping):
            log.warning("the checkpoint's decoding %r is not a mapping; decoding with %s", value, DEFAULT_DECODER)
            return cls()
        values = dict(value)
        name = values.pop("decoder", None) or DEFAULT_DECODER
        if not isinstance(name, str) or name not in _registry():
            log.warning(
                "the checkpoint's decoder %r is not registered (%s); decoding with %s instead",
                name,
                ", ".join(decoder_names()),
                DEFAULT_DECODER,
            )
            return cls()
        decoder = _registry()[name]
        own = _option_names(decoder)
        defaults = registered_options()
        kept, dropped = {}, []
        for key, item in values.items():
            if key in own:
                if item is None and not accepts_none(decoder.Options, key):
                    continue  # the first format's None: the default
                try:
                    kept[key] = checked_value(decoder, key, item)
                except ValueError as error:
                    dropped.append(f"{key}={item!r} ({error})")
            elif not (item is None or any(item == f.default for _, f in defaults.get(key, []))):
                dropped.append(f"{key}={item!r} (not an option of decoder {name!r})")
        if dropped:
            log.warning("the checkpoint's decoding: dropped %s", "; ".join(dropped))
        try:
            return cls(name, **kept)
        except ValueError as error:
            log.warning(
                "the checkpoint's decoding cannot be used (%s); decoding with %s instead", error, DEFAULT_DECODER
            )
            return cls()


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
