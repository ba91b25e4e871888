"""Peak memory of `recognizer-transcribe` for 100 vs 10,000 small files (it must stay flat).

    .venv/bin/python benchmarks/transcribe_memory.py --checkpoint MODEL.ckpt [--counts 100 10000]

The files are hard links to one 1-second WAV (the reader opens each as a separate file). Each count
runs in a fresh process; its peak RSS comes from the kernel (ru_maxrss of the child).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile


def run(checkpoint: str, files: list[str], output: Path) -> tuple[float, float]:
    """(peak RSS in MiB, seconds) of one transcription process over ``files``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    result = subprocess.run(
        [
            Path(sys.executable).parent / "recognizer-transcribe",
            "--checkpoint",
            checkpoint,
            "--device",
            "cpu",
            "--output",
            str(output),
            *files,
        ],
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(result.stderr[-2000:])
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if peak <= before:
        raise SystemExit("this child's peak did not exceed an earlier one; run each count separately (--counts N)")
    return peak / 1024, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--counts", type=int, nargs="+", default=[100, 10_000])
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="many-"))
    rng = np.random.default_rng(0)
    original = folder / "one.wav"
    soundfile.write(original, (0.05 * rng.standard_normal(16000)).astype(np.float32), 16000)
    for count in sorted(args.counts):  # ascending: RUSAGE_CHILDREN keeps the largest child's peak
        files = []
        for i in range(count):
            link = folder / f"u{i:05d}.wav"
            if not link.exists():
                os.link(original, link)
            files.append(str(link))
        output = folder / f"out{count}.jsonl"
        peak, seconds = run(args.checkpoint, files, output)
        lines = sum(1 for _ in open(output))
        print(f"{count:>6} files: peak RSS {peak:.0f} MiB, {seconds:.1f} s, {lines} result lines")


if __name__ == "__main__":
    main()
