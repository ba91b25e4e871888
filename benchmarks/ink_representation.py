"""Per-point vs Bézier-curve ink: sequence lengths, training and transcription speed, in one process.

    python benchmarks/ink_representation.py --manifest data/iam-ondb/val2.jsonl --lines 300

Each representation with its recipe's encoder (``--points-*`` / ``--bezier-*``; defaults: the per-point
recipe of configs/handwriting/iam_ondb.yaml and the Bézier settings measured in RESULTS.md), and the
Bézier representation with the per-point recipe's width (the representation's own gain):

- frames per line (front-end output and encoder output) and their ratio;
- training: lines/s of forward + CTC + backward + AdamW step over length-budget batches of augmented
  features (Bézier curves fitted once per line, as training keeps them; the fit's one-off cost is
  reported apart);
- transcription: lines/s from a normalized ink to greedy text (features, padded forward, greedy decode),
  the Bézier fit included.

The representations alternate, ``--rounds`` times; medians are printed. Untrained weights: speed does
not depend on them.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

from recognizer.batching import budget_batches
from recognizer.decoding import decode
from recognizer.encoders import BLSTMEncoder
from recognizer.ink.frontend import InkFrontend
from recognizer.manifest import read_manifest
from recognizer.tokenizer import Tokenizer

POINT_FEATURES = ["dx", "dy", "pen_up", "cos", "sin", "curvature", "y"]
BEZIER_FEATURES = ["dx", "dy", "d1", "d2", "a1", "a2", "pen_up", "y"]


def pad(features: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(f) for f in features])
    return torch.nn.utils.rnn.pad_sequence(features, batch_first=True), lengths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", default="data/iam-ondb/val2.jsonl")
    parser.add_argument("--lines", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--precision", choices=["32-true", "bf16-mixed"], default="bf16-mixed")
    parser.add_argument("--points-hidden", type=int, default=192)
    parser.add_argument("--points-stride", type=int, default=2)
    parser.add_argument("--points-max-frames", type=int, default=16000)
    parser.add_argument("--bezier-hidden", type=int, default=256)
    parser.add_argument("--bezier-stride", type=int, default=1)
    parser.add_argument("--bezier-max-frames", type=int, default=6000)
    parser.add_argument("--max-error", type=float, default=0.05)
    args = parser.parse_args()
    torch.manual_seed(0)

    entries = read_manifest(args.manifest, path_key="ink_filepath")[: args.lines]
    tokenizer = Tokenizer.from_texts([e["text"] for e in entries], case="keep")
    setups = {
        "points": (
            InkFrontend(features=POINT_FEATURES, step=0.25),
            dict(hidden_size=args.points_hidden, stack=args.points_stride, stride=args.points_stride),
            args.points_max_frames,
        ),
        "bezier": (
            InkFrontend(features=BEZIER_FEATURES, representation="bezier", max_error=args.max_error),
            dict(hidden_size=args.bezier_hidden, stack=args.bezier_stride, stride=args.bezier_stride),
            args.bezier_max_frames,
        ),
    }
    if args.bezier_hidden != args.points_hidden:  # the representation alone: the per-point recipe's width
        setups["bezier, points' width"] = (
            InkFrontend(features=BEZIER_FEATURES, representation="bezier", max_error=args.max_error),
            dict(hidden_size=args.points_hidden, stack=args.bezier_stride, stride=args.bezier_stride),
            args.bezier_max_frames,
        )
    bf16 = args.precision == "bf16-mixed"
    results: dict[str, dict[str, list[float]]] = {name: {} for name in setups}
    inks = None
    for round_ in range(args.rounds):
        for name, (frontend, shape, max_frames) in setups.items():
            record = results[name]
            start = time.perf_counter()
            inks = [frontend.load_entry(e) for e in entries]  # normalized (and fitted, for Bézier) once
            if round_ == 0:
                record.setdefault("load+fit s/line", []).append((time.perf_counter() - start) / len(inks))
            encoder = BLSTMEncoder(frontend.feature_dim, tokenizer.vocab_size, num_layers=4, dropout=0.25, **shape)
            encoder.normalizer.set_statistics(torch.zeros(frontend.feature_dim), torch.ones(frontend.feature_dim))
            optimizer = torch.optim.AdamW(encoder.parameters(), 1e-3)
            targets = [torch.tensor(tokenizer.encode(e["text"])) for e in entries]

            # Training: augmented features, length-budget batches, one optimizer step per batch.
            rng = np.random.default_rng(round_)
            start = time.perf_counter()
            features = [frontend.features(ink, rng) for ink in inks]
            lengths = [len(f) for f in features]
            order = list(np.argsort(lengths))
            encoder.train()
            for batch in budget_batches(order, lengths, max_frames):
                x, n = pad([features[i] for i in batch])
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    log_probs, out = encoder(x, n)
                y = torch.cat([targets[i] for i in batch])
                loss = F.ctc_loss(
                    log_probs.float().transpose(0, 1),
                    y,
                    out,
                    torch.tensor([len(targets[i]) for i in batch]),
                    zero_infinity=True,
                )
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            record.setdefault("train lines/s", []).append(len(inks) / (time.perf_counter() - start))

            # Transcription: from the normalized ink (fit included) to greedy text.
            encoder.eval()
            fresh = [dataclasses.replace(ink) for ink in inks]  # new objects: nothing cached for them
            start = time.perf_counter()
            with torch.no_grad():
                features = [frontend.features(ink) for ink in fresh]
                lengths = [len(f) for f in features]
                for batch in budget_batches(list(np.argsort(lengths)), lengths, max_frames):
                    x, n = pad([features[i] for i in batch])
                    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                        log_probs, out = encoder(x, n)
                    decode(log_probs.float(), out)
            record.setdefault("transcribe lines/s", []).append(len(inks) / (time.perf_counter() - start))
            record.setdefault("frames/line", []).append(float(np.mean(lengths)))
            out_lengths = encoder.output_lengths(torch.tensor(lengths)).float()
            record.setdefault("encoder frames/line", []).append(float(out_lengths.mean()))
            chars = np.mean([len(e["text"]) for e in entries])
            record.setdefault("frames/char", []).append(float(np.mean(lengths) / chars))

    print(f"{len(entries)} lines of {args.manifest}, {args.precision}, {torch.get_num_threads()} threads, medians")
    keys = list(results["points"])
    print("| | " + " | ".join(keys) + " |")
    print("|---|" + "---|" * len(keys))
    for name, record in results.items():
        print(f"| {name} | " + " | ".join(f"{statistics.median(record[k]):.4g}" for k in keys) + " |")
    for name in list(results)[1:]:
        for key in ("frames/line", "encoder frames/line", "train lines/s", "transcribe lines/s"):
            ratio = statistics.median(results[name][key]) / statistics.median(results["points"][key])
            print(f"{name} / points {key}: {ratio:.2f}")


if __name__ == "__main__":
    main()
