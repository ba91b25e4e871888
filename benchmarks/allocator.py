"""Training speed with the C allocator's freed memory kept (``recognizer.allocator.KeepFreedMemory``) and
with glibc's own settings: short ``recognizer fit`` runs of a recipe, alternated.

    python benchmarks/allocator.py                       # IAM-OnDB recipe, 40 batches, 2 rounds
    python benchmarks/allocator.py --config configs/speech/an4.yaml --batches 60

Each run trains ``--batches`` batches of the recipe (no validation, no averaging) in its own process.
Prints per run: wall seconds, user and system CPU seconds, minor page faults, the median of the logged
training lines (utterances) per second, and peak resident memory; then the medians per setting.
"""

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: setting -> the run's trainer.callbacks (replacing the config's; the CLI adds its own callbacks anyway)
CALLBACKS = {"keep": '[{"class_path": "recognizer.allocator.KeepFreedMemory"}]', "system": "[]"}

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--config", default=str(ROOT / "configs/handwriting/iam_ondb.yaml"))
parser.add_argument("--batches", type=int, default=40)
parser.add_argument("--rounds", type=int, default=2)
args = parser.parse_args()


def train(choice: str, root: str) -> dict[str, float]:
    """One short fit with the setting ``choice``; its resource use and median lines/s."""
    command = [
        sys.executable, "-m", "recognizer", "fit", "--config", args.config,
        "--trainer.default_root_dir", root, "--trainer.enable_progress_bar", "false",
        "--trainer.max_epochs", "1", "--trainer.limit_train_batches", str(args.batches),
        "--trainer.limit_val_batches", "0", "--trainer.max_time", "null", "--trainer.log_every_n_steps", "10",
        "--average.top_k", "0", "--trainer.callbacks", CALLBACKS[choice],
    ]  # fmt: skip
    start = time.perf_counter()
    with open(Path(root) / "log", "w") as log:
        process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)  # this child's own resource use
        process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if process.returncode:
        sys.exit(f"{choice}: recognizer fit failed:\n{(Path(root) / 'log').read_text()[-2000:]}")
    (metrics,) = Path(root).glob("lightning_logs/version_*/metrics.csv")
    rates = [float(row["utt_per_s"]) for row in csv.DictReader(metrics.open()) if row.get("utt_per_s")]
    if not rates:
        sys.exit(f"{choice}: no training throughput logged; give --batches of at least 10")
    return {
        "wall_s": wall,
        "user_s": usage.ru_utime,
        "sys_s": usage.ru_stime,
        "faults": float(usage.ru_minflt),
        "lines_per_s": statistics.median(rates),
        "peak_rss_gib": usage.ru_maxrss / 2**20,  # kB -> GiB
    }


results: dict[str, list[dict[str, float]]] = {choice: [] for choice in CALLBACKS}
print(f"{args.config}: {args.batches} batches per run, {args.rounds} rounds, alternated")
for round_ in range(args.rounds):
    for choice in CALLBACKS:
        with tempfile.TemporaryDirectory() as root:
            result = train(choice, root)
        results[choice].append(result)
        print(f"round {round_ + 1} {choice:6s} " + "  ".join(f"{k} {v:.4g}" for k, v in result.items()), flush=True)
for choice in CALLBACKS:
    keys = results[choice][0].keys()
    medians = {k: statistics.median(r[k] for r in results[choice]) for k in keys}
    print(f"median {choice:6s} " + "  ".join(f"{k} {v:.4g}" for k, v in medians.items()))
keep, system = (statistics.median(r["lines_per_s"] for r in results[c]) for c in CALLBACKS)
print(f"keep / system lines/s: {keep / system:.3f}")
