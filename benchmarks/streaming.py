"""A streaming model on a manifest: streaming against offline accuracy, compute per piece, latency.

    python benchmarks/streaming.py --checkpoint runs/an4-lcblstm/.../averaged.ckpt --manifest data/an4/dev.jsonl

Each utterance is fed to ``Recognizer.stream()`` in pieces of ``--chunk-ms`` (as a microphone would
deliver them, without waiting), then finished; the same model transcribes it offline. Reports CER/WER
of both, how many transcripts are the same, the compute per piece (median and 95th percentile, the
partial result included), and the algorithmic latency the encoder's chunking implies. Prints Markdown.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import numpy as np
import torch
from torchmetrics.functional.text import char_error_rate, word_error_rate

import recognizer
from recognizer.audio import fft_size
from recognizer.manifest import read_manifest


def latency_ms(model: recognizer.Recognizer) -> tuple[float, float]:
    """How long after the end of the audio an output frame covers it becomes final, at most and on
    average over its place in the chunk: the chunk's later frames, its right context, and the front-end's
    look-ahead (half an FFT window past a feature frame's centre)."""
    encoder = model.model.encoder  # type: ignore[union-attr]
    frame_ms = model.frame_duration * 1000
    chunk, right = encoder.rnn.chunk_size, encoder.rnn.right_context
    frontend = model.frontend
    look_ahead = fft_size(frontend.win_length) / 2 / frontend.sample_rate * 1000  # type: ignore[attr-defined]
    return (chunk - 1 + right) * frame_ms + look_ahead, ((chunk - 1) / 2 + right) * frame_ms + look_ahead


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--chunk-ms", type=float, default=100.0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (a stream runs on one core)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model = recognizer.load(args.checkpoint, device="cpu")
    entries = read_manifest(args.manifest, path_key="audio_filepath")
    files = [e["audio_filepath"] for e in entries]
    references = [model.tokenizer.normalize(e["text"]) for e in entries]
    offline = [t.text for t in model.transcribe(files)]
    size = round(model.frontend.sample_rate * args.chunk_ms / 1000)  # type: ignore[attr-defined]
    streamed, piece_ms, audio_s, compute_s = [], [], 0.0, 0.0
    for file in files:
        waveform = model.frontend.load(file).numpy()
        audio_s += len(waveform) / model.frontend.sample_rate  # type: ignore[attr-defined]
        session = model.stream()
        for start in range(0, len(waveform), size):
            begin = time.perf_counter()
            session.feed(waveform[start : start + size])
            piece_ms.append(1000 * (time.perf_counter() - begin))
            compute_s += piece_ms[-1] / 1000
        begin = time.perf_counter()
        streamed.append(session.finish().text)
        compute_s += time.perf_counter() - begin
    longest, mean = latency_ms(model)
    same = sum(a == b for a, b in zip(streamed, offline))
    print(
        f"\n{len(files)} utterances, {audio_s:.1f} s of audio; pieces of {args.chunk_ms:g} ms; "
        f"{args.threads} thread(s); {platform.machine()}\n"
    )
    print("| | CER | WER |\n|---|---|---|")
    for name, texts in (("offline", offline), ("streaming", streamed)):
        cer = 100 * float(char_error_rate(texts, references))
        wer = 100 * float(word_error_rate(texts, references))
        print(f"| {name} | {cer:.2f} % | {wer:.2f} % |")
    print(f"\n- same transcript streaming and offline: {same}/{len(files)}")
    print(
        f"- compute per {args.chunk_ms:g} ms piece: median {statistics.median(piece_ms):.1f} ms, "
        f"95th percentile {np.percentile(piece_ms, 95):.1f} ms; whole stream {compute_s / audio_s:.3f} x real time"
    )
    print(f"- algorithmic latency: at most {longest:.0f} ms, {mean:.0f} ms on average (chunking and look-ahead)")


if __name__ == "__main__":
    main()
