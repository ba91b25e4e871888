"""A callback the fault tests inject into a real ``recognizer fit`` process (on PYTHONPATH)."""

import os

from pytorch_lightning.callbacks import Callback


class SignalAtStep(Callback):
    """Sends ``signum`` to this process right after optimizer step ``step`` (9: SIGKILL, 2: SIGINT)."""

    def __init__(self, step: int, signum: int = 9) -> None:
        self.step = step
        self.signum = signum

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.signum)


class SignalInValidation(Callback):
    """Sends ``signum`` to this process during the validation that follows training epoch ``epoch``."""

    def __init__(self, epoch: int, signum: int = 15) -> None:
        self.epoch = epoch
        self.signum = signum

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if not trainer.sanity_checking and trainer.current_epoch == self.epoch:
            os.kill(os.getpid(), self.signum)
