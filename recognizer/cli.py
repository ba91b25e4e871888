"""``recognizer``: the LightningCLI (fit, validate, test, predict) for every modality.

The DataModule builds the tokenizer and the front-end; their settings are linked into the model's
hyperparameters so every checkpoint carries them.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

import pytorch_lightning as pl
from jsonargparse import Namespace
from pytorch_lightning.callbacks import BasePredictionWriter, ModelCheckpoint
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI
from pytorch_lightning.loggers import CSVLogger, Logger, TensorBoardLogger

from .artifacts import MODEL_FORMAT, CheckpointError
from .callbacks import AverageCheckpoints, LastCheckpoint
from .checkpoint import Disagreement, agree, plain, read_checkpoint
from .classpath import name_of, resolve
from .data import DataModule
from .encoders.base import encoder_class
from .encoders.base import settings as encoder_settings
from .frontend import Frontend, frontend_class, frontend_settings
from .lightning_module import CTCModule, training_precision

log = logging.getLogger(__name__)


class PredictionWriter(BasePredictionWriter):
    """Writes ``recognizer predict`` results as JSON lines (one file per rank under DDP).

    Args:
        output: the JSON-lines file to write.
    """

    def __init__(self, output: str = "predictions.jsonl") -> None:
        super().__init__(write_interval="batch")
        self.output = output
        self._file: TextIO | None = None

    def _path(self, trainer: pl.Trainer) -> Path:
        path = Path(self.output)
        return path if trainer.world_size == 1 else path.with_suffix(f".rank{trainer.global_rank}{path.suffix}")

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        path = self._path(trainer)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "w", encoding="utf-8")

    def write_on_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        prediction: Any,
        batch_indices: Sequence[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        assert self._file is not None, "opened in on_predict_start"
        for item in prediction:
            self._file.write(json.dumps(item, ensure_ascii=False) + "\n")

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._file is not None:
            self._file.close()
        print(f"wrote {self._path(trainer)}")


class RecognizerCLI(LightningCLI):
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.tokenizer_config", "model.tokenizer", apply_on="instantiate")
        parser.link_arguments("data.frontend_config", "model.frontend", apply_on="instantiate")
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.add_lightning_class_args(LastCheckpoint, "last_checkpoint")
        parser.add_lightning_class_args(AverageCheckpoints, "average")  # off unless --average.top_k N
        parser.set_defaults(
            {
                "checkpoint.monitor": "val_cer",
                "checkpoint.mode": "min",
                "checkpoint.save_top_k": 3,
                "checkpoint.save_last": False,  # last.ckpt is LastCheckpoint's: more often, atomic, on signals
                "checkpoint.filename": "epoch{epoch:03d}-cer{val_cer:.4f}",
                "checkpoint.auto_insert_metric_name": False,
            }
        )
        parser.add_lightning_class_args(PredictionWriter, "predictions")

    def _run_subcommand(self, subcommand: str) -> None:
        try:
            super()._run_subcommand(subcommand)
        except SystemExit:  # Lightning ends a SIGTERM'd fit with SIGTERMException, after LastCheckpoint saved
            callback = self.last_checkpoint()
            if callback is None or callback.interrupted is None:
                raise

    def last_checkpoint(self) -> LastCheckpoint | None:
        """The run's ``LastCheckpoint`` callback (``interrupted`` tells whether a signal stopped it)."""
        trainer = getattr(self, "trainer", None)
        return next((c for c in trainer.callbacks if isinstance(c, LastCheckpoint)), None) if trainer else None

    def _instantiate_trainer(self, config: dict, callbacks: list) -> pl.Trainer:
        if config.get("logger") in (None, True):  # not configured: Lightning's default, plus CSV
            config["logger"] = default_loggers(config.get("default_root_dir"))
        config["precision"] = training_precision(config.get("precision"), config.get("accelerator"))
        return super()._instantiate_trainer(config, callbacks)

    def _parse_ckpt_path(self) -> None:
        # With --ckpt_path the checkpoint is the truth: Lightning puts its model settings into the
        # config, and `hold_to_checkpoint` makes the data's tokenizer and front-end (linked into the
        # model at instantiation) the checkpoint's too; a config that contradicts them is an error.
        # How to decode is chosen at validate/test/predict time: a configured `model.decoding` wins.
        subcommand = self.config.get("subcommand")
        if not subcommand:
            return
        config = self.config[subcommand]
        ckpt_path = config.get("ckpt_path")
        decoding = config.get("model.decoding")
        checkpoint, configured_model = None, Namespace()
        if (
            ckpt_path
            and ckpt_path not in LIGHTNING_CKPT_ALIASES
            and not str(ckpt_path).startswith(REMOTE_CKPT_PREFIXES)
        ):
            checkpoint = read_checkpoint(ckpt_path)  # one clear error for a bad file, before Lightning's load
            if checkpoint.get("format") == MODEL_FORMAT:  # Lightning's own reading would end in a KeyError
                raise CheckpointError(
                    f"{ckpt_path}: a model file (recognizer export): weights for recognizer.load and "
                    "recognizer-transcribe, not a training checkpoint; pass the run's .ckpt"
                )
            if subcommand == "fit" and "optimizer_states" not in checkpoint:  # Lightning's error is a KeyError
                raise CheckpointError(
                    f"{ckpt_path}: holds weights only (an averaged checkpoint, for evaluation and transcription), "
                    "no training state to resume from; resume from the run's last.ckpt"
                )
            configured_model = config.get("model").clone()
        if checkpoint is None:
            super()._parse_ckpt_path()
        else:  # Lightning's own reading would not bring an earlier checkpoint format up to date
            hparams = {k: v for k, v in checkpoint["hyper_parameters"].items() if k != "_instantiator"}
            self.config = self.parser.parse_object({subcommand: {"model": hparams}}, self.config)
        config = self.config[subcommand]
        if ckpt_path:  # its weights replace any starting point, whose file need not exist any more
            config["model.init_from"] = None
        if checkpoint is not None:
            for warning in hold_to_checkpoint(
                config, configured_model, checkpoint["hyper_parameters"], ckpt_path, subcommand == "fit"
            ):
                log.warning(warning)
        if decoding is not None:
            config["model.decoding"] = decoding


