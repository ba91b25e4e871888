"""Scale by simulation: a manifest of N lines (default 1,000,000) pointing at a few real AN4 files
with their real durations, through the same code as training.

Measures: reading the manifest, DataModule setup (alphabet from the transcripts, label encoding),
the batch sampler's time per epoch, memory, and the wall time from `recognizer fit` starting to its
first optimizer step (a tiny model; one batch).

    .venv/bin/python benchmarks/scale.py --lines 1000000 --an4 ../shared/data/an4
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

import soundfile


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_manifest(folder: Path, an4: Path, lines: int) -> Path:
    wavs = sorted((an4 / "wav").rglob("*.wav"))[:20]
    transcripts = {}
    for line in (an4 / "etc" / "an4_train.transcription").read_text().splitlines():
        text, _, utt = line.rpartition("(")
        transcripts[utt.strip(") ")] = text.replace("<s>", "").replace("</s>", "").strip()
    rows = [
        {
            "audio_filepath": str(w),
            "duration": round(soundfile.info(w).duration, 3),
            "text": transcripts.get(w.stem, "A B C"),
        }
        for w in wavs
    ]
    path = folder / "million.jsonl"
    with open(path, "w") as f:
        for i in range(lines):
            f.write(json.dumps({**rows[i % len(rows)], "id": f"utt{i:07d}"}) + "\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--an4", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "an4"))
    args = parser.parse_args()

    from recognizer.audio import AudioFrontend
    from recognizer.cli import run_cli
    from recognizer.data import DataModule, LengthBudgetBatchSampler

    folder = Path(tempfile.mkdtemp(prefix="scale-"))
    start = time.perf_counter()
    manifest = write_manifest(folder, Path(args.an4), args.lines)
    print(
        f"wrote {args.lines:,} lines ({manifest.stat().st_size / 2**20:.0f} MiB) in {time.perf_counter() - start:.1f} s"
    )

    base = peak_rss_mib()
    start = time.perf_counter()
    data = DataModule(AudioFrontend(), train_manifest=str(manifest), case="upper", max_frames=20000)
    built = time.perf_counter() - start
    start = time.perf_counter()
    data.setup("fit")
    setup = time.perf_counter() - start
    start = time.perf_counter()
    lengths = data.train_set.lengths()
    estimate = time.perf_counter() - start
    sampler = LengthBudgetBatchSampler(lengths, 20000, seed=0)
    times = []
    for epoch in range(1, 4):
        start = time.perf_counter()
        sampler.set_epoch(epoch)
        times.append(time.perf_counter() - start)
    print(
        f"DataModule(): read + alphabet {built:.1f} s; setup (labels) {setup:.1f} s; frame estimates {estimate:.1f} s; "
        f"sampler per epoch {sorted(times)[1]:.2f} s (median of 3), {len(sampler):,} batches; "
        f"peak RSS {peak_rss_mib():.0f} MiB ({peak_rss_mib() - base:.0f} MiB over the {base:.0f} MiB before)"
    )
    del data, sampler

    class FirstStep(Exception):
        pass

    start = time.perf_counter()
    try:
        run_cli(
            [
                "fit",
                "--config",
                str(Path(__file__).resolve().parents[1] / "configs" / "speech" / "an4.yaml"),
                "--data.train_manifest",
                str(manifest),
                "--data.val_manifest",
                "null",
                "--data.test_manifest",
                "null",
                "--model.encoder.init_args.hidden_size",
                "16",
                "--model.encoder.init_args.num_layers",
                "1",
                "--trainer.max_steps",
                "1",
                "--trainer.logger",
                "false",
                "--checkpoint.monitor",
                "null",
                "--checkpoint.save_top_k",
                "1",
                "--trainer.enable_progress_bar",
                "false",
                "--trainer.default_root_dir",
                str(folder),
                "--trainer.limit_val_batches",
                "0",
            ]
        )
    finally:
        first_step = time.perf_counter() - start
    print(
        f"recognizer fit: start to end of the first optimizer step {first_step:.1f} s; peak RSS {peak_rss_mib():.0f} MiB"
    )
    os.remove(manifest)


if __name__ == "__main__":
    main()
