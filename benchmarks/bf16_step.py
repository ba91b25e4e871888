"""One BLSTM-CTC training step in float32 and under bf16 autocast, alternated in one process.

    python benchmarks/bf16_step.py                 # the AN4 recipe's encoder
    python benchmarks/bf16_step.py --recipe iam    # the IAM-OnDB recipe's

The encoder is built from the recipe's config (``configs/speech/an4.yaml``, ``configs/handwriting/iam_ondb.yaml``:
its ``model.encoder`` settings and the front-end's feature size), on random features: a batch of the
recipe's ``max_frames`` budget as 20 (AN4) or 40 (IAM-OnDB) sequences of 400 frames. AdamW, CTC in float32.
Prints the median of 4 steps per precision, twice.
"""

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml

from recognizer.encoders import BLSTMEncoder

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
#: recipe -> (config, vocabulary size, sequences per batch, labels per sequence)
RECIPES = {"an4": ("speech/an4.yaml", 30, 20, 40), "iam": ("handwriting/iam_ondb.yaml", 80, 40, 45)}
FRAMES = 400

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--recipe", choices=sorted(RECIPES), default="an4")
config_name, vocab, batch, labels = RECIPES[parser.parse_args().recipe]
config = yaml.safe_load((CONFIGS / config_name).read_text())
frontend = config["data"]["frontend"]["init_args"]
dim = frontend["n_mels"] if "n_mels" in frontend else len(frontend["features"])
settings = dict(config["model"]["encoder"]["init_args"])

torch.manual_seed(0)
torch.set_num_threads(2)
encoder = BLSTMEncoder(dim, vocab, **settings)
optimizer = torch.optim.AdamW(encoder.parameters(), 1e-3)
features = torch.randn(batch, FRAMES, dim)
lengths = torch.randint(FRAMES // 2, FRAMES + 1, (batch,))
lengths[0] = FRAMES
targets = torch.randint(1, vocab, (batch, labels))
target_lengths = torch.full((batch,), labels)
print(f"{config_name}: {dim} features, encoder {settings}")


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
