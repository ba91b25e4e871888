"""``recognizer-demo``: the main job on a built-in synthetic corpus, end to end.

    recognizer-demo                 # speech (espeak-ng corpus)
    recognizer-demo handwriting     # online handwriting (Hershey-font corpus)

Generates the corpus (once), trains ``configs/<modality>/demo.yaml``, transcribes the held-out test
set with the best checkpoint and prints the character error rate. Options it does not know are
passed to ``recognizer fit`` (e.g. ``--trainer.max_epochs 1``).
"""

from __future__ import annotations

import argparse
import importlib
import time
from pathlib import Path
from typing import Sequence

import yaml

REPO = Path(__file__).resolve().parents[1]
#: demo name -> (config, generated corpus in ``recognizer.prepare.SYNTHETIC``)
DEMOS = {
    "speech": (REPO / "configs" / "speech" / "demo.yaml", "synthetic-speech"),
    "handwriting": (REPO / "configs" / "handwriting" / "demo.yaml", "synthetic-ink"),
}


def main(argv: Sequence[str] | None = None) -> float:
    """Run a demo; returns the held-out CER."""
    parser = argparse.ArgumentParser(prog="recognizer-demo", description=__doc__.splitlines()[0])
    parser.add_argument("demo", nargs="?", choices=sorted(DEMOS), default="speech")
    parser.add_argument("--config", help="training config (default: configs/<demo>/demo.yaml)")
    parser.add_argument("--examples", type=int, default=5, help="transcripts to show")
    args, overrides = parser.parse_known_args(argv)
    default_config, corpus_name = DEMOS[args.demo]
    config_path = args.config or str(default_config)

    from torchmetrics.functional.text import char_error_rate, word_error_rate

    import recognizer
    from recognizer.cli import run_cli
    from recognizer.manifest import read_manifest
    from recognizer.prepare import SYNTHETIC

    start = time.perf_counter()
    config = yaml.safe_load(Path(config_path).read_text())
    corpus = Path(config["data"]["train_manifest"]).parent
    importlib.import_module(SYNTHETIC[corpus_name][0]).prepare(corpus)
    print(f"[demo] corpus ready in {time.perf_counter() - start:.0f} s: {corpus}")

    cli = run_cli(["fit", "--config", config_path, *overrides])
    checkpoint = cli.trainer.checkpoint_callback.best_model_path or cli.trainer.checkpoint_callback.last_model_path
    print(f"[demo] trained in {time.perf_counter() - start:.0f} s: {checkpoint}")

    model = recognizer.load(checkpoint)
    key = model.frontend.path_key
    test = read_manifest(config["data"]["test_manifest"], path_key=key)
    hypotheses = [t.text for t in model.transcribe([entry[key] for entry in test], progress=True)]
    references = [model.tokenizer.normalize(entry["text"]) for entry in test]
    for hypothesis, reference in list(zip(hypotheses, references))[: args.examples]:
        print(f"  ref: {reference}\n  hyp: {hypothesis}")
    cer = float(char_error_rate(hypotheses, references))
    wer = float(word_error_rate(hypotheses, references))
    print(
        f"[demo] {args.demo}: held-out test, {len(test)} samples: CER {cer:.2%}, WER {wer:.2%}; "
        f"total {time.perf_counter() - start:.0f} s"
    )
    return cer


def entry() -> None:
    """Console-script entry (``main`` returns the CER for callers such as benchmarks)."""
    main()


if __name__ == "__main__":
    entry()
