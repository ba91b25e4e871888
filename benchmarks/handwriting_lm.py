"""LMs for handwriting side by side: character n-grams of several orders (no lexicon) against a word n-gram
with a lexicon, with and without a path for words outside it, and the word n-gram with the best character
n-gram beside it (``char_lm``: unknown words spelled by it); tuned on val1, reported on val2.

    python benchmarks/handwriting_lm.py --checkpoint MODEL.ckpt --train-manifest data/iam-ondb/train.jsonl \\
        --tune-manifest data/iam-ondb/val1.jsonl --test-manifest data/iam-ondb/val2.jsonl --out runs/iam-lm

1. Runs the model once over both manifests (the log-probabilities every decoder then reads).
2. Builds every LM and the lexicon from the training transcripts only (normalized by the model's tokenizer).
3. Tunes each LM's weight and word score (and, with the lexicon, the unknown-word score) on the first
   ``--tune-lines`` lines of the tuning manifest (``recognizer.tune``'s grid). The word LM with the
   character LM beside it searches the character LM's weight at 0.5, 0.75 and 1 times the weight the
   best character LM had alone, with fewer word LM weights and unknown-word scores.
4. Decodes the test manifest with each LM at its best setting, and with greedy and the prefix beam,
   timing the search alone (one thread, median of ``--repeats``).

Prints a Markdown table and writes it, with the grids, to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from decoding_thresholds import measure as timed_decoding  # this folder's: WER, CER, inputs/s, texts

import recognizer
from recognizer.decoding import DecodingOptions
from recognizer.manifest import read_manifest
from recognizer.ngram import build_arpa, write_lexicon
from recognizer.tune import best_trial, grid_search

LM_WEIGHTS = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0)
#: the highest order flashlight-text's KenLM loads (it is compiled with KENLM_MAX_ORDER=6)
MAX_ORDER = 6
WORD_SCORES = (-1.0, 0.0, 1.0, 2.0)
UNK_SCORES = (float("-inf"), -10.0, -5.0)
#: the word LM with a character LM beside it: the grid's other axes (the character LM spells unknown words,
#: so leaving the lexicon may cost little)
BOTH_LM_WEIGHTS = (0.5, 1.0, 1.5)
BOTH_UNK_SCORES = (-5.0, -2.0, 0.0)
BOTH_CHAR_FACTORS = (0.5, 0.75, 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--train-manifest", required=True, help="every LM is built from these transcripts only")
    parser.add_argument("--tune-manifest", required=True)
    parser.add_argument("--test-manifest", required=True)
    parser.add_argument("--out", default="runs/iam-lm")
    parser.add_argument("--char-orders", type=int, nargs="+", default=[6, 8, 10])
    parser.add_argument("--word-order", type=int, default=3)
    parser.add_argument("--beam", type=int, default=32, help="beam width of every beam decoder")
    parser.add_argument("--tune-lines", type=int, default=400, help="lines of the tuning manifest searched")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--engine", choices=["compiled", "flashlight"], default="compiled")
    args = parser.parse_args()
    if args.engine == "flashlight" and max(args.char_orders + [args.word_order]) > MAX_ORDER:
        parser.error(f"flashlight-text's KenLM loads n-grams up to order {MAX_ORDER}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    model = recognizer.load(args.checkpoint, device="cpu")
    normalize = model.tokenizer.normalize
    key = model.frontend.path_key
    tune = read_manifest(args.tune_manifest, path_key=key)[: args.tune_lines]
    test = read_manifest(args.test_manifest, path_key=key)
    train_texts = [normalize(e["text"]) for e in read_manifest(args.train_manifest)]
    tune_refs, test_refs = [normalize(e["text"]) for e in tune], [normalize(e["text"]) for e in test]
    # the files, as benchmarks/evaluate.py reads them (one line each; log_probs never splits an ink)
    tune_lp = model.log_probs([e[key] for e in tune])
    test_lp = model.log_probs([e[key] for e in test])
    torch.set_num_threads(1)  # the searches are single-threaded: time one core

    lms: dict[str, dict] = {}
    for order in args.char_orders:
        start = time.perf_counter()
        path = out / f"chars{order}.arpa"
        build_arpa(train_texts, order, unit="char", path=path)
        print(f"char {order}-gram: built in {time.perf_counter() - start:.0f} s", file=sys.stderr)
        lms[f"character {order}-gram, no lexicon"] = {"lm": str(path)}
    words, lexicon = out / f"words{args.word_order}.arpa", out / "lexicon.txt"
    build_arpa(train_texts, args.word_order, path=words)
    write_lexicon({w for t in train_texts for w in t.split()}, lexicon)
    word_lm = f"lexicon + word {args.word_order}-gram"
    lms[word_lm] = {"lm": str(words), "lexicon": str(lexicon)}

    grids, rows = {}, []

    def measure(name: str, options: DecodingOptions, setting: str) -> None:
        wer, cer, lines_per_s, _ = timed_decoding(model, test_lp, test_refs, options, args.repeats)
        row = {"decoder": name, "setting": setting, "cer": cer, "wer": wer, "lines_per_s": lines_per_s}
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)

    measure("greedy", DecodingOptions("greedy"), "-")
    measure(f"prefix beam {args.beam}", DecodingOptions("beam", beam_size=args.beam), "-")
    best_chars = (float("inf"), "", 0.0)  # tuning WER, file and weight of the best character LM
    for name, files in lms.items():
        options = DecodingOptions("lm", beam_size=args.beam, engine=args.engine, **files)
        unk = UNK_SCORES if "lexicon" in files else None
        trials = grid_search(model, tune_lp, tune_refs, options, LM_WEIGHTS, WORD_SCORES, unk_scores=unk)
        grids[name] = [t.__dict__ for t in trials]
        best = best_trial(trials)
        if "lexicon" not in files:
            best_chars = min(best_chars, (best.wer, files["lm"], best.lm_weight))
        searched = {"lm_weight": best.lm_weight, "word_score": best.word_score}
        if best.unk_score is not None:
            searched["unk_score"] = best.unk_score
        setting = ", ".join(f"{k} {v:g}" for k, v in searched.items()) + f" (tuning WER {best.wer:.2%})"
        measure(f"{name}, beam {args.beam}", options.replace(**searched), setting)
        if "lexicon" in files and best.unk_score != float("-inf"):
            closed = best_trial([t for t in trials if t.unk_score == float("-inf")])
            measure(
                f"{name}, beam {args.beam}, no word outside the lexicon",
                options.replace(lm_weight=closed.lm_weight, word_score=closed.word_score, unk_score=float("-inf")),
                f"lm_weight {closed.lm_weight:g}, word_score {closed.word_score:g} (tuning WER {closed.wer:.2%})",
            )

    if args.engine == "compiled" and best_chars[1]:
        _, chars, weight = best_chars
        name = f"{word_lm} + {Path(chars).stem.replace('chars', 'character ')}-gram beside it"
        options = DecodingOptions("lm", beam_size=args.beam, char_lm=chars, **lms[word_lm])
        factors = [round(f * weight, 3) for f in BOTH_CHAR_FACTORS]
        trials = grid_search(
            model, tune_lp, tune_refs, options, BOTH_LM_WEIGHTS, WORD_SCORES, None, BOTH_UNK_SCORES, factors
        )
        grids[name] = [t.__dict__ for t in trials]
        best = best_trial(trials)
        searched = {"lm_weight": best.lm_weight, "word_score": best.word_score, "unk_score": best.unk_score}
        searched["char_lm_weight"] = best.char_lm_weight
        setting = ", ".join(f"{k} {v:g}" for k, v in searched.items()) + f" (tuning WER {best.wer:.2%})"
        measure(f"{name}, beam {args.beam}", options.replace(**searched), setting)

    oov = {w for t in test_refs for w in t.split()} - {w for t in train_texts for w in t.split()}
    running = [w for t in test_refs for w in t.split()]
    table = [
        f"| decoder | setting (tuned on {len(tune)} lines of {Path(args.tune_manifest).name}) "
        f"| {Path(args.test_manifest).stem} CER | WER | lines/s (1 thread) |",
        "|---|---|---|---|---|",
    ]
    table += [
        f"| {r['decoder']} | {r['setting']} | {r['cer']:.2%} | {r['wer']:.2%} | {r['lines_per_s']:.1f} |" for r in rows
    ]
    oov_rate = sum(w in oov for w in running) / max(len(running), 1)
    report = "\n".join(table) + f"\n\n- test words outside the training vocabulary: {oov_rate:.1%} of running words"
    print(report)
    (out / "handwriting_lm.json").write_text(json.dumps({"rows": rows, "grids": grids, "report": report}, indent=1))


if __name__ == "__main__":
    main()
