"""``recognizer average`` (or ``recognizer-average``): the mean of several checkpoints' weights as one model.

The checkpoints of the last epochs of a run lie around one minimum; their mean usually lies nearer its
centre than any one of them, and recognizes a little better. The result is a self-contained
checkpoint for evaluation and transcription (``recognizer.load``, ``recognizer-transcribe``,
``recognizer validate/test/predict --ckpt_path``), **not for resuming**: it holds the weights and the
settings, no optimizer, schedule, loop or callback state (an average of optimizer states means
nothing), so ``recognizer fit --ckpt_path`` refuses it.

``recognizer-average --checkpoints A.ckpt B.ckpt C.ckpt --out avg.ckpt`` averages the files given;
``recognizer-average --run-dir DIR --top-k 5 --out avg.ckpt`` the five with the lowest validation CER
of a run's checkpoint folder. A file's score is the one the run's ``ModelCheckpoint`` recorded for
it, stored in the file itself (its ``callbacks`` state); the filename (``...cer0.1234.ckpt``) is the
fallback for files without it. ``last.ckpt`` has no score of its own and is never chosen.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .artifacts import CheckpointError
from .checkpoint import plain, read_checkpoint, write_checkpoint
from .classpath import name_of
from .encoders.base import encoder_class
from .frontend import frontend_class, frontend_settings

#: the metric the run's ModelCheckpoint monitors (lower is better; see recognizer/cli.py)
MONITOR = "val_cer"
#: the score in a ModelCheckpoint filename such as ``epoch012-cer0.1234.ckpt`` (or ``val_cer=0.1234``)
SCORE_IN_NAME = re.compile(r"cer=?(\d+(?:\.\d+)?)")
#: what an averaged checkpoint keeps of its first input besides the averaged weights: the settings
#: that rebuild the model. Epoch, step and Lightning's version are set anew (what Lightning's own
#: loading, ``--ckpt_path``, reads); optimizer, schedule, loops, callbacks and the DataModule's
#: position are training state and dropped.
KEPT = ("hparams_name", "hyper_parameters")


def model_settings(hparams: dict[str, Any], path: str | os.PathLike) -> dict[str, Any]:
    """The settings the weights depend on, flat (``tokenizer.alphabet``, ``encoder.init_args.hidden_size``).

    Training-only settings (augmentation, dropout) are left out: a run resumed with other ones still
    trains the same model, and its checkpoints may be averaged.
    """
    settings = {f"tokenizer.{key}": plain(value) for key, value in hparams["tokenizer"].items()}
    try:
        frontend = frontend_class(hparams["frontend"])
    except ValueError as error:
        raise CheckpointError(f"{path}: its front-end is unusable: {error}") from None
    settings["frontend.class_path"] = name_of(frontend)  # the first format named only the modality
    for key, value in frontend_settings(hparams["frontend"]).items():
        if key not in frontend.training_only:
            settings[f"frontend.{key}"] = plain(value)
    encoder = hparams["encoder"]  # read_checkpoint spelled every setting out
    settings["encoder.class_path"] = encoder["class_path"]
    for key, value in encoder["init_args"].items():
        if key not in encoder_class(encoder["class_path"]).training_only:
            settings[f"encoder.init_args.{key}"] = plain(value)
    return settings


def _check_same_model(reference: dict[str, Any], settings: dict[str, Any], first: Path, path: Path) -> None:
    for field in sorted(reference.keys() | settings.keys()):
        if reference.get(field) != settings.get(field):
            raise CheckpointError(
                f"{path}: its {field} is {settings.get(field)!r} but {first}'s is {reference.get(field)!r}; "
                "only checkpoints of one model can be averaged"
            )


def average_checkpoints(paths: Sequence[str | os.PathLike]) -> dict[str, Any]:
    """The averaged checkpoint of ``paths`` (in memory; ``write_checkpoint`` saves it).

    Floating-point weights and buffers are averaged (in float64, then stored in the first file's
    dtype, so averaging identical files changes nothing); integer and bool buffers (the feature
    normalizer's ``initialized``) must be equal in every file. The settings are the first file's;
    every file must agree with them on tokenizer, front-end and encoder. Files are read one at a
    time, so memory holds two models, whatever their number. Raises ``CheckpointError`` (a
    ``ValueError``) naming the file that differs.
    """
    files = [Path(path) for path in paths]
    if not files:
        raise ValueError("no checkpoints to average")
    first = read_checkpoint(files[0])
    reference = model_settings(first["hyper_parameters"], files[0])
    state = first["state_dict"]
    sums = {name: value.double() for name, value in state.items() if _averaged(value)}
    sources = [_source(files[0], first)]
    for path in files[1:]:
        checkpoint = read_checkpoint(path)
        _check_same_model(reference, model_settings(checkpoint["hyper_parameters"], path), files[0], path)
        weights = checkpoint["state_dict"]
        missing, unexpected = sorted(state.keys() - weights.keys()), sorted(weights.keys() - state.keys())
        if missing or unexpected:
            raise CheckpointError(
                f"{path}: its weights are not {files[0]}'s (missing: {', '.join(missing[:5]) or 'none'}; "
                f"unexpected: {', '.join(unexpected[:5]) or 'none'})"
            )
        for name, value in weights.items():
            expected = state[name]
            if not isinstance(value, torch.Tensor) or not isinstance(expected, torch.Tensor):
                if value != expected:
                    raise CheckpointError(f"{path}: {name} is {value!r} but {expected!r} in {files[0]}")
            elif value.shape != expected.shape:
                raise CheckpointError(
                    f"{path}: {name} has shape {tuple(value.shape)} but {tuple(expected.shape)} in {files[0]}"
                )
            elif name in sums:
                if not _averaged(value):
                    raise CheckpointError(f"{path}: {name} is {value.dtype} but {expected.dtype} in {files[0]}")
                sums[name] += value.double()
            elif not torch.equal(value, expected):  # counts and flags: a mean of them would mean nothing
                raise CheckpointError(
                    f"{path}: {name} ({value.dtype}) differs from {files[0]}'s; integer and bool buffers "
                    "must be equal to be averaged"
                )
        sources.append(_source(path, checkpoint))
    averaged_weights = {
        name: (sums[name] / len(files)).to(value.dtype) if name in sums else value for name, value in state.items()
    }
    averaged = {key: first[key] for key in KEPT if key in first}
    averaged.update(
        {
            "state_dict": averaged_weights,
            "epoch": max(int(source["epoch"]) for source in sources),
            "global_step": max(int(source["global_step"]) for source in sources),
            # the installed Lightning's: no migration of its (absent) loop state is attempted on loading
            "pytorch-lightning_version": importlib.metadata.version("pytorch-lightning"),
            "averaged_from": sources,  # plain values: loads with weights_only
        }
    )
    return averaged


def _averaged(value: Any) -> bool:
    return isinstance(value, torch.Tensor) and value.is_floating_point()


def _source(path: Path, checkpoint: dict[str, Any]) -> dict[str, Any]:
    """What an averaged checkpoint records of one of its inputs."""
    return {
        "path": str(path),
        "epoch": int(checkpoint.get("epoch", -1)),
        "global_step": int(checkpoint.get("global_step", -1)),
        MONITOR: score(path, checkpoint),
    }


def score(path: Path, checkpoint: dict[str, Any]) -> float | None:
    """The validation CER the run recorded for this file, or None (``last.ckpt``, averaged files).

    Lightning's ``ModelCheckpoint`` stores its top-k table, this file included with its score, in
    the file it writes; other files the run wrote (``last.ckpt``) carry the table without themselves.
    """
    for key, state in (checkpoint.get("callbacks") or {}).items():
        if not str(key).startswith("ModelCheckpoint") or not isinstance(state, dict):
            continue
        if state.get("monitor") != MONITOR:
            continue
        for saved, value in (state.get("best_k_models") or {}).items():
            if Path(str(saved)).name == path.name:
                return float(value)
    if checkpoint.get("averaged_from"):
        return None  # an average is not one of the run's checkpoints, whatever its name says
    match = SCORE_IN_NAME.search(path.stem)
    return float(match.group(1)) if match else None


def checkpoint_folder(run_dir: str | os.PathLike) -> Path:
    """The folder of a run's checkpoints: ``run_dir`` itself, its ``checkpoints/``, or the one folder
    below it that holds ``.ckpt`` files (several, e.g. ``version_0`` and ``version_1``, is an error:
    checkpoints of different runs are not averaged)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise OSError(f"{run_dir}: no such run folder")
    for folder in (run_dir, run_dir / "checkpoints"):
        if any(folder.glob("*.ckpt")):
            return folder
    folders = sorted({path.parent for path in run_dir.rglob("*.ckpt")})
    if not folders:
        raise ValueError(f"{run_dir}: no .ckpt files in it")
    if len(folders) > 1:
        listed = ", ".join(str(folder) for folder in folders[:4])
        raise ValueError(f"{run_dir}: checkpoints of several runs ({listed}); pass one run's folder")
    return folders[0]


def best_checkpoints(run_dir: str | os.PathLike, top_k: int) -> list[Path]:
    """The ``top_k`` checkpoints of a run with the lowest validation CER, best first."""
    if top_k < 1:
        raise ValueError(f"--top-k must be at least 1, got {top_k}")
    folder = checkpoint_folder(run_dir)
    scored = []
    for path in sorted(folder.glob("*.ckpt")):
        value = score(path, read_checkpoint(path))
        if value is not None:
            scored.append((value, path.name, path))
    if len(scored) < top_k:
        raise ValueError(
            f"{folder}: {len(scored)} checkpoints with a validation CER, fewer than --top-k {top_k} "
            "(raise the run's --checkpoint.save_top_k to keep more)"
        )
    return [path for _, _, path in sorted(scored)[:top_k]]


def parse_args(argv: Sequence[str] | None = None, prog: str = "recognizer-average") -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Average the weights of checkpoints of one model into a new checkpoint, for evaluation "
        "and transcription (not for resuming training: no optimizer state is kept).",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoints", nargs="+", metavar="CKPT", help="the checkpoints to average")
    source.add_argument("--run-dir", metavar="DIR", help="a run's folder: average its --top-k best checkpoints")
    parser.add_argument(
        "--top-k", type=int, default=5, metavar="N", help="with --run-dir: how many, by validation CER (default 5)"
    )
    parser.add_argument("--out", required=True, help="the averaged checkpoint to write")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None, prog: str = "recognizer-average") -> int:
    """``recognizer-average``: prints the files averaged and the file written."""
    args = parse_args(argv, prog)
    paths = (
        [Path(path) for path in args.checkpoints] if args.checkpoints else best_checkpoints(args.run_dir, args.top_k)
    )
    averaged = average_checkpoints(paths)
    out = write_checkpoint(averaged, args.out)
    for source in averaged["averaged_from"]:
        cer = source[MONITOR]
        print(f"  {source['path']}  (epoch {source['epoch']}{'' if cer is None else f', {MONITOR} {cer:.4f}'})")
    print(f"wrote {out}: the average of {len(paths)} checkpoints")
    return 0


def subcommand() -> int:
    """``recognizer average``: ``recognizer-average`` as a subcommand of ``recognizer``."""
    return main(prog="recognizer average")


if __name__ == "__main__":
    raise SystemExit(main())
