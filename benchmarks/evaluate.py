"""Accuracy and speed of a checkpoint on a manifest, through the public transcription API.

    python benchmarks/evaluate.py --checkpoint BEST.ckpt --manifest data/an4/dev.jsonl

Prints CER, WER, parameters and transcription speed (x real time) as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch
from torchmetrics.functional.text import char_error_rate, word_error_rate

import recognizer
from recognizer.manifest import read_manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    model = recognizer.load(args.checkpoint, device=args.device)
    entries = read_manifest(args.manifest, path_key=model.frontend.path_key)
    paths = [entry[model.frontend.path_key] for entry in entries]
    start = time.perf_counter()
    hypotheses = [result.text for result in model.transcribe(paths, split_lines=False)]  # scored line by line
    seconds = time.perf_counter() - start
    references = [model.tokenizer.normalize(entry["text"]) for entry in entries]
    audio = sum(float(entry.get("duration", 0)) for entry in entries)
    print(
        json.dumps(
            {
                "checkpoint": args.checkpoint,
                "manifest": args.manifest,
                "utterances": len(entries),
                "cer": round(float(char_error_rate(hypotheses, references)), 4),
                "wer": round(float(word_error_rate(hypotheses, references)), 4),
                "parameters": sum(p.numel() for p in model.model.encoder.parameters())
                if isinstance(model.model, torch.nn.Module)
                else None,
                "transcription_seconds": round(seconds, 2),
                "x_real_time": round(audio / seconds, 1) if audio else None,
                "device": args.device,
                "threads": torch.get_num_threads(),
                "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
            }
        )
    )


if __name__ == "__main__":
    main()
