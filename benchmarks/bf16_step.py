"""One BLSTM-CTC training step in float32 and under bf16 autocast, alternated in one process.

    python benchmarks/bf16_step.py                 # the AN4 recipe's encoder
    python benchmarks/bf16_step.py --recipe iam    # the IAM-OnDB recipe's
    python benchmarks/bf16_step.py --change spectral_channels=32   # the recipe's encoder against it changed,
                                                                   # both in float32 (--bf16: both in bf16)

The encoder is built from the recipe's config (``configs/speech/an4.yaml``, ``configs/handwriting/iam_ondb.yaml``:
its ``model.encoder`` settings and the front-end's feature size), on random features: a batch of the
recipe's ``max_frames`` budget as 20 (AN4) or 40 (IAM-OnDB) sequences of 400 frames. AdamW, CTC in float32.
Prints the median of 4 steps per precision (or per encoder, with ``--change``), twice.
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
parser.add_argument(
    "--change", nargs="+", default=[], metavar="SETTING=VALUE", help="time the recipe's encoder against it changed so"
)
parser.add_argument("--bf16", action="store_true", help="with --change: both under bf16 autocast (default float32)")
args = parser.parse_args()
if args.bf16 and not args.change:
    parser.error("--bf16 goes with --change: without it the script times float32 against bf16")
config_name, vocab, batch, labels = RECIPES[args.recipe]
config = yaml.safe_load((CONFIGS / config_name).read_text())
frontend = config["data"]["frontend"]["init_args"]
dim = frontend["n_mels"] if "n_mels" in frontend else len(frontend["features"])
settings = dict(config["model"]["encoder"]["init_args"])

changed = {**settings, **{k: yaml.safe_load(v) for k, v in (c.split("=", 1) for c in args.change)}}

torch.manual_seed(0)
torch.set_num_threads(2)
encoders = {"recipe": BLSTMEncoder(dim, vocab, **settings)}
if args.change:
    encoders["changed"] = BLSTMEncoder(dim, vocab, **changed)
optimizers = {name: torch.optim.AdamW(e.parameters(), 1e-3) for name, e in encoders.items()}
features = torch.randn(batch, FRAMES, dim)
lengths = torch.randint(FRAMES // 2, FRAMES + 1, (batch,))
lengths[0] = FRAMES
targets = torch.randint(1, vocab, (batch, labels))
target_lengths = torch.full((batch,), labels)
print(f"{config_name}: {dim} features, encoder {settings}")
if args.change:
    print(f"changed: {changed}")


def step(bf16: bool, name: str = "recipe") -> None:
    encoder, optimizer = encoders[name], optimizers[name]
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        log_probs, out_lengths = encoder(features, lengths)
    loss = F.ctc_loss(log_probs.float().transpose(0, 1), targets, out_lengths, target_lengths, zero_infinity=True)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


runs = [(args.bf16, name) for name in ("recipe", "changed")] if args.change else [(False, "recipe"), (True, "recipe")]
for bf16, name in runs * 2:
    step(bf16, name)  # warm-up
    times = []
    for _ in range(4):
        start = time.perf_counter()
        step(bf16, name)
        times.append(time.perf_counter() - start)
    label = ("bf16 autocast" if bf16 else "float32") + (f", {name}" if args.change else "")
    print(label, f"median step {sorted(times)[len(times) // 2]:.3f} s")
