"""End-to-end transcription speed, memory and accuracy of each runtime of one trained speech model.

    python benchmarks/export.py --checkpoint runs/an4/.../averaged.ckpt --manifest data/an4/dev.jsonl

Exports the checkpoint as a model file, ONNX and int8 ONNX, then times ``recognizer-transcribe`` on every
file of the manifest, from process start to the JSON lines written, for each runtime (rounds
interleaved, medians): real-time factor, peak memory (max RSS), start-up (a process that only loads the
model), CER/WER, and how many transcripts equal the PyTorch checkpoint's. The ONNX models run both
through ``recognizer.load`` (torch carries the log-probabilities to the decoders) and without torch
(``recognizer-transcribe``'s path for greedy decoding of an ONNX speech model, ``recognizer.onnx_runtime``). With ``--long-minutes``, the
same for one long file made of the manifest's audio: segmented transcription's peak memory and RTF,
and whether its text equals one unsegmented pass. Prints a Markdown table.
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
import soundfile
from torchmetrics.functional.text import char_error_rate, word_error_rate

from recognizer.export import export
from recognizer.manifest import read_manifest

BIN = Path(sys.executable).parent
TIME = "/usr/bin/time"  # GNU time: -f %M gives the peak resident memory in KiB


def timed(command: list[str]) -> tuple[float, float]:
    """Wall seconds from process start to exit, and peak memory in MiB."""
    start = time.perf_counter()
    run = subprocess.run([TIME, "-f", "%M", *command], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if run.returncode != 0:
        raise SystemExit(f"{' '.join(command[:3])} failed: {run.stderr.strip()[-500:]}")
    return seconds, int(run.stderr.strip().splitlines()[-1]) / 1024


def transcripts(path: Path) -> dict[str, str]:
    """source -> text of a JSON-lines output."""
    return {row["source"]: row["text"] for row in map(json.loads, path.read_text().splitlines())}


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance, one row of the table at a time in numpy (an hour's transcripts hold ~50,000
    characters: a Python loop over the 2.5e9 cells would take hours)."""
    if not a or not b:
        return len(a) + len(b)
    codes_b = np.frombuffer(b.encode("utf-32-le"), dtype=np.uint32)
    steps = np.arange(len(b) + 1)
    row = steps.copy()
    for i, char in enumerate(a, start=1):
        cost = codes_b != ord(char)
        diagonal = np.minimum(row[1:] + 1, row[:-1] + cost)  # deletion, substitution or match
        candidate = np.concatenate([[i], diagonal])
        # insertions: d[j] = min over k <= j of candidate[k] + (j - k)
        row = np.minimum.accumulate(candidate - steps) + steps
    return int(row[-1])


def cer(hypothesis: str, reference: str) -> float:
    """Character error rate of one (long) transcript, in percent."""
    return 100 * edit_distance(reference, hypothesis) / max(1, len(reference))


