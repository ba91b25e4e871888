"""Decoders side by side on the same logits: WER and utterances per second, ours and pyctcdecode's.

    python benchmarks/decoding.py --checkpoint BEST.ckpt --train-manifest data/an4/train.jsonl \\
        --dev-manifest data/an4/dev.jsonl --out runs/decoding

1. Runs the model once over the dev manifest (the log-probabilities every decoder then reads).
2. Builds a word 3-gram ARPA LM and a lexicon from the training transcripts only (recognizer.ngram,
   normalized by the model's tokenizer).
3. Tunes our LM decoder's weight and word score on dev (recognizer.tune's grid), for each of its engines
   (compiled, flashlight-text), and
   pyctcdecode's alpha and beta on the same dev logits (its own grid: its scales differ).
4. Times every decoder at its best setting, ``--repeats`` times, one thread each: greedy, our
   prefix beam search and LM decoder with their default settings (and without their label floor,
   ``token_min_logp``), pyctcdecode without LM and with the same ARPA LM, all with the same beam
   width. pyctcdecode pins numpy<2, so it runs in its own virtual environment, which this script
   creates on first use (``--pyctcdecode-venv``) and feeds through files.

Prints a Markdown table and writes it, with the raw figures, to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torchmetrics.functional.text import char_error_rate, word_error_rate

import recognizer
from recognizer.decoding import DecodingOptions
from recognizer.manifest import read_manifest
from recognizer.ngram import build_arpa, write_lexicon
from recognizer.tune import best_trial, grid_search

HERE = Path(__file__).resolve().parent
WORKER = HERE / "pyctcdecode_worker.py"
PYCTCDECODE_REQUIREMENTS = ["pyctcdecode==0.5.0", "kenlm==0.3.0", "numpy<2"]
ENGINES = ("compiled", "flashlight")
ALPHAS = (0.1, 0.25, 0.5, 0.75, 1.0, 1.5)
BETAS = (-1.0, 0.0, 0.5, 1.0, 2.0, 3.0)


def make_venv(path: Path) -> Path:
    python = path / "bin" / "python"
    if not python.exists():
        print(
            f"creating {path} with {' '.join(PYCTCDECODE_REQUIREMENTS)} (kenlm compiles: a few minutes)",
            file=sys.stderr,
        )
        subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *PYCTCDECODE_REQUIREMENTS], check=True)
    return python


def timed(function, repeats: int) -> tuple[object, float]:
    """The result of the last call and the median seconds per call."""
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        seconds.append(time.perf_counter() - start)
    return result, statistics.median(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--train-manifest", required=True, help="the LM is built from these transcripts only")
    parser.add_argument("--dev-manifest", required=True)
    parser.add_argument("--out", default="runs/decoding")
    parser.add_argument("--beam", type=int, default=32, help="beam width of every beam decoder")
    parser.add_argument("--order", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--pyctcdecode-venv", default=str(HERE / ".venv-pyctcdecode"))
    args = parser.parse_args()
    torch.set_num_threads(1)  # pyctcdecode is single-threaded Python: compare one core with one core
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    model = recognizer.load(args.checkpoint, device="cpu")
    tokenizer = model.tokenizer
    key = model.frontend.path_key
    dev = read_manifest(args.dev_manifest, path_key=key)
    train_texts = [tokenizer.normalize(e["text"]) for e in read_manifest(args.train_manifest)]
    references = [tokenizer.normalize(e["text"]) for e in dev]
    arpa, lexicon = out / f"train.{args.order}gram.arpa", out / "train.lexicon.txt"
    build_arpa(train_texts, args.order, path=arpa)
    write_lexicon({w for t in train_texts for w in t.split()}, lexicon)
    log_probs = model.log_probs([e[key] for e in dev])
    frames = sum(e.shape[0] for e in log_probs)
    print(
        f"{len(dev)} utterances, {frames} output frames; LM from {len(train_texts)} training transcripts",
        file=sys.stderr,
    )

    def wer_cer(texts: list[str]) -> tuple[float, float]:
        return float(word_error_rate(texts, references)), float(char_error_rate(texts, references))

    tuned, trials = {}, {}
    for engine in ENGINES:  # each engine's LM weight and word score tuned on dev (their look-aheads differ)
        lm_options = DecodingOptions("lm", beam_size=args.beam, lm=str(arpa), lexicon=str(lexicon), engine=engine)
        trials[engine] = grid_search(model, log_probs, references, lm_options)
        tuned[engine] = best_trial(trials[engine])
        best_ = tuned[engine]
        print(
            f"{engine}: best lm_weight {best_.lm_weight} word_score {best_.word_score} WER {best_.wer:.4f}",
            file=sys.stderr,
        )

    def lm_files(engine: str) -> dict:
        best_ = tuned[engine]
        return {"lm": str(arpa), "lexicon": str(lexicon), "lm_weight": best_.lm_weight, "word_score": best_.word_score}

    lm = f"lexicon + {args.order}-gram LM, beam {args.beam}"
    ours = {  # the defaults but the beam width (the same for every beam decoder), and without the label floor
        "greedy": DecodingOptions("greedy"),
        "beam": DecodingOptions("beam", beam_size=args.beam),
        "beam, every label": DecodingOptions("beam", beam_size=args.beam, token_min_logp=None),
        "lm": DecodingOptions("lm", beam_size=args.beam, **lm_files("compiled")),
        "lm, flashlight": DecodingOptions("lm", beam_size=args.beam, engine="flashlight", **lm_files("flashlight")),
    }
    names = {
        "greedy": "greedy",
        "beam": f"prefix beam {args.beam} (defaults)",
        "beam, every label": f"prefix beam {args.beam}, every label tried (token_min_logp None)",
        "lm": f"{lm} (defaults: the compiled engine)",
        "lm, flashlight": f"{lm}, flashlight-text engine",
    }
    rows = {}
    for key_, options in ours.items():
        transcripts, seconds = timed(lambda options=options: model.decode_log_probs(log_probs, options), args.repeats)
        wer, cer = wer_cer([t.text for t in transcripts])
        rows[key_] = {"decoder": f"recognizer {names[key_]}", "wer": wer, "cer": cer, "utt_per_s": len(dev) / seconds}

    # pyctcdecode, in its own environment, on the same log-probabilities and the same ARPA file.
    np.savez(out / "log_probs.npz", *[e.numpy() for e in log_probs])
    labels = ["", *tokenizer.alphabet]  # pyctcdecode's blank is "", its word separator " "
    job = {
        "log_probs": str(out / "log_probs.npz"),
        "labels": labels,
        "lm": str(arpa),
        "beam": args.beam,
        "alphas": ALPHAS,
        "betas": BETAS,
        "repeats": args.repeats,
    }
    (out / "pyctcdecode_job.json").write_text(json.dumps(job))
    python = make_venv(Path(args.pyctcdecode_venv))

    def worker(*command: str) -> dict:
        run = subprocess.run(
            [str(python), str(WORKER), str(out / "pyctcdecode_job.json"), *command], capture_output=True, text=True
        )
        if run.returncode:
            sys.exit(f"pyctcdecode worker failed:\n{run.stderr}")
        return json.loads(run.stdout)

    grid = worker("grid")["grid"]
    best = min(grid, key=lambda g: (round(wer_cer(g["texts"])[0], 6), g["alpha"]))
    print(f"pyctcdecode: best alpha {best['alpha']} beta {best['beta']}", file=sys.stderr)
    timing = worker("time", str(best["alpha"]), str(best["beta"]))
    for name, key_ in (
        (f"pyctcdecode beam {args.beam}, no LM", "no_lm"),
        (f"pyctcdecode {args.order}-gram LM, beam {args.beam}", "lm"),
    ):
        wer, cer = wer_cer(timing[key_]["texts"])
        rows[f"pyctcdecode {key_}"] = {
            "decoder": name,
            "wer": wer,
            "cer": cer,
            "utt_per_s": len(dev) / timing[key_]["seconds"],
        }

    def speed(ours_: str, theirs: str) -> float:
        return rows[ours_]["utt_per_s"] / rows[theirs]["utt_per_s"]

    ratios = {
        "prefix beam, defaults / pyctcdecode no LM (throughput)": speed("beam", "pyctcdecode no_lm"),
        "prefix beam, every label / pyctcdecode no LM (throughput)": speed("beam, every label", "pyctcdecode no_lm"),
        "LM decoder, defaults / pyctcdecode LM (throughput)": speed("lm", "pyctcdecode lm"),
        "LM decoder, flashlight engine / pyctcdecode LM (throughput)": speed("lm, flashlight", "pyctcdecode lm"),
        "LM WER reduction vs greedy (relative)": 1 - rows["lm"]["wer"] / rows["greedy"]["wer"],
    }
    table = [f"| decoder | WER | CER | utt/s (1 thread, median of {args.repeats}) |", "|---|---|---|---|"]
    table += [f"| {r['decoder']} | {r['wer']:.2%} | {r['cer']:.2%} | {r['utt_per_s']:.0f} |" for r in rows.values()]
    report = (
        "\n".join(table)
        + "\n\n"
        + "\n".join(f"- {k}: {v:.1%}" if "WER" in k else f"- {k}: {v:.2f}x" for k, v in ratios.items())
    )
    settings = "; ".join(
        [f"{e}: lm_weight {tuned[e].lm_weight}, word_score {tuned[e].word_score}" for e in ENGINES]
        + [f"pyctcdecode: alpha {best['alpha']}, beta {best['beta']} (each the best of its grid on dev)"]
    )
    print(report + "\n- " + settings)
    (out / "decoding.json").write_text(
        json.dumps(
            {
                "rows": list(rows.values()),
                "ratios": ratios,
                "ours_grid": {e: [t.__dict__ for t in trials[e]] for e in ENGINES},
                "pyctcdecode_grid": [
                    {"alpha": g["alpha"], "beta": g["beta"], "wer": wer_cer(g["texts"])[0]} for g in grid
                ],
                "settings": settings,
                "machine": f"{platform.machine()} {platform.processor()}".strip(),
                "torch_threads": 1,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
