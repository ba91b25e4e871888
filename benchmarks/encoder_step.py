"""One training step (forward and backward) of the AN4 recipe's encoder body: BLSTM against LC-BLSTM, and
optionally the LC-BLSTM of an earlier commit, whose outputs must equal today's.

    python benchmarks/encoder_step.py                      # BLSTM and LC-BLSTM (chunk 20, look-ahead 10)
    python benchmarks/encoder_step.py --baseline ccbd597   # ... and the LC-BLSTM as it was at ccbd597

The layers only (4 x 320 per direction, dropout 0.3) on 20 x 400 stacked frames of 240 values (80 log-mel
stacked by 3), lengths 200-400; 2 threads; the median of 6 steps after one warm-up, each model twice,
alternated.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import torch

from recognizer.encoders.layers import BLSTM
from recognizer.encoders.lcblstm import LCBLSTM

INPUT, HIDDEN, LAYERS, DROPOUT, CHUNK, LOOK_AHEAD = 240, 320, 4, 0.3, 20, 10
BATCH, FRAMES, STEPS = 20, 400, 6


def module_at(revision: str) -> types.ModuleType:
    """``recognizer/encoders/lcblstm.py`` as it was at ``revision``, imported on its own."""
    source = subprocess.run(
        ["git", "show", f"{revision}:recognizer/encoders/lcblstm.py"], capture_output=True, text=True, check=True
    ).stdout.replace("from .", "from recognizer.encoders.")
    path = Path(tempfile.mkdtemp()) / f"lcblstm_{revision}.py"
    path.write_text(source)
    module = types.ModuleType(path.stem)
    module.__file__ = str(path)
    exec(compile(source, str(path), "exec"), module.__dict__)
    sys.modules[path.stem] = module
    return module


def same_outputs(old: torch.nn.Module, new: torch.nn.Module) -> float:
    """The largest difference between the two modules' outputs on a small padded batch."""
    new.load_state_dict(old.state_dict())
    old.eval(), new.eval()
    x, lengths = torch.randn(4, 53, INPUT), torch.tensor([53, 40, 21, 1])
    mask = torch.arange(53)[None] < lengths[:, None]
    with torch.no_grad():
        return float((old(x, lengths)[0] - new(x, lengths)[0])[mask].abs().max())


def median_step(model: torch.nn.Module, x: torch.Tensor, lengths: torch.Tensor) -> float:
    model.train()
    times = []
    for _ in range(STEPS + 1):
        start = time.perf_counter()
        output, _ = model(x, lengths)
        output.sum().backward()
        times.append(time.perf_counter() - start)
    return sorted(times[1:])[STEPS // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", help="a git revision whose LC-BLSTM to time beside today's")
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(2)
    models = {
        "BLSTM": BLSTM(INPUT, HIDDEN, LAYERS, DROPOUT),
        "LC-BLSTM": LCBLSTM(INPUT, HIDDEN, LAYERS, DROPOUT, CHUNK, LOOK_AHEAD),
    }
    if args.baseline:
        old = module_at(args.baseline).LCBLSTM(INPUT, HIDDEN, LAYERS, DROPOUT, CHUNK, LOOK_AHEAD)
        print(
            f"LC-BLSTM at {args.baseline} vs today: outputs differ by at most {same_outputs(old, models['LC-BLSTM']):.3g}"
        )
        models[f"LC-BLSTM at {args.baseline}"] = old
    x = torch.randn(BATCH, FRAMES, INPUT)
    lengths = torch.randint(FRAMES // 2, FRAMES + 1, (BATCH,))
    lengths[0] = FRAMES
    for round in (1, 2):
        for name, model in models.items():
            print(f"round {round}: {name:<24} median step {median_step(model, x, lengths):.2f} s")


if __name__ == "__main__":
    main()
