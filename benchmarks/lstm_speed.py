"""Training-step time of three ways to run a padded batch through a 4-layer BLSTM on CPU.

    python benchmarks/lstm_speed.py

- packed: ``nn.LSTM`` over a ``PackedSequence`` (exact: padding never reaches either direction);
- per-direction (ours, ``recognizer.encoders.layers.BLSTM``): unidirectional LSTMs over the padded batch, the
  backward one on each utterance reversed within its length (exact too);
- padded: ``nn.LSTM(bidirectional=True)`` over the padded batch (fast, but the backward direction
  starts in the padding, so outputs depend on the batch: not an option, shown for scale).

Prints the median forward+backward time of each and the ratios, measured in the same run.
"""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from recognizer.encoders.layers import BLSTM

BATCH, FRAMES, INPUT, HIDDEN, LAYERS, REPEATS = 24, 300, 240, 320, 4, 7


def main() -> None:
    torch.manual_seed(0)
    x = torch.randn(BATCH, FRAMES, INPUT)
    lengths = torch.randint(FRAMES * 3 // 4, FRAMES + 1, (BATCH,))
    lengths[0] = FRAMES
    fused = nn.LSTM(INPUT, HIDDEN, LAYERS, bidirectional=True, batch_first=True)
    ours = BLSTM(INPUT, HIDDEN, LAYERS)

    def packed():
        y, _ = fused(pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False))
        return pad_packed_sequence(y, batch_first=True)[0]

    candidates = {
        "packed": packed,
        "per-direction (ours)": lambda: ours(x, lengths)[0],
        "padded (inexact)": lambda: fused(x)[0],
    }
    medians = {}
    for name, run in candidates.items():
        times = []
        for _ in range(REPEATS):
            start = time.perf_counter()
            run().sum().backward()
            times.append(time.perf_counter() - start)
        medians[name] = statistics.median(times[1:])  # the first run warms up allocators
    frames = int(lengths.sum())
    print(f"batch {BATCH} x up to {FRAMES} frames, {LAYERS}x{HIDDEN} BLSTM, {torch.get_num_threads()} threads")
    for name, seconds in medians.items():
        print(
            f"{name:22s} {seconds * 1000:8.0f} ms  {frames / seconds:8.0f} frames/s  "
            f"{medians['packed'] / seconds:5.1f}x packed"
        )


if __name__ == "__main__":
    main()
