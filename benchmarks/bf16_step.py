"""One BLSTM-CTC training step in float32 and under bf16 autocast, alternated in one process.

    python benchmarks/bf16_step.py

The AN4 recipe's encoder (4x320 BLSTM, stack 3 / stride 3, 80 log-mel) on a batch of 20 x 400
frames, AdamW, CTC in float32. Prints the median of 4 steps per precision, twice.
"""

import time

import torch
import torch.nn.functional as F

from recognizer.encoders import BLSTMEncoder

torch.manual_seed(0)
torch.set_num_threads(2)
encoder = BLSTMEncoder(80, 30, hidden_size=320, num_layers=4, stack=3, stride=3, dropout=0.3)
optimizer = torch.optim.AdamW(encoder.parameters(), 1e-3)
BATCH, FRAMES = 20, 400
features = torch.randn(BATCH, FRAMES, 80)
lengths = torch.randint(200, FRAMES + 1, (BATCH,))
lengths[0] = FRAMES
targets = torch.randint(1, 30, (BATCH, 40))
target_lengths = torch.full((BATCH,), 40)


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
