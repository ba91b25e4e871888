"""One BLSTM-CTC training step in float32 and under bf16 autocast, alternated in one process.

    python benchmarks/bf16_step.py                 # the AN4 recipe's encoder
    python benchmarks/bf16_step.py --recipe iam    # the IAM-OnDB recipe's

AN4: 4x320 BLSTM, stack 3 / stride 3, 80 log-mel, a batch of 20 x 400 frames (8,000, the recipe's
budget). IAM-OnDB: 4x192 BLSTM, stack 2 / stride 2, 7 per-point features, a batch of 40 x 400 points
(16,000). AdamW, CTC in float32. Prints the median of 4 steps per precision, twice.
"""

import argparse
import time

import torch
import torch.nn.functional as F

from recognizer.encoders import BLSTMEncoder

#: recipe -> (input dim, vocabulary, hidden size, stack = stride, batch, frames, labels per line)
RECIPES = {"an4": (80, 30, 320, 3, 20, 400, 40), "iam": (7, 80, 192, 2, 40, 400, 45)}

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--recipe", choices=sorted(RECIPES), default="an4")
dim, vocab, hidden, stride, BATCH, FRAMES, LABELS = RECIPES[parser.parse_args().recipe]

torch.manual_seed(0)
torch.set_num_threads(2)
encoder = BLSTMEncoder(dim, vocab, hidden_size=hidden, num_layers=4, stack=stride, stride=stride, dropout=0.3)
optimizer = torch.optim.AdamW(encoder.parameters(), 1e-3)
features = torch.randn(BATCH, FRAMES, dim)
lengths = torch.randint(FRAMES // 2, FRAMES + 1, (BATCH,))
lengths[0] = FRAMES
targets = torch.randint(1, vocab, (BATCH, LABELS))
target_lengths = torch.full((BATCH,), LABELS)


def step(bf16: bool) -> None:
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        log_probs, out_lengths = encoder(features, lengths)
    loss = F.ctc_loss(log_probs.float().transpose(0, 1), targets, out_lengths, target_lengths, zero_infinity=True)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


for bf16 in (False, True, False, True):
    step(bf16)  # warm-up
    times = []
    for _ in range(4):
        start = time.perf_counter()
        step(bf16)
        times.append(time.perf_counter() - start)
    print("bf16 autocast" if bf16 else "float32", f"median step {sorted(times)[len(times) // 2]:.3f} s")
