"""The decoder registry: a decoder declared in one place is decoded with, configured and given flags everywhere."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import pickle
import re
import shutil
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest
import torch
from torch import Tensor

from recognizer import transcribe, tune
from recognizer.checkpoint import read_checkpoint
from recognizer.decoding import (
    Decoder,
    DecodingOptions,
    Hypothesis,
    base,
    build_decoder,
    decode,
    decoder_names,
    option,
    register,
    unregister,
)
from recognizer.decoding.arguments import RESERVED, RESERVED_FLAGS, add_decoding_arguments, decoding_options
from recognizer.lightning_module import CTCModule

FIXTURES = Path(__file__).parent / "fixtures"


# ---------------------------------------------------------------------------------------- a toy decoder
# All it takes to add a decoder: an options dataclass, a Decoder subclass, and register().
DEFAULT_LABEL = 1


@dataclass(frozen=True)
class ToyOptions:
    label: int = option(DEFAULT_LABEL, "the label spelled once per frame")


class ToyDecoder(Decoder):
    """Spells ``label`` once per frame, whatever the log-probabilities say; it needs only their shape,
    so it can run on the "meta" device, which holds no data: only a tensor moved there reaches it."""

    name = "toy"
    summary = "one label per frame"
    Options = ToyOptions
    implied_by = ("label",)
    device = "meta"
    options: ToyOptions
    seen: ClassVar[list[torch.device]] = []  # where search() received its input

    def search(self, log_probs: Tensor, lengths: Tensor) -> list[list[Hypothesis]]:
        ToyDecoder.seen.append(log_probs.device)
        return [[Hypothesis([self.options.label] * int(n), 0.0)] for n in lengths.tolist()]


@pytest.fixture
def toy():
    register(ToyDecoder)
    ToyDecoder.seen.clear()
    yield ToyDecoder
    unregister("toy")


def test_a_registered_decoder_decodes_through_the_entry_point(toy):
    log_probs, lengths = torch.randn(2, 5, 4).log_softmax(-1), torch.tensor([5, 3])
    hypotheses = decode(log_probs, lengths, DecodingOptions("toy", label=2))
    assert [[h.labels for h in n] for n in hypotheses] == [[[2] * 5], [[2] * 3]]
    assert toy.seen == [torch.device("meta")]  # moved to the decoder's own device
    assert [[h.labels for h in n] for n in decode(log_probs, lengths, build_decoder(DecodingOptions("toy")))] == [
        [[DEFAULT_LABEL] * 5],
        [[DEFAULT_LABEL] * 3],
    ]
    with pytest.raises(ValueError, match="label is not an option of decoder='beam'; use decoder='toy'"):
        DecodingOptions("beam", label=2)
    # configs and checkpoints name it the same way
    assert DecodingOptions.from_config({"decoder": "toy", "label": 3}) == DecodingOptions("toy", label=3)
    assert DecodingOptions("toy", label=3).to_dict() == {"decoder": "toy", "label": 3}


def test_a_registered_decoder_decodes_through_the_recognizer_on_its_device(toy, monkeypatch):
    model = transcribe.load(FIXTURES / "speech-v0.ckpt", device="cpu")
    log_probs = torch.load(FIXTURES / "speech-v0-log-probs.pt")
    letter = model.tokenizer.decode([3])
    transcripts = model.decode_log_probs(log_probs, "toy", label=3)
    assert [t.text for t in transcripts] == [letter * len(e) for e in log_probs]
    assert toy.seen == [torch.device("meta")]
    # Without a device of its own, a decoder gets the log-probabilities on the model's device.
    monkeypatch.setattr(ToyDecoder, "device", None)
    model.decode_log_probs(log_probs, DecodingOptions("toy"))
    assert toy.seen[-1] == model.device == torch.device("cpu")


@pytest.mark.parametrize("build_parser", [transcribe.build_parser, tune.build_parser], ids=["transcribe", "tune"])
def test_a_registered_decoder_gets_flags_in_both_commands(toy, build_parser, capsys):
    parser = build_parser()
    required = ["--checkpoint", "m.ckpt", *(["a.wav"] if build_parser is transcribe.build_parser else [])]
    if build_parser is tune.build_parser:
        required += ["--manifest", "dev.jsonl"]
    args = parser.parse_args([*required, "--decoder", "toy", "--label", "4"])
    assert decoding_options(args) == DecodingOptions("toy", label=4)
    assert decoding_options(parser.parse_args([*required, "--label", "4"])).decoder == "toy"  # implied_by
    with pytest.raises(ValueError, match="^--lm implies decoder='lm'; --label implies decoder='toy': choose one"):
        decoding_options(parser.parse_args([*required, "--label", "4", "--lm", "x.arpa"]))
    with pytest.raises(ValueError, match="^--label is not an option of decoder='beam'; use decoder='toy'$"):
        decoding_options(parser.parse_args([*required, "--decoder", "beam", "--label", "4"]))
    with pytest.raises(SystemExit):
        parser.parse_args(["--help"])
    help = capsys.readouterr().out
    assert "--label LABEL" in help and "the label spelled once per frame" in help
    assert "toy (one label per frame)" in " ".join(help.split())
    unregister("toy")
    with pytest.raises(SystemExit):  # and once it is gone, so is its flag
        build_parser().parse_args([*required, "--label", "4"])


# -------------------------------------------------------------------------------------- the built-ins
def parse(*argv: str) -> DecodingOptions:
    parser = argparse.ArgumentParser()
    add_decoding_arguments(parser)
    return decoding_options(parser.parse_args(argv))


def test_built_in_flags_keep_their_names_defaults_and_rules():
    assert decoder_names()[:3] == ("greedy", "beam", "lm")
    assert parse() == DecodingOptions("greedy")
    assert parse("--decoder", "beam", "--beam", "6", "--nbest", "3", "--token-beam", "5", "--blank-skip", "1") == (
        DecodingOptions("beam", beam_size=6, nbest=3, token_beam=5, blank_skip=1.0)
    )
    # an LM or a lexicon selects the LM decoder, which fills in its own defaults (a wider beam)
    lm = parse(
        "--lm", "w.arpa", "--lm-weight", "1.5", "--word-score", "2", "--unk-score", "-5", "--beam-threshold", "9"
    )
    assert lm == DecodingOptions(
        "lm", lm="w.arpa", lm_weight=1.5, word_score=2.0, unk_score=-5.0, beam_threshold=9.0, beam_size=32
    )
    assert parse("--lexicon", "l.txt").decoder == "lm"
    assert parse("--decoder", "beam").beam_size == 8
    with pytest.raises(ValueError, match="^--lm is not an option of decoder='beam'; use decoder='lm'$"):
        parse("--decoder", "beam", "--lm", "w.arpa")
    with pytest.raises(ValueError, match="--lm-weight is not an option of decoder='greedy'; use decoder='lm'"):
        parse("--lm-weight", "2")
    with pytest.raises(
        ValueError, match="--nbest is not an option of decoder='greedy'; use decoder='beam' or decoder='lm'"
    ):
        parse("--nbest", "3")
    with pytest.raises(ValueError, match="needs an LM file"):
        parse("--decoder", "lm")


def test_help_lists_different_defaults_of_one_flag(capsys):
    parser = argparse.ArgumentParser()
    add_decoding_arguments(parser)
    parser.print_help()
    help = " ".join(capsys.readouterr().out.split())
    assert "--beam BEAM_SIZE hypotheses kept per frame (default: beam 8, lm 32)" in help
    assert "default: lm when --lm or --lexicon is given, else greedy" in help


def test_options_are_checked_and_kept_as_plain_values():
    with pytest.raises(ValueError, match="unknown decoder 'viterbi'; choose from greedy, beam, lm"):
        DecodingOptions("viterbi")
    with pytest.raises(ValueError, match="^lm, lexicon are not options of decoder='beam'; use decoder='lm'$"):
        DecodingOptions("beam", lm="w.arpa", lexicon="l.txt")
    with pytest.raises(ValueError, match="unknown decoding option colour"):
        DecodingOptions("beam", colour="red")
    with pytest.raises(ValueError, match="beam_size must be at least 1"):
        DecodingOptions("lm", lm="w.arpa", beam_size=0)
    options = DecodingOptions("lm", lm="w.arpa", nbest=2)
    assert options.lm == "w.arpa" and options.beam_size == 32 and options.nbest == 2
    with pytest.raises(AttributeError, match="no option 'lm'"):
        DecodingOptions("beam").lm  # noqa: B018
    assert options.replace(lm_weight=2.0).lm_weight == 2.0 and options.lm_weight == 1.0
    with pytest.raises(ValueError, match="use decoder='lm'"):
        options.replace(decoder="beam")  # the LM options go with it
    plain = options.to_dict()
    assert plain["decoder"] == "lm" and DecodingOptions(**plain) == options == DecodingOptions.from_config(plain)
    assert pickle.loads(pickle.dumps(options)) == options and len({options, options.replace()}) == 1


def test_decoding_settings_of_old_checkpoints_still_read():
    # What checkpoints written before the registry hold: every option of every decoder.
    old = {
        "decoder": "greedy",
        "beam_size": None,
        "nbest": 1,
        "token_beam": None,
        "blank_skip": 0.999,
        "lm": None,
        "lexicon": None,
        "lm_weight": 1.0,
        "word_score": 0.0,
        "unk_score": float("-inf"),
        "beam_threshold": 15.0,
    }
    assert DecodingOptions.from_config(old) == DecodingOptions("greedy")
    assert DecodingOptions.from_config({**old, "decoder": "beam", "nbest": 3}) == DecodingOptions("beam", nbest=3)
    lm = DecodingOptions.from_config({**old, "decoder": "lm", "lm": "w.arpa", "lm_weight": 0.5, "beam_size": 16})
    assert lm == DecodingOptions("lm", lm="w.arpa", lm_weight=0.5, beam_size=16)
    assert DecodingOptions.from_config({**old, "decoder": "beam", "token_beam": None}).token_beam is None
    with pytest.raises(ValueError, match="use decoder='lm'"):  # a setting that mattered is not dropped silently
        DecodingOptions.from_config({**old, "decoder": "beam", "lm_weight": 2.0})
    assert DecodingOptions.from_config(None) == DecodingOptions()

    model = transcribe.load(FIXTURES / "speech-v0.ckpt", device="cpu")  # written by the code before the registry
    assert model.model.decoding == DecodingOptions("greedy")
    assert model.model.settings["decoding"] == {"decoder": "greedy"}


def test_a_declaration_the_command_line_cannot_express_is_refused():
    @dataclass(frozen=True)
    class NoHelp:
        width: int = dataclasses.field(default=3)

    @dataclass(frozen=True)
    class Clash:
        beam_size: str = option("8", "a beam size of another type")

    @dataclass
    class Mutable:
        width: int = option(3, "a width")

    def decoder(options: type, name: str = "bad") -> type[Decoder]:
        def search(self, log_probs, lengths):
            return []

        return type("Bad", (Decoder,), {"name": name, "summary": "bad", "Options": options, "search": search})

    with pytest.raises(TypeError, match="'width' has no help text"):
        register(decoder(NoHelp))
    with pytest.raises(TypeError, match="'beam_size' has type str, but decoder 'beam' gives it type int"):
        register(decoder(Clash))
    with pytest.raises(TypeError, match="frozen dataclass"):
        register(decoder(Mutable))
    with pytest.raises(ValueError, match="already registered"):
        register(decoder(ToyOptions, name="beam"))
    assert "bad" not in decoder_names()


def test_decoding_has_no_import_cycle_and_loads_flashlight_only_for_the_lm_decoder():
    import ast
    import subprocess
    import sys

    import recognizer.decoding

    package = Path(recognizer.decoding.__file__).parent
    modules = {path.stem for path in package.glob("*.py")} - {"__init__"}
    graph = {}
    for name in modules:
        tree = ast.parse((package / f"{name}.py").read_text())
        imported = set()
        for node in ast.walk(tree):  # lazy imports inside functions count too: they still make a cycle
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                imported |= {node.module} if node.module else {alias.name for alias in node.names}
        graph[name] = imported & modules

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(n == goal or (n not in seen and reaches(n, goal, seen | {n})) for n in graph[start])

    assert not [name for name in modules if reaches(name, name, set())], graph
    assert graph["base"] == set()  # the contract depends on no decoder

    script = (
        "import sys, torch\n"
        "from recognizer import transcribe, tune, lightning_module\n"
        "from recognizer.decoding import DecodingOptions, decode\n"
        "for name in ('greedy', 'beam'):\n"
        "    decode(torch.randn(1, 4, 3).log_softmax(-1), torch.tensor([4]), DecodingOptions(name))\n"
        "print(sorted(m for m in sys.modules if m.startswith('flashlight')))\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout.strip() == "[]", run.stderr


# ------------------------------------------------------------------------- old checkpoints, lenient reading
def checkpoint_storing(tmp_path: Path, decoding: dict) -> Path:
    """The v0 fixture with another stored decoding."""
    path = tmp_path / "model.ckpt"
    shutil.copy(FIXTURES / "speech-v0.ckpt", path)
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["hyper_parameters"]["decoding"] = decoding
    torch.save(checkpoint, path)
    return path


@pytest.mark.parametrize(
    "stored, expected, warned",
    [
        (
            {"decoder": "greedy", "nbest": 3},
            DecodingOptions("greedy"),
            ["nbest=3", "not an option of decoder 'greedy'"],
        ),
        ({"decoder": "greedy", "beam_size": 16, "nbest": 1}, DecodingOptions("greedy"), ["beam_size=16"]),
        ({"decoder": "mine", "width": 4}, DecodingOptions("greedy"), ["decoder 'mine' is not registered"]),
        ({"decoder": "beam", "beam_size": "x", "nbest": 2}, DecodingOptions("beam", nbest=2), ["beam_size='x'"]),
        ({"decoder": "lm", "lm_weight": 2.0}, DecodingOptions("greedy"), ["needs an LM file"]),
    ],
    ids=["greedy-nbest", "greedy-beam-size", "unknown-decoder", "wrong-type", "unusable"],
)
def test_old_checkpoints_with_options_their_decoder_ignores_still_load(tmp_path, caplog, stored, expected, warned):
    path = checkpoint_storing(tmp_path, stored)
    with caplog.at_level(logging.WARNING, logger="recognizer.decoding.base"):
        model = transcribe.load(path, device="cpu")
    assert model.model.decoding == expected and model.model.settings["decoding"] == expected.to_dict()
    assert all(word in caplog.text for word in warned), caplog.text
    # what the CLI's --ckpt_path hands to its parser: read_checkpoint, normalized the same way
    assert read_checkpoint(path)["hyper_parameters"]["decoding"] == expected.to_dict()
    # configs and the Python API stay strict
    if stored["decoder"] == "greedy":
        with pytest.raises(ValueError, match="is not an option of decoder='greedy'"):
            DecodingOptions.from_config(stored)
        settings = {k: model.model.settings[k] for k in ("tokenizer", "frontend")}
        with pytest.raises(ValueError, match="is not an option of decoder='greedy'"):
            CTCModule(**settings, decoding=stored)


def test_the_old_flat_default_decoding_loads_without_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="recognizer.decoding.base"):
        assert transcribe.load(FIXTURES / "speech-v0.ckpt", device="cpu").model.decoding == DecodingOptions()
    assert not caplog.records


# ------------------------------------------------------------------------------------- option value types
@pytest.mark.parametrize(
    "decoder, options, message",
    [
        ("beam", {"beam_size": "abc"}, "decoder 'beam': option 'beam_size' must be an integer, got 'abc'"),
        ("beam", {"nbest": 2.5}, "decoder 'beam': option 'nbest' must be an integer, got 2.5"),
        ("beam", {"nbest": True}, "decoder 'beam': option 'nbest' must be an integer, got True"),
        ("beam", {"token_beam": "5"}, "decoder 'beam': option 'token_beam' must be an integer or None, got '5'"),
        ("beam", {"blank_skip": "high"}, "decoder 'beam': option 'blank_skip' must be a number or None, got 'high'"),
        ("lm", {"lm": "w.arpa", "lm_weight": None}, "decoder 'lm': option 'lm_weight' must be a number, got None"),
        ("lm", {"lm": 3}, "decoder 'lm': option 'lm' must be a string or None, got 3"),
    ],
)
def test_option_values_must_have_the_declared_type(decoder, options, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        DecodingOptions(decoder, **options)
    if None not in options.values():  # from_config reads None as the default (the first checkpoints' way)
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            DecodingOptions.from_config({"decoder": decoder, **options})


def test_option_values_of_a_wider_declared_type_are_accepted():
    assert DecodingOptions("beam", blank_skip=1).blank_skip == 1.0  # an int for a float
    assert isinstance(DecodingOptions("beam", blank_skip=1).to_dict()["blank_skip"], float)
    assert DecodingOptions("beam", token_beam=None, blank_skip=None).token_beam is None
    assert DecodingOptions("lm", lm="w.arpa", lm_weight=2).lm_weight == 2.0


def test_a_config_with_a_wrongly_typed_option_is_one_line_error(tmp_path):
    settings = torch.load(FIXTURES / "speech-v0.ckpt", weights_only=True)["hyper_parameters"]
    with pytest.raises(ValueError, match="^decoder 'beam': option 'beam_size' must be an integer, got 'abc'$"):
        CTCModule(settings["tokenizer"], settings["frontend"], decoding={"decoder": "beam", "beam_size": "abc"})


# ------------------------------------------------------------------------------------------ flag collisions
def bad_decoder(options: type, name: str = "bad") -> type[Decoder]:
    def search(self, log_probs, lengths):
        return []

    return type("Bad", (Decoder,), {"name": name, "summary": "bad", "Options": options, "search": search})


def options_with(name: str, kind: type = int, default=1, flag: str | None = None) -> type:
    field = dataclasses.field(default=default, metadata={"help": "h", "flag": flag})
    return dataclasses.make_dataclass("Colliding", [(name, kind, field)], frozen=True)


@pytest.mark.parametrize(
    "options, message",
    [
        (
            options_with("beam"),
            "^decoder 'bad': option 'beam': its flag --beam is already option 'beam_size' of decoder 'beam'$",
        ),
        (
            options_with("width", flag="--nbest"),
            "option 'width': its flag --nbest is already option 'nbest' of decoder 'beam'",
        ),
        (options_with("beam_size"), "option 'beam_size': its flag --beam-size differs from --beam"),
        (
            options_with("where", str, "x", flag="--device"),
            "option 'where': its flag --device is one of the commands' own",
        ),
        (options_with("lm", bool, False), "option 'lm' has type bool, but decoder 'lm' gives it type str"),
        *[
            (options_with(name), f"^decoder 'bad': option '{name}': '{name}' is reserved")
            for name in ("device", "output", "checkpoint", "manifest", "max_frames", "timestamps", "resume")
            + ("files", "on_error", "lm_weights", "word_scores", "decoder", "settings")
        ],
    ],
)
def test_an_option_whose_flag_is_taken_is_refused_at_register(options, message):
    with pytest.raises((ValueError, TypeError), match=message):
        register(bad_decoder(options))
    assert "bad" not in decoder_names()
    for build_parser in (transcribe.build_parser, tune.build_parser):
        build_parser()  # still fine


def test_a_shared_option_of_the_same_type_and_flag_is_one_flag():
    register(bad_decoder(options_with("nbest")))
    try:
        parser = argparse.ArgumentParser()
        add_decoding_arguments(parser)
        assert decoding_options(parser.parse_args(["--decoder", "bad", "--nbest", "2"])) == DecodingOptions(
            "bad", nbest=2
        )
    finally:
        unregister("bad")


def test_a_bool_options_no_flag_is_checked_too():
    register(bad_decoder(options_with("fast", bool, False), name="fast"))
    try:
        with pytest.raises(ValueError, match="option 'no_fast': its flag --no-fast is already option 'fast'"):
            register(bad_decoder(options_with("no_fast")))
    finally:
        unregister("fast")


@pytest.mark.parametrize("build_parser", [transcribe.build_parser, tune.build_parser], ids=["transcribe", "tune"])
def test_every_flag_of_the_commands_themselves_is_reserved(build_parser):
    parser = build_parser()
    decoding = next(g for g in parser._action_groups if g.title == "decoding")
    own = [action for action in parser._actions if action not in decoding._group_actions]
    assert own and all(action.dest in RESERVED for action in own), [a.dest for a in own]
    assert set().union(*(action.option_strings for action in own)) <= RESERVED_FLAGS


def test_a_command_flag_that_is_not_reserved_is_refused():
    parser = argparse.ArgumentParser(prog="recognizer-x")
    parser.add_argument("--colour")
    with pytest.raises(ValueError, match="^recognizer-x: --colour not in recognizer.decoding.arguments.RESERVED"):
        add_decoding_arguments(parser)


# --------------------------------------------------------------------------------------- discovery
def test_a_decoder_file_in_the_package_is_discovered(tmp_path, monkeypatch):
    import recognizer.decoding

    (tmp_path / "mine.py").write_text(
        textwrap.dedent(
            """
            from dataclasses import dataclass

            from recognizer.decoding.base import Decoder, Hypothesis, option, register


            @dataclass(frozen=True)
            class MineOptions:
                width: int = option(4, "hypotheses kept per frame")


            @register
            class MineDecoder(Decoder):
                name, summary, Options = "mine", "my search", MineOptions

                def search(self, log_probs, lengths):
                    return [[Hypothesis([1] * self.options.width, 0.0)] for _ in lengths.tolist()]
            """
        )
    )
    monkeypatch.setattr(recognizer.decoding, "__path__", [*recognizer.decoding.__path__, str(tmp_path)])
    monkeypatch.setattr(base, "_discovered", False)
    try:
        assert "recognizer.decoding.mine" not in sys.modules
        assert decoder_names() == ("greedy", "beam", "lm", "mine")  # the built-ins first, in their order
        assert parse("--decoder", "mine", "--width", "2") == DecodingOptions("mine", width=2)
        [[hypothesis]] = decode(torch.zeros(1, 3, 4), torch.tensor([3]), DecodingOptions("mine", width=2))
        assert hypothesis.labels == [1, 1]
    finally:
        unregister("mine")
        sys.modules.pop("recognizer.decoding.mine", None)


def test_the_built_in_decoders_come_first_whatever_their_import_order(monkeypatch):
    monkeypatch.setattr(base, "_REGISTRY", dict(reversed(list(base._REGISTRY.items()))))
    assert decoder_names()[:3] == ("greedy", "beam", "lm")
