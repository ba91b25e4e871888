"""Command-line flags for decoding, generated from the registered decoders' options.

``recognizer-transcribe`` and ``recognizer-tune`` both call :func:`add_decoding_arguments` and
:func:`decoding_options`, so a registered decoder's options are flags of both without any edit here:
``--decoder`` chooses among the registered decoders, and each option becomes ``--<name-with-dashes>``
(or the ``flag`` its declaration gives, e.g. ``--beam`` for ``beam_size``) with its declared help.
An option several decoders take is one flag; when their defaults differ, the help lists them.

The commands' own arguments are :data:`RESERVED` (with their flags, :data:`RESERVED_FLAGS`): ``register``
refuses a decoder option that would take one, and :func:`add_decoding_arguments` refuses a parser
with an argument not in the list, so a command's new flag must be added there (and then no decoder
can collide with it).
"""

from __future__ import annotations

import argparse
import dataclasses
import typing

from .base import (
    DEFAULT_DECODER,
    RESERVED,
    RESERVED_FLAGS,
    DecodingOptions,
    decoder_class,
    decoder_names,
    not_taken_message,
    option_choices,
    option_flag,
    option_type,
    registered_options,
)

__all__ = ["RESERVED", "RESERVED_FLAGS", "add_decoding_arguments", "decoding_options", "flags"]


def flags() -> dict[str, str]:
    """Each option of the registered decoders -> its command-line flag."""
    return {name: option_flag(owners[0][1]) for name, owners in registered_options().items()}


def _or(words: list[str]) -> str:
    return ", ".join(words[:-1]) + " or " + words[-1] if len(words) > 1 else "".join(words)


def _decoder_help() -> str:
    choices = _or([f"{name} ({decoder_class(name).summary})" for name in decoder_names()])
    spelled = flags()
    implied = [
        f"{name} when {_or([spelled[option] for option in decoder_class(name).implied_by])} is given"
        for name in decoder_names()
        if decoder_class(name).implied_by
    ]
    return f"{choices}; default: {', '.join([*implied, f'else {DEFAULT_DECODER}'])}"


def add_decoding_arguments(parser: argparse.ArgumentParser) -> None:
    """``--decoder`` and every registered decoder's options, in a "decoding" group of ``parser``.

    No flag has a default in ``args``: :func:`decoding_options` needs to know which were given (a flag
    the chosen decoder does not take is an error), and each decoder fills in its own defaults.
    The parser's own arguments must be :data:`RESERVED` (a ValueError names any other).
    """
    unreserved = [
        action.option_strings[0] if action.option_strings else action.dest
        for action in parser._actions
        if action.dest not in RESERVED or not set(action.option_strings) <= RESERVED_FLAGS
    ]
    if unreserved:
        raise ValueError(
            f"{parser.prog}: {', '.join(unreserved)} not in recognizer.decoding.arguments.RESERVED; "
            "add the names there, so that no decoder's option can take them"
        )
    group = parser.add_argument_group("decoding")
    group.add_argument("--decoder", choices=decoder_names(), help=_decoder_help())
    spelled = flags()
    for name, owners in registered_options().items():
        cls, field = owners[0]
        help = field.metadata["help"]
        defaults = {decoder.name: f.default for decoder, f in owners}
        if len(owners) > 1 and len({repr(value) for value in defaults.values()}) > 1:
            help += f" (default: {', '.join(f'{decoder} {value}' for decoder, value in defaults.items())})"
        kind = option_type(cls.Options, name)
        settings: dict[str, typing.Any] = {"dest": name, "default": argparse.SUPPRESS, "help": help}
        if kind is bool:
            settings["action"] = argparse.BooleanOptionalAction
        else:
            settings["type"] = kind
            choices = option_choices(cls.Options, name)
            if choices is not None:
                settings["choices"] = choices
        group.add_argument(spelled[name], **settings)


def decoding_options(args: argparse.Namespace) -> DecodingOptions:
    """``DecodingOptions`` from arguments added by :func:`add_decoding_arguments`.

    Without ``--decoder``, the decoder is the one whose ``implied_by`` options were given (``--lm`` or
    ``--lexicon``: ``lm``), else the default (greedy). A given flag the chosen decoder does not take
    is a ValueError naming it and the decoders that take it.
    """
    spelled = flags()
    given = {name: getattr(args, name) for name in spelled if hasattr(args, name)}
    decoder = getattr(args, "decoder", None)
    if decoder is None:
        implied = {
            name: [spelled[o] for o in decoder_class(name).implied_by if o in given]
            for name in decoder_names()
            if any(o in given for o in decoder_class(name).implied_by)
        }
        if len(implied) > 1:
            reasons = "; ".join(
                f"{' and '.join(shown)} {'implies' if len(shown) == 1 else 'imply'} decoder={name!r}"
                for name, shown in implied.items()
            )
            raise ValueError(f"{reasons}: choose one with --decoder")
        decoder = next(iter(implied), DEFAULT_DECODER)
    own = {field.name for field in dataclasses.fields(decoder_class(decoder).Options)}
    foreign = [name for name in given if name not in own]
    if foreign:
        raise ValueError(not_taken_message(decoder, foreign, spelled))
    return DecodingOptions(decoder, **given)
