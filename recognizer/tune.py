"""Search the LM weight and word insertion bonus of the LM decoder on a dev manifest.

    recognizer-tune --checkpoint model.ckpt --manifest data/an4/dev.jsonl --lm lm.arpa --lexicon lexicon.txt

The model runs once; every (LM weight, word score) pair of the grid then decodes the same
log-probabilities. Prints the WER of each pair, then the best pair as options for
``recognizer-transcribe``. With a lexicon, ``--unk-scores never -10 -5`` adds the score of spelling a
word outside it as a third axis, and with a ``--char-lm`` beside it ``--char-lm-weights 0.25 0.5 1``
that LM's weight as a fourth. Tune on a dev split only: never on the test split you report.
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torchmetrics.functional.text import char_error_rate, word_error_rate

from .decoding import DecodingOptions, build_decoder
from .decoding.arguments import add_decoding_arguments, decoding_options
from .manifest import read_manifest
from .transcribe import DEFAULT_MAX_FRAMES, Recognizer, load

DEFAULT_LM_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)
DEFAULT_WORD_SCORES = (-2.0, -1.0, 0.0, 1.0, 2.0, 3.0)
#: the options the grid searches: a decoder must take both to be tuned (the built-in one is ``lm``)
TUNED = ("lm_weight", "word_score")
#: how ``--unk-scores`` spells the lexicon decoder's default, no word outside the lexicon
NEVER = "never"


@dataclass
class Trial:
    """One decoding of the dev set."""

    lm_weight: float
    word_score: float
    wer: float
    cer: float
    unk_score: float | None = None  # None: not searched (the decoder's own setting)
    char_lm_weight: float | None = None  # None: not searched


def error_rates(
    recognizer: Recognizer, log_probs: list[torch.Tensor], references: list[str], options: DecodingOptions
) -> tuple[float, float]:
    """(WER, CER) of decoding ``log_probs`` with ``options`` against normalized ``references``."""
    hypotheses = [t.text or "" for t in recognizer.decode_log_probs(log_probs, options)]
    return float(word_error_rate(hypotheses, references)), float(char_error_rate(hypotheses, references))


def grid_search(
    recognizer: Recognizer,
    log_probs: list[torch.Tensor],
    references: list[str],
    options: DecodingOptions,
    lm_weights: Sequence[float] = DEFAULT_LM_WEIGHTS,
    word_scores: Sequence[float] = DEFAULT_WORD_SCORES,
    report: Callable[[Trial], object] | None = None,
    unk_scores: Sequence[float] | None = None,
    char_lm_weights: Sequence[float] | None = None,
) -> list[Trial]:
    """Every (LM weight, word score[, unknown-word score][, character LM weight]) setting, in grid order;
    ``report`` is called with each trial. An axis left None keeps the decoder's own setting."""
    trials = []
    unk_axis: Sequence[float | None] = unk_scores or [None]
    char_axis: Sequence[float | None] = char_lm_weights or [None]
    for lm_weight, word_score, unk_score, char_lm_weight in itertools.product(
        lm_weights, word_scores, unk_axis, char_axis
    ):
        searched = {"lm_weight": lm_weight, "word_score": word_score}
        if unk_score is not None:
            searched["unk_score"] = unk_score
        if char_lm_weight is not None:
            searched["char_lm_weight"] = char_lm_weight
        rates = error_rates(recognizer, log_probs, references, options.replace(**searched))
        trial = Trial(lm_weight, word_score, *rates, unk_score=unk_score, char_lm_weight=char_lm_weight)
        trials.append(trial)
        if report is not None:
            report(trial)
    return trials


def best_trial(trials: Sequence[Trial]) -> Trial:
    """Lowest WER; ties go to lower CER, then the smaller LM weight and bonus, the lower unknown-word
    score and the smaller character LM weight (the milder setting)."""
    return min(
        trials,
        key=lambda t: (
            round(t.wer, 6),
            round(t.cer, 6),
            t.lm_weight,
            abs(t.word_score),
            -math.inf if t.unk_score is None else t.unk_score,
            0.0 if t.char_lm_weight is None else t.char_lm_weight,
        ),
    )


def unk_score_value(text: str) -> float:
    """An ``--unk-scores`` value: a number, or ``never`` (no word outside the lexicon)."""
    if text == NEVER:
        return -math.inf
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number or {NEVER!r}: {text!r}") from None


