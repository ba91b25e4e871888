"""Score thresholds of the two beam decoders on the dev logits that ``benchmarks/decoding.py`` saved:
WER, CER, utterances per second (one thread, median of ``--repeats``) and how many transcripts equal
the first setting's, for the prefix beam's ``prune_threshold`` and the LM decoder's ``beam_threshold``.

    python benchmarks/decoding_thresholds.py --checkpoint A.ckpt --saved runs/decoding \\
        --dev-manifest data/an4/dev.jsonl --lm-weight 1.5 --word-score 2.0

``--saved`` is the ``--out`` folder of ``benchmarks/decoding.py`` (log_probs.npz, the 3-gram ARPA file
and the lexicon); the LM weights are the ones it tuned. Prints Markdown.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from torchmetrics.functional.text import char_error_rate, word_error_rate

import recognizer
from recognizer.decoding import DecodingOptions
from recognizer.manifest import read_manifest

PRUNE_THRESHOLDS = (None, 20.0, 15.0, 12.0, 10.0, 8.0, 6.0)
LM_THRESHOLDS = (15.0, 12.0, 10.0, 8.0)


def measure(model, log_probs, references, options, repeats: int) -> tuple[float, float, float, list[str]]:
    """WER, CER, utterances per second and the transcripts of one decoder setting."""
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        transcripts = model.decode_log_probs(log_probs, options)
        seconds.append(time.perf_counter() - start)
    texts = [t.text for t in transcripts]
    wer, cer = float(word_error_rate(texts, references)), float(char_error_rate(texts, references))
    return wer, cer, len(references) / statistics.median(seconds), texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--saved", required=True, help="benchmarks/decoding.py's --out folder")
    parser.add_argument("--dev-manifest", required=True)
    parser.add_argument("--lm-weight", type=float, required=True)
    parser.add_argument("--word-score", type=float, required=True)
    parser.add_argument("--beam", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)

    model = recognizer.load(args.checkpoint, device="cpu")
    saved = Path(args.saved)
    arrays = np.load(saved / "log_probs.npz")
    log_probs = [torch.from_numpy(arrays[f"arr_{i}"]) for i in range(len(arrays.files))]
    references = [model.tokenizer.normalize(e["text"]) for e in read_manifest(args.dev_manifest)]
    lm_files = {
        "lm": str(next(saved.glob("train.*gram.arpa"))),
        "lexicon": str(saved / "train.lexicon.txt"),
        "lm_weight": args.lm_weight,
        "word_score": args.word_score,
    }
    settings = [("beam", "prune_threshold", t, {}) for t in PRUNE_THRESHOLDS]
    settings += [("lm", "beam_threshold", t, lm_files) for t in LM_THRESHOLDS]
    print("| decoder | threshold | WER | CER | utt/s | transcripts as the first |\n|---|---|---|---|---|---|")
    first: dict[str, list[str]] = {}
    for decoder, name, threshold, extra in settings:
        options = DecodingOptions(decoder, beam_size=args.beam, **{name: threshold}, **extra)
        wer, cer, speed, texts = measure(model, log_probs, references, options, args.repeats)
        base = first.setdefault(decoder, texts)
        same = sum(a == b for a, b in zip(texts, base))
        print(f"| {decoder} | {name} {threshold} | {wer:.2%} | {cer:.2%} | {speed:.0f} | {same}/{len(texts)} |")


if __name__ == "__main__":
    main()
