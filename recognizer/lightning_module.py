"""The LightningModule: CTC training, validation and prediction, shared by every modality.

It owns the encoder, the tokenizer and the front-end settings; all three are rebuilt from the
checkpoint alone (``CTCModule.from_checkpoint``).
"""

from __future__ import annotations

import functools
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.callbacks import Timer
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn
from pytorch_lightning.utilities.types import OptimizerLRSchedulerConfig
from torchmetrics import Metric
from torchmetrics.text import CharErrorRate, WordErrorRate

from .checkpoint import upgrade
from .ctc import BLANK
from .data import Batch
from .decoding import DecodingOptions, decode
from .encoders import Encoder, EncoderFactory
from .initialization import initialize_from
from .model import build_parts, load_module
from .schedule import BudgetPlan, warmup_cosine

log = logging.getLogger(__name__)

#: where a checkpoint keeps a time-budgeted run's plan (``recognizer.schedule.BudgetPlan``)
BUDGET_PLAN_KEY = "budget_plan"


class CTCModule(pl.LightningModule):
    """A CTC recognizer: a front-end's features -> an encoder -> CTC, for any modality and encoder.

    Args:
        tokenizer: tokenizer settings (linked from the DataModule by the CLI).
        frontend: front-end settings, including the modality (linked from the DataModule).
        encoder: the encoder, as in a config (``class_path`` + ``init_args``; see ``recognizer.encoders``),
            or the class (or a ``functools.partial`` of it) still missing ``input_dim`` and ``vocab_size``,
            which come from the front-end and the tokenizer. Default: ``BLSTMEncoder`` with its defaults.
        lr: peak AdamW learning rate, reached after ``warmup_steps``.
        weight_decay: AdamW weight decay.
        warmup_steps: linear warmup from 0.
        min_lr_ratio: the cosine decay ends at ``lr * min_lr_ratio`` with the last training step; under a
            time budget (``max_time``), with the last step of the epochs planned to fit in it
            (``recognizer.schedule``).
        decoding: how validation, test and prediction decode: ``{"decoder": name, **its options}``
            (``recognizer.decoding.DecodingOptions.to_dict``, as checkpoints store it): greedy by
            default; ``beam``, or ``lm`` with an LM file and/or a lexicon, or any registered decoder.
            A ``DecodingOptions`` is accepted too.
        init_from: a trained model (checkpoint or model file) whose encoder weights this one starts
            from: fine-tuning, or training on one corpus after another (``recognizer.initialization``:
            output rows matched label by label, feature statistics from this run's data). Not stored
            in the checkpoint, which holds the weights themselves.
    """

    encoder: Encoder
    #: optimizer and schedule settings: a resumed run continues the checkpoint's optimizer state
    optimizer_settings = ("lr", "weight_decay", "warmup_steps", "min_lr_ratio")

    def __init__(
        self,
        tokenizer: dict[str, Any],
        frontend: dict[str, Any],
        encoder: EncoderFactory | None = None,
        lr: float = 1e-3,
        weight_decay: float = 1e-2,
        warmup_steps: int = 300,
        min_lr_ratio: float = 0.02,
        decoding: dict[str, Any] | None = None,
        init_from: str | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["init_from"])
        # A dict as configs and checkpoints (old ones too) give it; a DecodingOptions is accepted as well.
        self.decoding = DecodingOptions.from_config(decoding)
        self.hparams["decoding"] = self.decoding.to_dict()  # plain values: checkpoints load with weights_only
        # the same parts as recognizer.Model, so a checkpoint and a model file give one model
        self.tokenizer, self.frontend, self.encoder, encoder_settings = build_parts(tokenizer, frontend, encoder)
        self.hparams["encoder"] = encoder_settings  # plain values, every setting spelled out
        if init_from is not None:
            rank_zero_info(initialize_from(init_from, self.encoder, self.tokenizer, self.frontend, encoder_settings))
        self.metrics = torch.nn.ModuleDict(
            {
                f"{stage}_{name}": metric()
                for stage in ("val", "test")
                for name, metric in (("cer", CharErrorRate), ("wer", WordErrorRate))
            }
        )
        self._warned_infeasible: set[str] = set()
        self._last_batch_end: float | None = None
        self._plan: BudgetPlan | None = None  # a time-budgeted run's plan (recognizer.schedule)
        self._clock: Callable[[], float] | None = None
        self._restored_plan: dict[str, Any] | None = None

    # ----------------------------------------------------------------------------------- inference
    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features (batch, T, F) and lengths -> log-probabilities (batch, T', vocab) and lengths."""
        return self.encoder(features, lengths)

    def transcripts(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[str]:
        """Best transcripts of a batch of log-probabilities, with the configured decoder."""
        # Built per batch: cheap, since an LM's files are loaded once and cached.
        hypotheses = decode(log_probs, lengths, self.decoding, self.tokenizer.alphabet)
        return [self.tokenizer.decode(nbest[0].labels) for nbest in hypotheses]

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, map_location: str | torch.device = "cpu") -> CTCModule:
        """Rebuild a trained module from a checkpoint file alone, without unpickling arbitrary code."""
        return load_module(cls, path, map_location)

    @classmethod
    def load_from_checkpoint(  # type: ignore[override]  # Lightning's is a restricted classmethod with more options
        cls, checkpoint_path: str | os.PathLike, map_location: str | torch.device | None = None, **ignored: Any
    ) -> CTCModule:
        """Lightning's usual entry point, through ``from_checkpoint``: earlier checkpoint formats load too
        (Lightning would drop their settings before upgrading them). Overriding settings is not offered:
        the checkpoint is the truth."""
        if ignored:
            raise ValueError(
                f"load_from_checkpoint takes no settings ({', '.join(ignored)}): the checkpoint's are used"
            )
        return cls.from_checkpoint(checkpoint_path, map_location or "cpu")

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Lightning's own loading (--ckpt_path) reads earlier formats too; it calls this before the weights load.
        upgrade(checkpoint)
        # Before configure_optimizers, which builds the schedule from it.
        self._restored_plan = checkpoint.get(BUDGET_PLAN_KEY)

    # ------------------------------------------------------------------------------------ training
    def on_fit_start(self) -> None:
        if not bool(self.encoder.normalizer.initialized):
            statistics = getattr(getattr(self.trainer, "datamodule", None), "feature_statistics", None)
            if statistics is None:
                raise ValueError("training needs a DataModule with feature_statistics() (recognizer.data.DataModule)")
            mean, std = statistics()
            self.encoder.normalizer.set_statistics(mean.to(self.device), std.to(self.device))
        if self.device.type == "cpu" and str(self.trainer.precision).startswith("bf16"):
            report_cpu_bfloat16()

    def _feasible(self, batch: Batch, out_lengths: torch.Tensor) -> torch.Tensor:
        """Mask of utterances with enough output frames for their transcript; warns once per utterance."""
        feasible = out_lengths.cpu() >= batch.min_frames
        for index in (~feasible).nonzero().flatten().tolist():
            utterance = batch.entries[index].get("source", batch.ids[index])
            if utterance not in self._warned_infeasible:
                self._warned_infeasible.add(utterance)
                log.warning(
                    "%s: skipped, %d output frames are too few for a %d-label transcript (needs %d); "
                    "the input is too short or the encoder's stride too large",
                    utterance,
                    int(out_lengths[index]),
                    int(batch.target_lengths[index]),
                    int(batch.min_frames[index]),
                )
        return feasible

    def _ctc_loss(
        self,
        batch: Batch,
        log_probs: torch.Tensor,
        out_lengths: torch.Tensor,
        stage: str,
        auxiliary: Sequence[torch.Tensor] = (),
    ) -> torch.Tensor:
        """Mean per-utterance CTC loss in float32 over the feasible utterances of the batch; with the
        encoder's ``auxiliary`` log-probabilities, ``(1 - w) * loss + w * their mean loss``."""
        feasible = self._feasible(batch, out_lengths)
        skipped = int((~feasible).sum())
        self.log(f"{stage}_skipped", float(skipped), reduce_fx="sum", on_step=False, on_epoch=True, batch_size=1)
        if not feasible.any():
            # Keep the graph connected so every DDP rank still takes part in the gradient all-reduce.
            return sum((a.sum() for a in auxiliary), log_probs.sum()) * 0.0
        targets = torch.split(batch.targets, batch.target_lengths.tolist())
        kept = feasible.nonzero().flatten().tolist()
        kept_targets = torch.cat([targets[i] for i in kept]).to(self.device)
        kept_lengths = batch.target_lengths[kept].to(self.device)

        def ctc(log_probs: torch.Tensor) -> torch.Tensor:
            # float32 outside autocast: CTC's sums of exponentials underflow in half precision
            with torch.autocast(device_type=self.device.type, enabled=False):
                loss = F.ctc_loss(
                    log_probs[kept].float().transpose(0, 1),
                    kept_targets,
                    out_lengths[kept],
                    kept_lengths,
                    blank=BLANK,
                    reduction="sum",
                    zero_infinity=True,
                )
            return loss / len(kept)

        loss = ctc(log_probs)
        if not auxiliary:
            return loss
        intermediate = torch.stack([ctc(a) for a in auxiliary]).mean()
        self.log(f"{stage}_intermediate_loss", intermediate, batch_size=len(kept))
        weight = self.encoder.auxiliary_weight
        return (1 - weight) * loss + weight * intermediate

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        log_probs, out_lengths, auxiliary = self.encoder.forward_auxiliary(batch.features, batch.lengths)
        loss = self._ctc_loss(batch, log_probs, out_lengths, "train", auxiliary)
        self.log("train_loss", loss, prog_bar=True, batch_size=len(batch))
        return loss

    def on_train_batch_end(self, outputs: Any, batch: Batch, batch_idx: int) -> None:
        now = time.perf_counter()
        if self._last_batch_end is not None:
            self.log("utt_per_s", len(batch) / (now - self._last_batch_end), prog_bar=True, batch_size=1)
        self._last_batch_end = now

    def on_train_epoch_start(self) -> None:
        self._last_batch_end = None

    def _evaluate(self, batch: Batch, stage: str) -> None:
        log_probs, out_lengths = self(batch.features, batch.lengths)
        size = len(batch)
        loss = self._ctc_loss(batch, log_probs, out_lengths, stage)
        self.log(f"{stage}_loss", loss, prog_bar=stage == "val", batch_size=size, sync_dist=True)
        hypotheses = self.transcripts(log_probs, out_lengths)
        references = [self.tokenizer.normalize(entry["text"]) for entry in batch.entries]
        for name in ("cer", "wer"):
            metric = self.metrics[f"{stage}_{name}"]
            assert isinstance(metric, Metric)
            metric.update(hypotheses, references)
            self.log(f"{stage}_{name}", metric, prog_bar=name == "cer", on_step=False, on_epoch=True, batch_size=size)

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def predict_step(self, batch: Batch, batch_idx: int) -> list[dict[str, Any]]:
        log_probs, out_lengths = self(batch.features, batch.lengths)
        key = self.frontend.path_key
        return [
            {"id": entry["id"], key: entry[key], "text": text}
            for entry, text in zip(batch.entries, self.transcripts(log_probs, out_lengths))
        ]

    def configure_optimizers(self) -> OptimizerLRSchedulerConfig:
        hp = self.hparams
        optimizer = torch.optim.AdamW(self.parameters(), lr=hp["lr"], weight_decay=hp["weight_decay"])
        total = self.trainer.estimated_stepping_batches if self._trainer is not None else math.inf
        self._plan, self._clock = self._budget_plan(total)
        plan, clock = self._plan, self._clock
        if plan is None or clock is None:
            schedule = warmup_cosine(hp["warmup_steps"], total, hp["min_lr_ratio"])
        else:
            schedule = warmup_cosine(
                hp["warmup_steps"], lambda: plan.total_steps, hp["min_lr_ratio"], lambda: plan.floor(clock())
            )
        # A plain function, not a callable object: LambdaLR would save an object's state (here the
        # trainer's Timer) into every checkpoint.
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def _budget_plan(self, total_steps: float) -> tuple[BudgetPlan | None, Callable[[], float] | None]:
        """Under a time budget (``max_time``, kept by Lightning's ``Timer``): the plan of the epochs that
        fit (restored from a checkpoint when resuming), and a clock of the training time spent, which the
        Timer restores on resume; (None, None) without a budget."""
        if self._trainer is None:
            return None, None
        callbacks = getattr(self.trainer, "callbacks", [])  # set by Lightning at run time, not declared
        timers = [c for c in callbacks if isinstance(c, Timer) and c._duration]
        if not timers:
            return None, None
        timer = min(timers, key=lambda t: t._duration or math.inf)
        strategy = self.trainer.strategy

        def elapsed() -> float:
            # Rank 0's clock for every process: replicas with different learning rates would drift apart
            # (on one process the broadcast returns the value as it is).
            return float(strategy.broadcast(timer.time_elapsed("train")))

        every = self.trainer.check_val_every_n_epoch or 1
        max_epochs = self.trainer.max_epochs if self.trainer.max_epochs is not None else -1
        plan = BudgetPlan(float(timer._duration or 0.0), every, max_epochs, total_steps)
        if self._restored_plan is not None:
            plan.load_state_dict(self._restored_plan)
            self._restored_plan = None  # this run's; a later fit of the same module starts afresh
        return plan, elapsed

    @property
    def budget_plan(self) -> BudgetPlan | None:
        """The epochs a run under a time budget trains (``recognizer.schedule``); None without one."""
        return self._plan

    def on_train_start(self) -> None:
        if self._plan is not None and self._plan.epochs is not None:  # a resumed run keeps its plan
            self.trainer.fit_loop.max_epochs = self._plan.epochs

    def on_train_epoch_end(self) -> None:
        if self._plan is None or self._clock is None:
            return
        elapsed = self._clock()  # on every rank: the broadcast is collective
        if self.trainer.should_stop:
            return  # cut short (max_time, a signal): not an epoch to measure
        done = self.trainer.current_epoch + 1  # counted as completed only after this hook
        message = self._plan.update(done, elapsed, self.trainer.global_step)
        if message is not None:
            rank_zero_info(message)
            self.trainer.fit_loop.max_epochs = self._plan.epochs

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self._plan is not None:
            checkpoint[BUDGET_PLAN_KEY] = self._plan.state_dict()


def cpu_has_native_bfloat16() -> bool:
    """Whether this CPU computes bfloat16 matrix products in hardware (AVX512-BF16 or AMX)."""
    cpu = torch.cpu
    return any(getattr(cpu, name, lambda: False)() for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))


