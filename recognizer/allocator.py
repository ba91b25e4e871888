"""The C allocator during training: the memory a step frees kept for the next step, not handed back.

On CPU, ``torch.nn.LSTM`` runs oneDNN's kernels, which allocate workspaces of tens of megabytes in every
training step. glibc serves blocks above its mmap threshold with ``mmap`` and unmaps them when freed, so
every step the kernel maps and zeroes the same memory again: on the IAM-OnDB recipe, 9.3 million page
faults and 12 % of the CPU time in the kernel over 60 batches (benchmarks/RESULTS.md, "The C allocator
during training"). Raising the threshold does not help: glibc caps it at 32 MiB, below those workspaces.
So ``keep_freed_memory`` turns ``mmap`` off: blocks come from the heap and freed ones are reused.

The price is memory: a heap only shrinks from its top, so freed blocks below live ones stay resident
and the process grows towards the largest it has needed. ``KeepFreedMemory``, a training callback
(``trainer.callbacks`` in a config), applies the setting for ``fit`` and gives the free pages back
(``malloc_trim``) after every training epoch and validation, and restores glibc's defaults at the end.
"""

from __future__ import annotations

import ctypes
import logging
import os
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback

log = logging.getLogger(__name__)

#: glibc's ``mallopt`` parameters (malloc.h) and their defaults
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
DEFAULT_TRIM_THRESHOLD = 128 * 1024
DEFAULT_MMAP_MAX = 65536
#: free memory at the top of the heap above which glibc gives it back: the largest ``int`` (2 GiB)
KEPT_TRIM_THRESHOLD = 2**31 - 1


def _glibc() -> Any | None:
    """The process's C library when it is glibc (``mallopt``, ``malloc_trim``), else None."""
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):
            return None
        libc = ctypes.CDLL(None)  # the C library this process already runs on
        for name in ("mallopt", "malloc_trim"):
            getattr(libc, name).argtypes = [ctypes.c_int] * (2 if name == "mallopt" else 1)
            getattr(libc, name).restype = ctypes.c_int
    except (ValueError, OSError, AttributeError):  # not glibc: musl, macOS, Windows
        return None
    return libc


def keep_freed_memory(keep: bool = True) -> bool:
    """With glibc: no ``mmap`` for large blocks and freed memory kept (for the whole process), or, with
    ``keep=False``, glibc's defaults again. Returns whether it applied (False with another C library)."""
    libc = _glibc()
    if libc is None:
        return False
    mmap_max, trim = (0, KEPT_TRIM_THRESHOLD) if keep else (DEFAULT_MMAP_MAX, DEFAULT_TRIM_THRESHOLD)
    # mallopt returns 1 on success. Without mmap, a heap that cannot grow (brk fails) still falls back to it.
    return bool(libc.mallopt(M_MMAP_MAX, mmap_max)) and bool(libc.mallopt(M_TRIM_THRESHOLD, trim))


def release_freed_memory() -> bool:
    """With glibc: give every wholly free page of the heap back to the OS (``malloc_trim(0)``). Returns
    whether any was given back."""
    libc = _glibc()
    return bool(libc.malloc_trim(0)) if libc is not None else False


class KeepFreedMemory(Callback):
    """During ``fit``, the memory a step frees is kept for the next (``keep_freed_memory``); free pages
    go back to the OS after every training epoch and validation. Does nothing but say so without glibc.

    In a config::

        trainer:
          callbacks:
            - class_path: recognizer.allocator.KeepFreedMemory
    """

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not keep_freed_memory():
            log.info("KeepFreedMemory: the C library is not glibc; its allocator is left as it is")

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        release_freed_memory()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        release_freed_memory()

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.teardown_allocator()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self.teardown_allocator()

    @staticmethod
    def teardown_allocator() -> None:
        """glibc's defaults again, and the kept memory given back: the process may go on (a notebook)."""
        keep_freed_memory(False)
        release_freed_memory()
