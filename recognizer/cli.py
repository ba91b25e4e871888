"""``recognizer``: the LightningCLI (fit, validate, test, predict) for every modality.

The DataModule builds the tokenizer and the front-end; their settings are linked into the model's
hyperparameters so every checkpoint carries them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import pytorch_lightning as pl
from pytorch_lightning.callbacks import BasePredictionWriter, ModelCheckpoint
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI

from .data import DataModule
from .module import CTCModule


class PredictionWriter(BasePredictionWriter):
    """Writes ``recognizer predict`` results as JSON lines (one file per rank under DDP).

    Args:
        output: the JSON-lines file to write.
    """

    def __init__(self, output: str = "predictions.jsonl") -> None:
        super().__init__(write_interval="batch")
        self.output = output
        self._file = None

    def _path(self, trainer: pl.Trainer) -> Path:
        path = Path(self.output)
        return path if trainer.world_size == 1 else path.with_suffix(f".rank{trainer.global_rank}{path.suffix}")

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        path = self._path(trainer)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "w", encoding="utf-8")

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx) -> None:
        for item in prediction:
            self._file.write(json.dumps(item, ensure_ascii=False) + "\n")

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._file.close()
        print(f"wrote {self._path(trainer)}")


class RecognizerCLI(LightningCLI):
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.tokenizer_config", "model.tokenizer", apply_on="instantiate")
        parser.link_arguments("data.frontend_config", "model.frontend", apply_on="instantiate")
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "checkpoint.monitor": "val_cer",
                "checkpoint.mode": "min",
                "checkpoint.save_top_k": 3,
                "checkpoint.save_last": True,
                "checkpoint.filename": "epoch{epoch:03d}-cer{val_cer:.4f}",
                "checkpoint.auto_insert_metric_name": False,
            }
        )
        parser.add_lightning_class_args(PredictionWriter, "predictions")

    def _parse_ckpt_path(self) -> None:
        # With --ckpt_path, Lightning replaces the model's settings with the checkpoint's. That is
        # right for the architecture (it must match the weights), but how to decode is chosen at
        # validate/test/predict time: a configured `model.decoding` wins over the one it was trained with.
        key = f"{self.config.get('subcommand')}.model.decoding"
        decoding = self.config.get(key) if self.config.get("subcommand") else None
        super()._parse_ckpt_path()
        if decoding is not None:
            self.config[key] = decoding


def run_cli(args: Sequence[str] | None = None, run: bool = True) -> RecognizerCLI:
    """Run the CLI in this process; ``args`` replaces ``sys.argv[1:]`` (used by the demo and tests)."""
    os.environ.setdefault("PL_DISABLE_FORK", "1")  # fork + OpenMP threads can deadlock on CPU
    return RecognizerCLI(
        CTCModule,
        DataModule,
        subclass_mode_data=False,
        seed_everything_default=0,
        trainer_defaults={"use_distributed_sampler": False, "gradient_clip_val": 5.0, "log_every_n_steps": 10},
        save_config_kwargs={"overwrite": True},
        args=list(args) if args is not None else None,
        run=run,
    )


def main() -> None:
    """Entry point of ``recognizer``."""
    run_cli()


if __name__ == "__main__":
    main()
