"""The decoder registry: a decoder declared in one place is decoded with, configured and given flags everywhere."""

from __future__ import annotations

import argparse
import dataclasses
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest
import torch
from torch import Tensor

from recognizer import transcribe, tune
from recognizer.decoding import (
    Decoder,
    DecodingOptions,
    Hypothesis,
    build_decoder,
    decode,
    decoder_names,
    option,
    register,
    unregister,
)
from recognizer.decoding.arguments import add_decoding_arguments, decoding_options

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
    transcripts = model.decode(log_probs, "toy", label=3)
    assert [t.text for t in transcripts] == [letter * len(e) for e in log_probs]
    assert toy.seen == [torch.device("meta")]
    # Without a device of its own, a decoder gets the log-probabilities on the model's device.
    monkeypatch.setattr(ToyDecoder, "device", None)
    model.decode(log_probs, DecodingOptions("toy"))
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
    assert model.module.decoding == DecodingOptions("greedy")
    assert model.module.hparams["decoding"] == {"decoder": "greedy"}


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
