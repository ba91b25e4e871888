"""Training that never loses work: ``last.ckpt`` kept current and written atomically, a clean stop
on SIGINT/SIGTERM, and the random state needed for an exact resume in the middle of an epoch; and
``AverageCheckpoints``, the run's best checkpoints averaged when ``fit`` ends.

The batch position within the epoch is the DataModule's (``recognizer.data``); the weights, optimizer,
schedule and loop counters are Lightning's; ``LastCheckpoint`` adds the random generators and decides when
to write.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, Checkpoint, ModelCheckpoint
from pytorch_lightning.utilities.exceptions import SIGTERMException

log = logging.getLogger(__name__)

LAST = "last.ckpt"


def random_state() -> dict[str, Any]:
    """The state of every random generator training draws from (torch CPU and CUDA, NumPy, Python)."""
    numpy_state = np.random.get_state(legacy=False)
    numpy_state["state"]["key"] = numpy_state["state"]["key"].tolist()  # plain values: weights_only loading
    state = {"torch": torch.get_rng_state(), "numpy": numpy_state, "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_random_state(state: dict[str, Any]) -> None:
    """Restore what ``random_state`` returned."""
    torch.set_rng_state(state["torch"])
    numpy_state = dict(state["numpy"])
    numpy_state["state"] = {**numpy_state["state"], "key": np.asarray(numpy_state["state"]["key"], dtype=np.uint32)}
    np.random.set_state(numpy_state)
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_atomically(trainer: pl.Trainer, path: Path) -> None:
    """``trainer.save_checkpoint`` to a temporary file, then rename: a kill during the write leaves the
    previous file intact. Every rank must call it (the checkpoint is gathered collectively)."""
    temporary = path.with_name(f".{path.name}.partial")
    trainer.save_checkpoint(temporary, weights_only=False)  # the whole state: it is for resuming
    if trainer.is_global_zero:
        os.replace(temporary, path)
    trainer.strategy.barrier("last_checkpoint")


def _any_rank(trainer: pl.Trainer, decision: bool) -> bool:
    """True on every rank if it is True on any (a no-op without DDP)."""
    if trainer.world_size == 1:
        return decision
    return trainer.strategy.reduce_boolean_decision(decision, all=False)


class LastCheckpoint(Checkpoint):
    """Keeps ``<checkpoint dir>/last.ckpt`` current, so a run can always be resumed.

    Written at every completed training epoch's end (after validation), every ``every_n_train_steps``
    steps and every ``every_n_minutes`` minutes (0 disables either), after the batch at which the run
    stops early (``max_time``, early stopping), when fit ends, and after the current batch when the
    process receives SIGINT (Ctrl-C) or SIGTERM: then training stops cleanly and ``interrupted``
    holds the signal. A second Ctrl-C stops at once.
    Resuming with ``--ckpt_path last.ckpt`` continues with exactly the batches not yet trained on.

    It is a ``Checkpoint`` so that Lightning runs it after ``ModelCheckpoint``: the epoch's top-k
    bookkeeping is in the file. Writes wait for the end of a gradient-accumulation window, and
    under DDP every rank decides together (a write is collective).

    Args:
        every_n_train_steps: also write after every N optimizer steps.
        every_n_minutes: also write when this many minutes have passed since the last write.
        dirpath: where to write; default: the ``ModelCheckpoint``'s folder (beside the top-k files).
    """

    def __init__(self, every_n_train_steps: int = 0, every_n_minutes: float = 5.0, dirpath: str | None = None) -> None:
        if every_n_train_steps < 0 or every_n_minutes < 0:
            raise ValueError("every_n_train_steps and every_n_minutes must be >= 0 (0 disables them)")
        self.every_n_train_steps = every_n_train_steps
        self.every_n_minutes = every_n_minutes
        self.dirpath = dirpath
        self.interrupted: signal.Signals | None = None
        self.last_path: Path | None = None
        self._saved_at = time.monotonic()
        self._saved_step = -1
        self._pending_random_state: dict[str, Any] | None = None
        self._previous_handlers: dict[int, Any] = {}

    # ------------------------------------------------------------------------------ where and when
    def _path(self, trainer: pl.Trainer) -> Path:
        # trainer.checkpoint_callback is the first Checkpoint of any kind (possibly this one)
        top_k = next((c for c in trainer.checkpoint_callbacks if isinstance(c, ModelCheckpoint)), None)
        if self.dirpath:
            folder = Path(self.dirpath)
        elif top_k is not None and top_k.dirpath:
            folder = Path(top_k.dirpath)
        else:
            folder = Path(trainer.log_dir or trainer.default_root_dir) / "checkpoints"
        return folder / LAST

    def save(self, trainer: pl.Trainer, reason: str, force: bool = False) -> None:
        """Write ``last.ckpt`` now (unless it already holds this step, or ``force``)."""
        if trainer.sanity_checking or (trainer.global_step == self._saved_step and not force):
            return
        path = self._path(trainer)
        if trainer.is_global_zero:
            path.parent.mkdir(parents=True, exist_ok=True)
        save_atomically(trainer, path)
        self._saved_at, self._saved_step, self.last_path = time.monotonic(), trainer.global_step, path
        log.debug("wrote %s (%s, step %d)", path, reason, trainer.global_step)

    # ------------------------------------------------------------------------------------- signals
    def _handle(self, signum: int, frame: Any) -> None:
        if self.interrupted is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
        self.interrupted = signal.Signals(signum)
        print(
            f"\n{self.interrupted.name}: saving a resumable checkpoint after this batch (Ctrl-C again to stop at once)",
            flush=True,
        )

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._saved_at = time.monotonic()
        if threading.current_thread() is threading.main_thread():  # signal handlers live in the main thread
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous_handlers[signum] = signal.signal(signum, self._handle)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.interrupted is None:  # after a signal, the file written then is the resumable state
            self.save(trainer, "end of fit")  # only if no file holds this step yet (e.g. max_steps)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        # Lightning stops a SIGTERM'd validation with SIGTERMException before our hooks see it.
        if isinstance(exception, SIGTERMException) and self.interrupted is not None and trainer.global_step > 0:
            self.save(trainer, "SIGTERM")

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)
        self._previous_handlers.clear()

    def _stop_if_interrupted(self, trainer: pl.Trainer) -> bool:
        if not _any_rank(trainer, self.interrupted is not None):
            return False
        self.interrupted = self.interrupted or signal.SIGTERM  # a signal that reached another rank
        self.save(trainer, self.interrupted.name)
        trainer.should_stop = True
        return True

    # ------------------------------------------------------------------------------------ training
    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        # Restored here, not when the checkpoint is read: the sanity check and the data loaders'
        # start must not consume the generators the uninterrupted run had not consumed either.
        if self._pending_random_state is not None:
            set_random_state(self._pending_random_state)
            self._pending_random_state = None

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if trainer.fit_loop._should_accumulate():  # gradients of this window are not in the weights yet
            return
        if self._stop_if_interrupted(trainer):
            return
        steps_due = bool(self.every_n_train_steps) and trainer.global_step % self.every_n_train_steps == 0
        time_due = bool(self.every_n_minutes) and time.monotonic() - self._saved_at >= 60 * self.every_n_minutes
        if steps_due or _any_rank(trainer, time_due):  # each rank has its own clock
            self.save(trainer, "steps" if steps_due else "time")
        elif trainer.should_stop:  # max_time or early stopping ends the run after this batch
            self.save(trainer, "stop")

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._stop_if_interrupted(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # After ModelCheckpoint's top-k save of this epoch. Not when the epoch was cut short (a
        # signal, max_time): Lightning closes it early, and a file claiming it complete would skip
        # its remaining batches; the file written at the stop is the resumable one.
        # Lightning types `current` as the base tracker; the training loop's is a _ProcessedTracker.
        done = trainer.fit_loop.epoch_loop.batch_progress.current.processed  # type: ignore[attr-defined]
        if self.interrupted is None and done >= trainer.num_training_batches:
            self.save(trainer, "epoch end", force=True)

    # ---------------------------------------------------------------------------------- its state
    def state_dict(self) -> dict[str, Any]:
        return {"random_state": random_state()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending_random_state = state_dict.get("random_state")


class AverageCheckpoints(Callback):
    """At the end of ``fit``, averages the ``top_k`` best checkpoints of the run's ``ModelCheckpoint``
    (by its monitored score, validation CER) into ``<checkpoint dir>/averaged.ckpt`` and prints its path.

    The averaged file is for evaluation and transcription, not for resuming (``recognizer.average``).
    Nothing is averaged when the run was stopped by a signal (it is to be resumed), and with
    ``top_k`` 0 (the default). Fewer checkpoints than ``top_k`` (a short run) are averaged all.
    Only rank 0 reads and writes; the others wait for it.

    Args:
        top_k: how many of the best checkpoints to average; 0 turns averaging off.
        filename: the averaged checkpoint's name, in the ``ModelCheckpoint``'s folder.
    """

    def __init__(self, top_k: int = 0, filename: str = "averaged.ckpt") -> None:
        if top_k < 0:
            raise ValueError(f"average.top_k must be >= 0 (0 turns averaging off), got {top_k}")
        self.top_k = top_k
        self.filename = filename
        self.averaged_path: Path | None = None

    def chosen(self, trainer: pl.Trainer) -> tuple[ModelCheckpoint | None, list[str]]:
        """The ``ModelCheckpoint`` and its ``top_k`` best files, best first."""
        top_k = next((c for c in trainer.checkpoint_callbacks if isinstance(c, ModelCheckpoint)), None)
        if top_k is None:
            return None, []
        scores = {path: float(score) for path, score in top_k.best_k_models.items()}
        ranked = sorted(scores, key=lambda path: scores[path], reverse=top_k.mode == "max")
        return top_k, [path for path in ranked if Path(path).is_file()][: self.top_k]

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        stopped = any(isinstance(c, LastCheckpoint) and c.interrupted for c in trainer.checkpoint_callbacks)
        if not self.top_k or stopped:  # a run stopped by a signal is to be resumed, not averaged yet
            return
        try:
            if trainer.is_global_zero:
                self.average(trainer)
        finally:  # the other ranks wait, so none ends the run while the file is being written
            trainer.strategy.barrier("average_checkpoints")

    def average(self, trainer: pl.Trainer) -> None:
        from .average import average_checkpoints, write_checkpoint  # needs the front-ends, not Lightning

        top_k, paths = self.chosen(trainer)
        if top_k is None or not paths:
            log.warning("average.top_k %d: the run has no top-k checkpoints to average", self.top_k)
            return
        folder = Path(top_k.dirpath) if top_k.dirpath else Path(paths[0]).parent
        self.averaged_path = write_checkpoint(average_checkpoints(paths), folder / self.filename)
        scores = ", ".join(f"{float(top_k.best_k_models[path]):.4f}" for path in paths)
        print(f"averaged the {len(paths)} best checkpoints ({top_k.monitor} {scores}) into {self.averaged_path}")
