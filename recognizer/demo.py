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
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

if TYPE_CHECKING:
    from recognizer.cli import RecognizerCLI

PACKAGE = Path(__file__).resolve().parent
#: the source checkout (holding pyproject.toml and configs/), or the folder above site-packages' copy
REPO = PACKAGE.parent


def config_file(name: str) -> Path:
    """A shipped config such as ``speech/demo.yaml``: ``configs/`` of a source checkout (editable
    install), else the copy inside the installed package (``recognizer/configs``)."""
    for root in (REPO / "configs", PACKAGE / "configs"):
        if (root / name).is_file():
            return root / name
    raise FileNotFoundError(f"config {name!r} is neither in {REPO / 'configs'} nor in {PACKAGE / 'configs'}")


def workspace() -> Path:
    """Where the notebooks keep generated corpora and runs: the source checkout when running from
    one, else the current folder (an installed package has no checkout)."""
    return REPO if (REPO / "pyproject.toml").is_file() else Path.cwd()


#: demo name -> (config, generated corpus in ``recognizer.prepare.SYNTHETIC``)
DEMOS = {"speech": ("speech/demo.yaml", "synthetic-speech"), "handwriting": ("handwriting/demo.yaml", "synthetic-ink")}


def main(argv: Sequence[str] | None = None) -> float:
    """Run a demo; returns the held-out CER."""
    parser = argparse.ArgumentParser(prog="recognizer-demo", description=__doc__.splitlines()[0])
    parser.add_argument("demo", nargs="?", choices=sorted(DEMOS), default="speech")
    parser.add_argument("--config", help="training config (default: configs/<demo>/demo.yaml)")
    parser.add_argument("--examples", type=int, default=5, help="transcripts to show")
    sizes = parser.add_argument_group("corpus size (default: the generator's; a smaller one for a quick look)")
    for split in ("train", "dev", "test"):
        sizes.add_argument(f"--num-{split}", type=int, metavar="N", help=f"{split} utterances to generate")
    argv = list(sys.argv[1:] if argv is None else argv)
    # The demo's own options first, then everything from the first unknown `--x.y` on goes to
    # `recognizer fit` (a plain positional would swallow the value of `--trainer.max_epochs 1`).
    cut = next((i for i, arg in enumerate(argv) if arg.startswith("--") and "." in arg.split("=")[0]), len(argv))
    args, unknown = parser.parse_known_args(argv[:cut])  # e.g. --seed_everything 1
    overrides = [*unknown, *argv[cut:]]
    default_config, corpus_name = DEMOS[args.demo]
    config_path = args.config or str(config_file(default_config))

    from torchmetrics.functional.text import char_error_rate, word_error_rate

    import recognizer
    from recognizer.cli import run_cli
    from recognizer.manifest import read_manifest
    from recognizer.prepare import SYNTHETIC

    start = time.perf_counter()
    config = yaml.safe_load(Path(config_path).read_text())
    corpus = Path(config["data"]["train_manifest"]).parent
    counts = {f"num_{split}": getattr(args, f"num_{split}") for split in ("train", "dev", "test")}
    importlib.import_module(SYNTHETIC[corpus_name][0]).prepare(
        corpus, **{k: v for k, v in counts.items() if v is not None}
    )
    print(f"[demo] corpus ready in {time.perf_counter() - start:.0f} s: {corpus}")

    cli = run_cli(["fit", "--config", config_path, *overrides])
    checkpoint = str(trained_checkpoint(cli))
    print(f"[demo] trained in {time.perf_counter() - start:.0f} s: {checkpoint}")

    model = recognizer.load(checkpoint)
    key = model.frontend.path_key
    test = read_manifest(config["data"]["test_manifest"], path_key=key)
    hypotheses = [t.text for t in model.transcribe([entry[key] for entry in test], progress=True, split_lines=False)]
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


