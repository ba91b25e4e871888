"""``recognizer-demo``: the main job on the embedded default corpus, end to end.

Generates the synthetic speech corpus (once), trains ``configs/speech/demo.yaml``, transcribes the
held-out test utterances with the best checkpoint and prints the character error rate.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Sequence

import yaml

REPO = Path(__file__).resolve().parents[1]
DEMO_CONFIG = REPO / "configs" / "speech" / "demo.yaml"


def main(argv: Sequence[str] | None = None) -> float:
    parser = argparse.ArgumentParser(prog="recognizer-demo", description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(DEMO_CONFIG), help="training config (default: %(default)s)")
    parser.add_argument("--examples", type=int, default=5, help="transcripts to show")
    args, overrides = parser.parse_known_args(argv)  # the rest goes to `recognizer fit`, e.g. --trainer.max_epochs 1

    from torchmetrics.functional.text import char_error_rate, word_error_rate

    import recognizer
    from recognizer.cli import run_cli
    from recognizer.corpora import synthetic_speech
    from recognizer.manifest import read_manifest

    start = time.perf_counter()
    config = yaml.safe_load(Path(args.config).read_text())
    corpus = Path(config["data"]["train_manifest"]).parent
    synthetic_speech.prepare(corpus)
    print(f"[demo] corpus ready in {time.perf_counter() - start:.0f} s: {corpus}")

    cli = run_cli(["fit", "--config", args.config, *overrides])
    checkpoint = cli.trainer.checkpoint_callback.best_model_path or cli.trainer.checkpoint_callback.last_model_path
    print(f"[demo] trained in {time.perf_counter() - start:.0f} s: {checkpoint}")

    model = recognizer.load(checkpoint)
    test = read_manifest(config["data"]["test_manifest"], path_key="audio_filepath")
    hypotheses = [t.text for t in model.transcribe([entry["audio_filepath"] for entry in test], progress=True)]
    references = [model.tokenizer.normalize(entry["text"]) for entry in test]
    for hypothesis, reference in list(zip(hypotheses, references))[: args.examples]:
        print(f"  ref: {reference}\n  hyp: {hypothesis}")
    cer = float(char_error_rate(hypotheses, references))
    wer = float(word_error_rate(hypotheses, references))
    print(f"[demo] held-out test: {len(test)} utterances, CER {cer:.2%}, WER {wer:.2%}, total {time.perf_counter() - start:.0f} s")
    return cer


def entry() -> None:
    """Console-script entry (``main`` returns the CER for callers such as benchmarks)."""
    main()


if __name__ == "__main__":
    entry()