def long_file(files: list[str], references: dict[str, str], minutes: float, out: Path) -> tuple[float, str]:
    """The manifest's audio one after another (0.25 s apart), repeated up to ``minutes``: its duration
    and its reference text."""
    pieces, texts, total, rate = [], [], 0, 16000
    while total < minutes * 60 * rate:
        for f in files:
            data, rate = soundfile.read(f, dtype="float32")
            pieces += [data, np.zeros(rate // 4, dtype=np.float32)]
            texts.append(references[f])
            total += len(data) + rate // 4
            if total >= minutes * 60 * rate:
                break
    soundfile.write(out, np.concatenate(pieces), rate, subtype="PCM_16")
    return total / rate, " ".join(texts)


#: how each runtime is run: the command before its arguments, and the Python that only loads the model
TORCH_PATH = ([sys.executable, "-m", "recognizer.transcribe"], "import recognizer; recognizer.load({!r}, device='cpu')")
TORCH_FREE = (
    [str(BIN / "recognizer-transcribe")],  # an ONNX speech model, greedy: recognizer.onnx_runtime
    "from recognizer.onnx_runtime import OnnxTranscriber; OnnxTranscriber({!r})",
)


def short_files(
    runtimes: dict[str, tuple[Path, tuple[list[str], str]]],
    files: list[str],
    references: dict[str, str],
    audio: float,
    rounds: int,
    out: Path,
) -> None:
    """The table of every runtime on the manifest's files (see the module docstring)."""
    wall: dict[str, list[float]] = {name: [] for name in runtimes}
    memory: dict[str, list[float]] = {name: [] for name in runtimes}
    startup: dict[str, list[float]] = {name: [] for name in runtimes}
    for _ in range(rounds):
        for name, (model, (command, load)) in runtimes.items():
            result = out / f"{name.replace(' ', '-')}.jsonl"
            result.unlink(missing_ok=True)
            seconds, peak = timed(
                [*command, "--checkpoint", str(model), "--device", "cpu", "--output", str(result), *files]
            )
            wall[name].append(seconds)
            memory[name].append(peak)
            startup[name].append(timed([sys.executable, "-c", load.format(str(model))])[0])
    texts = {name: transcripts(out / f"{name.replace(' ', '-')}.jsonl") for name in runtimes}

    print(
        f"\n{len(files)} files, {audio:.1f} s of audio; {platform.processor() or platform.machine()}, "
        f"medians of {rounds} interleaved rounds\n"
    )
    print(
        "| runtime | file size | start-up | wall (start to JSON) | RTF | x real time | peak memory | CER | WER | same text as checkpoint |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, (model, _) in runtimes.items():
        seconds = statistics.median(wall[name])
        hypotheses = [texts[name][f] for f in files]
        cer = char_error_rate(hypotheses, [references[f] for f in files]).item()
        wer = word_error_rate(hypotheses, [references[f] for f in files]).item()
        same = sum(texts[name][f] == texts["checkpoint"][f] for f in files)
        print(
            f"| {name} | {model.stat().st_size / 2**20:.1f} MiB | {statistics.median(startup[name]):.2f} s | "
            f"{seconds:.2f} s | {seconds / audio:.4f} | {audio / seconds:.0f}x | {statistics.median(memory[name]):.0f} MiB | "
            f"{100 * cer:.2f} % | {100 * wer:.2f} % | {same}/{len(files)} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--out-dir", default="/tmp/export-benchmark")
    parser.add_argument("--rounds", type=int, default=3, help="0: only the long file")
    parser.add_argument("--long-minutes", type=float, default=0, help="also a long file of this many minutes")
    args = parser.parse_args()
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)

    exported: dict[str, Path] = {"checkpoint": Path(args.checkpoint)}
    for name, file, int8 in (
        ("model file", "model.pt", False),
        ("ONNX", "model.onnx", False),
        ("ONNX int8", "model-int8.onnx", True),
    ):
        start = time.perf_counter()
        exported[name] = export(args.checkpoint, out / file, int8=int8)
        print(f"exported {name} in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    runtimes = {name: (path, TORCH_PATH) for name, path in exported.items()}
    for name in ("ONNX", "ONNX int8"):
        runtimes[f"{name}, without torch"] = (exported[name], TORCH_FREE)
    entries = read_manifest(args.manifest, path_key="audio_filepath")
    files = [e["audio_filepath"] for e in entries]
    audio = sum(soundfile.info(f).duration for f in files)
    references = {e["audio_filepath"]: e["text"] for e in entries}

    if args.rounds:
        short_files(runtimes, files, references, audio, args.rounds, out)
    if args.long_minutes:
        long = out / "long.wav"
        duration, reference = long_file(files, references, args.long_minutes, long)
        print(f"\nlong file: {duration / 60:.1f} minutes (the manifest's files, repeated)\n")
        print("| runtime | wall | RTF | peak memory | CER in segments | CER in one pass | same text |")
        print("|---|---|---|---|---|---|---|")
        one_pass = (
            "import json, sys, recognizer; from recognizer import batching; batching.SEGMENT_FRAMES = 10**9; "
            "print(json.dumps(recognizer.load(sys.argv[1], device='cpu').transcribe([sys.argv[2]])[0].text))"
        )
        for name in ("model file", "ONNX", "ONNX int8", "ONNX, without torch", "ONNX int8, without torch"):
            result = out / "long.jsonl"
            result.unlink(missing_ok=True)
            model, (run, _) = runtimes[name]
            command = [*run, "--checkpoint", str(model), "--device", "cpu"]
            command += ["--output", str(result)]
            seconds, peak = timed([*command, str(long)])
            segmented = transcripts(result)[str(long)]
            whole = json.loads(
                subprocess.run(
                    [sys.executable, "-c", one_pass, str(model), str(long)],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout.splitlines()[-1]
            )
            cers = [cer(text, reference) for text in (segmented, whole)]
            print(
                f"| {name} | {seconds:.1f} s | {seconds / duration:.4f} | {peak:.0f} MiB | {cers[0]:.2f} % | "
                f"{cers[1]:.2f} % | {'yes' if segmented == whole else 'no'} |"
            )


if __name__ == "__main__":
    main()