@functools.lru_cache(maxsize=1)
def cpu_runs_bfloat16_lstm() -> bool:
    """Whether an LSTM runs under CPU bfloat16 autocast here at all: oneDNN emulates bfloat16 on AVX-512
    without BF16, and has no bfloat16 LSTM below AVX-512 (AVX2 laptops): there it fails to build."""
    lstm = torch.nn.LSTM(2, 2)
    try:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            lstm(torch.zeros(1, 1, 2))
    except RuntimeError:
        return False
    return True


def training_precision(precision: Any, accelerator: Any) -> Any:
    """The precision to train in: bf16 asked on a CPU without native bfloat16 becomes ``32-true``, with a
    warning, because there it is emulated (slower than float32) or, below AVX-512, cannot run the LSTM at
    all; anything else as asked. ``accelerator`` is the Trainer's (``auto`` means CPU without a GPU)."""
    if not str(precision).startswith("bf16") or not _trains_on_cpu(accelerator) or cpu_has_native_bfloat16():
        return precision
    rank_zero_warn(
        f"precision {precision}: this CPU has no native bfloat16 (AVX512-BF16 or AMX), so bfloat16 is "
        f"{'emulated, slower than float32' if cpu_runs_bfloat16_lstm() else 'not available to the LSTM'}: "
        "training in float32 (32-true) instead"
    )
    return "32-true"


def _trains_on_cpu(accelerator: Any) -> bool:
    if accelerator in (None, "auto"):
        return not (torch.cuda.is_available() or torch.backends.mps.is_available())
    return str(accelerator) == "cpu"


def report_cpu_bfloat16() -> None:
    """Say whether bf16 training on this CPU is native (faster than float32) or emulated (slower); a
    one-line error where it cannot run (a Trainer built by hand: the CLI falls back to float32 first)."""
    # Lightning's loggers, so the line shows beside its "GPU available" report
    if cpu_has_native_bfloat16():
        rank_zero_info(
            "bf16 on CPU: this CPU has native bfloat16 (AVX512-BF16/AMX); layers run in bfloat16, CTC in float32"
        )
    elif cpu_runs_bfloat16_lstm():
        rank_zero_warn(
            "bf16 on CPU: this CPU has no native bfloat16 (AVX512-BF16 or AMX), so it is emulated and slower than "
            "float32; use --trainer.precision 32-true"
        )
    else:
        raise RuntimeError(
            "bf16 on CPU: this CPU has no bfloat16 LSTM (it needs AVX-512; AVX512-BF16 or AMX to be fast): "
            "train with precision 32-true"
        )