#: --ckpt_path values that Lightning resolves itself (their settings are checked when the weights load)
LIGHTNING_CKPT_ALIASES = ("last", "best", "hpc", "registry")
REMOTE_CKPT_PREFIXES = ("registry:", "s3://", "gs://", "http://", "https://")


def _defaults(cls: type) -> dict[str, Any]:
    """A class's constructor parameters that have defaults, with them."""
    return {name: p.default for name, p in inspect.signature(cls).parameters.items() if p.default is not p.empty}


def hold_to_checkpoint(
    config: Namespace, configured_model: Namespace, hparams: dict[str, Any], path: str, training: bool
) -> list[str]:
    """Make ``config`` (one subcommand's) use the checkpoint's tokenizer, front-end and encoder.

    Raises ``Disagreement`` naming the first field the config sets differently; returns warnings for
    training-only settings the config changes (kept when ``training``: they shape the resumed run).
    """
    warnings = []

    def use(field: str, configured: Any, default: Any, stored: Any, training_only: bool = False) -> Any:
        value, warning = agree(field, configured, default, stored, path, training_only)
        if warning and training:
            warnings.append(warning)
        return value if training or not training_only else stored  # evaluation: only the checkpoint matters

    data_defaults = _defaults(DataModule)
    tokenizer = hparams["tokenizer"]
    for name in ("alphabet", "case", "keep"):  # what the labels mean; unknown/replacement stay the run's policy
        config[f"data.{name}"] = use(
            f"data.{name}", config.get(f"data.{name}"), data_defaults.get(name), tokenizer.get(name)
        )

    try:
        cls = frontend_class(hparams["frontend"])
    except ValueError as error:
        raise Disagreement(f"{path}: the checkpoint's front-end is unusable: {error}") from None
    stored = frontend_settings(hparams["frontend"])
    class_path = name_of(cls)
    configured = config.get("data.frontend")
    configured_path = configured.get("class_path") if configured is not None else None
    if configured_path is not None and resolve(configured_path, Frontend, "front-end") is not cls:
        raise Disagreement(
            f"{path}: the checkpoint is a {cls.modality} model ({class_path}) but data.frontend is {configured_path}"
        )
    init_args = configured.get("init_args") if configured is not None else None
    init_args = init_args.clone() if init_args is not None else Namespace()
    frontend_defaults = _defaults(cls)
    for key, value in stored.items():
        init_args[key] = use(
            f"data.frontend.init_args.{key}",
            init_args.get(key),
            frontend_defaults.get(key),
            value,
            training_only=key in cls.training_only,
        )
    config["data.frontend"] = Namespace(class_path=class_path, init_args=init_args)

    config["model.encoder"] = _hold_encoder(configured_model.get("encoder"), hparams["encoder"], path, use)

    model_defaults = _defaults(CTCModule)
    for key, value in hparams.items():
        if key in ("tokenizer", "frontend", "decoding", "encoder") or key not in model_defaults:
            continue
        configured = configured_model.get(key)
        if key in CTCModule.optimizer_settings:
            if training and plain(configured) not in (plain(value), plain(model_defaults[key])):
                warnings.append(
                    f"model.{key}: the config's {configured!r} is ignored; the run continues the "
                    f"checkpoint's optimizer and schedule ({value!r})"
                )
            config[f"model.{key}"] = value
            continue
        config[f"model.{key}"] = use(f"model.{key}", configured, model_defaults[key], value)
    return warnings