def trained_checkpoint(cli: RecognizerCLI) -> Path:
    """The checkpoint a finished ``fit`` leaves: the best one (lowest ``val_cer``), else ``last.ckpt``.

    When the time budget stopped the run after the last validation, ``last.ckpt`` holds later weights
    (at the end of the learning-rate decay) than any scored checkpoint: it is validated too, and wins
    if its CER is lower.
    """
    from pytorch_lightning.callbacks import ModelCheckpoint

    best = cli.trainer.checkpoint_callback
    last = cli.last_checkpoint()
    last_path = last.last_path if last is not None else None
    if isinstance(best, ModelCheckpoint) and best.best_model_path:
        if last_path is None or best.best_model_score is None or not _newer(last_path, Path(best.best_model_path)):
            return Path(best.best_model_path)
        (metrics,) = cli.trainer.validate(cli.model, datamodule=cli.datamodule, ckpt_path=str(last_path), verbose=False)
        if metrics["val_cer"] < float(best.best_model_score):
            print(
                f"[demo] last.ckpt, trained after the last validation, scores better: dev CER {metrics['val_cer']:.2%}"
            )
            return last_path
        return Path(best.best_model_path)
    if last_path is not None:
        return last_path
    raise RuntimeError("training wrote no checkpoint: no best checkpoint and no last.ckpt")


def _newer(last: Path, best: Path) -> bool:
    """Whether ``last`` holds weights trained further than ``best`` (more optimizer steps)."""
    import torch

    steps = [torch.load(path, map_location="cpu", weights_only=True)["global_step"] for path in (last, best)]
    return steps[0] > steps[1]


#: small models the notebooks fit in a few minutes when no demo checkpoint exists (on 2 cores:
#: speech ~3 min, ~23 % CER; handwriting ~2 min)
NOTEBOOK_MODELS = {
    "speech": [
        "--model.encoder.init_args.hidden_size",
        "128",
        "--model.encoder.init_args.num_layers",
        "2",
        "--trainer.max_epochs",
        "40",
        "--trainer.check_val_every_n_epoch",
        "10",
    ],
    "handwriting": [
        "--model.encoder.init_args.hidden_size",
        "96",
        "--model.encoder.init_args.num_layers",
        "2",
        "--trainer.max_epochs",
        "20",
        "--trainer.check_val_every_n_epoch",
        "10",
    ],
}


def notebook_model(demo: str = "speech", root: Path | None = None) -> tuple[Path, dict[str, Path]]:
    """A checkpoint and a small synthetic corpus (train/dev/test manifests) for the notebooks.

    The checkpoint is the best of ``recognizer-demo`` when it has been run, else the notebooks'
    quick model when one was already fitted, else a quick model fitted now (a few minutes on 2
    cores, with the same CLI as ``recognizer fit``): a rough model, enough to see what CTC does.
    Everything lives under ``root`` (default: ``workspace()``).
    """
    from recognizer.cli import run_cli
    from recognizer.prepare import SYNTHETIC

    root = root or workspace()
    config_name, corpus_name = DEMOS[demo]
    config = config_file(config_name)
    corpus = importlib.import_module(SYNTHETIC[corpus_name][0]).prepare(
        root / "data" / f"notebook-{demo}", num_train=800, num_dev=40, num_test=20, seed=7
    )
    for runs in (root / "runs" / f"{demo}-demo", root / "runs" / f"notebook-{demo}"):
        checkpoints = sorted(runs.rglob("epoch*.ckpt"))
        if checkpoints:  # the lowest validation CER, from the file name
            return min(checkpoints, key=lambda p: float(p.stem.split("cer")[-1].strip("=_-") or "inf")), corpus
        if last := sorted(runs.rglob("last.ckpt")):
            return last[-1], corpus
    cli = run_cli(
        [
            "fit",
            "--config",
            str(config),
            "--data.train_manifest",
            str(corpus["train"]),
            "--data.val_manifest",
            str(corpus["dev"]),
            "--data.test_manifest",
            str(corpus["test"]),
            *NOTEBOOK_MODELS[demo],
            "--model.warmup_steps",
            "20",
            "--trainer.max_time",
            "00:00:03:00",  # with the notebooks in CI: the whole .ci/run stays under 30 minutes on a slow 2-core machine
            "--trainer.default_root_dir",
            str(root / "runs" / f"notebook-{demo}"),
            "--trainer.enable_progress_bar",
            "false",
        ]
    )
    return trained_checkpoint(cli), corpus


def entry() -> None:
    """Console-script entry (``main`` returns the CER for callers such as benchmarks)."""
    main()


if __name__ == "__main__":
    entry()