def _format(trial: Trial) -> str:
    unk = "" if trial.unk_score is None else "\t" + (NEVER if trial.unk_score == -math.inf else f"{trial.unk_score:g}")
    chars = "" if trial.char_lm_weight is None else f"\t{trial.char_lm_weight:g}"
    return f"{trial.lm_weight:g}\t{trial.word_score:g}{unk}{chars}\t{trial.wer:.2%}\t{trial.cer:.2%}"


def build_parser() -> argparse.ArgumentParser:
    """``recognizer-tune``'s arguments; the decoding ones are generated from the registered decoders,
    as ``recognizer-transcribe``'s are."""
    parser = argparse.ArgumentParser(prog="recognizer-tune", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="a .ckpt written by `recognizer fit`")
    parser.add_argument("--manifest", required=True, help="the dev manifest (JSON lines with the reference 'text')")
    parser.add_argument("--lm-weights", type=float, nargs="+", default=list(DEFAULT_LM_WEIGHTS), metavar="W")
    parser.add_argument("--word-scores", type=float, nargs="+", default=list(DEFAULT_WORD_SCORES), metavar="S")
    parser.add_argument(
        "--unk-scores",
        type=unk_score_value,
        nargs="+",
        metavar="U",
        help=f"with --lexicon: also search the score of a word outside it ({NEVER!r}: not allowed, the default)",
    )
    parser.add_argument(
        "--char-lm-weights", type=float, nargs="+", metavar="C", help="with --char-lm: also search its weight"
    )
    parser.add_argument("--device", help="cpu, cuda, ... (default: cuda if available)")
    parser.add_argument("--max-frames", type=int, default=DEFAULT_MAX_FRAMES, help="feature frames per batch")
    add_decoding_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``recognizer-tune``: grid search of --lm-weight x --word-score on a dev manifest."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        options = decoding_options(args)
        if not all(hasattr(options.settings, name) for name in TUNED):
            parser.error(
                f"tuning needs the LM decoder (decoder={options.decoder!r} has no {' or '.join(TUNED)}): "
                "give --lm and/or --lexicon"
            )
        if args.unk_scores and getattr(options.settings, "lexicon", None) is None:
            parser.error("--unk-scores needs --lexicon: without a lexicon every word is spelled freely")
        if args.char_lm_weights and getattr(options.settings, "char_lm", None) is None:
            parser.error("--char-lm-weights needs --char-lm (and --lexicon)")
        recognizer = load(args.checkpoint, args.device)
        build_decoder(options, recognizer.tokenizer.alphabet)  # a bad LM or lexicon fails before the model runs
        entries = read_manifest(args.manifest, path_key=recognizer.frontend.path_key, required=("text",))
        start = time.perf_counter()
        inputs = [recognizer.frontend.load_entry(entry) for entry in entries]
        log_probs = recognizer.log_probs(inputs, max_frames=args.max_frames, progress=True)
        references = [recognizer.tokenizer.normalize(entry["text"]) for entry in entries]
        greedy_wer, greedy_cer = error_rates(recognizer, log_probs, references, DecodingOptions())
        print(f"{len(entries)} utterances; greedy WER {greedy_wer:.2%} CER {greedy_cer:.2%}", file=sys.stderr)
        columns = ["lm_weight", "word_score"] + ["unk_score"] * bool(args.unk_scores)
        columns += ["char_lm_weight"] * bool(args.char_lm_weights)
        print("\t".join([*columns, "WER", "CER"]))
        trials = grid_search(
            recognizer,
            log_probs,
            references,
            options,
            args.lm_weights,
            args.word_scores,
            report=lambda t: print(_format(t), flush=True),
            unk_scores=args.unk_scores,
            char_lm_weights=args.char_lm_weights,
        )
    except (OSError, ValueError) as error:
        print(f"recognizer-tune: error: {error}", file=sys.stderr)
        return 1
    best = best_trial(trials)
    extra = "" if best.unk_score is None else f" --unk-score={best.unk_score:g}"
    if best.char_lm_weight is not None:
        extra += f" --char-lm-weight {best.char_lm_weight:g}"
    print(
        f"best: --lm-weight {best.lm_weight:g} --word-score {best.word_score:g}{extra}  WER {best.wer:.2%} CER {best.cer:.2%} "
        f"(greedy WER {greedy_wer:.2%}; {len(trials)} settings in {time.perf_counter() - start:.1f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