def _hold_encoder(configured: Any, stored: dict[str, Any], path: str, use: Callable[..., Any]) -> Namespace:
    """The checkpoint's encoder as config; a configured class or setting that differs is a ``Disagreement``."""
    cls = encoder_class(stored["class_path"])
    configured_path = configured.get("class_path") if isinstance(configured, Namespace) else None
    if configured_path is not None and encoder_class(configured_path) is not cls:
        raise Disagreement(
            f"{path}: the checkpoint's encoder is {stored['class_path']} but model.encoder is {configured_path}; "
            "remove the setting or pass the matching checkpoint"
        )
    given = configured.get("init_args") if configured_path is not None else None
    defaults = encoder_settings(cls)
    init_args = Namespace()
    for key, value in stored["init_args"].items():
        init_args[key] = use(
            f"model.encoder.init_args.{key}",
            given.get(key, defaults.get(key)) if given is not None else defaults.get(key),  # not set: the default
            defaults.get(key),
            value,
            training_only=key in cls.training_only,
        )
    return Namespace(class_path=stored["class_path"], init_args=init_args)


def default_loggers(root: str | os.PathLike | None) -> list[Logger]:
    """TensorBoard event files and a ``metrics.csv`` in the same ``lightning_logs/version_N`` folder
    (checkpoints go beside them): ``tensorboard --logdir ROOT`` shows the curves, scripts read the CSV."""
    root = str(root or os.getcwd())
    tensorboard = TensorBoardLogger(root, name="lightning_logs")
    # CSV first: it creates the folder (it warns about a folder that exists), TensorBoard writes beside it.
    return [CSVLogger(root, name="lightning_logs", version=tensorboard.version), tensorboard]


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


def main() -> int:
    """Entry point of ``recognizer``; after SIGINT/SIGTERM, exits with 128 + the signal's number."""
    callback = run_cli().last_checkpoint()
    if callback is not None and callback.interrupted is not None:
        resume = (
            f"resume with --ckpt_path {callback.last_path}"
            if callback.last_path
            else "stopped before any training step; nothing to resume"
        )
        print(f"recognizer: stopped by {callback.interrupted.name}; {resume}", file=sys.stderr)
        return 128 + int(callback.interrupted)
    return 0


if __name__ == "__main__":
    main()
