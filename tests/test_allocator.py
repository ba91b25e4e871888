"""The C allocator during training: large blocks reused instead of mapped and zeroed again every step."""

import json
import os
import subprocess
import sys

import pytest

from recognizer import allocator

GLIBC = bool(os.confstr("CS_GNU_LIBC_VERSION")) if "CS_GNU_LIBC_VERSION" in os.confstr_names else False
BLOCK = 64 * 2**20  # bytes: above glibc's largest mmap threshold (32 MiB), like the LSTM's workspaces

# A training step's pattern, a 64 MiB block allocated, written and freed, 16 times: the page faults it
# takes under the callback (fit started), and after it (fit ended); and the resident memory that
# release_freed_memory gives back. In a fresh process: the setting is the whole process's.
SCRIPT = """
import json, resource, torch
from recognizer.allocator import KeepFreedMemory, release_freed_memory
torch.set_num_threads(1)

def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

def rounds():
    for _ in range(16):
        block = torch.empty(BLOCK_BYTES // 4)
        block.fill_(1.0)
        del block

def resident():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()

callback = KeepFreedMemory()
callback.on_fit_start(None, None)
rounds()  # the first round faults the block in: counted from the next on
before = faults(); rounds(); kept = faults() - before
held = resident()
callback.on_train_epoch_end(None, None)
given_back = held - resident()
callback.on_fit_end(None, None)
before = faults(); rounds(); default = faults() - before
print(json.dumps({"kept": kept, "default": default, "given_back": given_back}))
""".replace("BLOCK_BYTES", str(BLOCK))


@pytest.mark.skipif(not GLIBC, reason="the setting is glibc's (CI runs on glibc)")
def test_kept_blocks_are_reused_given_back_and_defaults_restored() -> None:
    run = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    pages, huge_pages = BLOCK // 4096, BLOCK // 2**21
    # kept: no fault per round (the block is reused); glibc's defaults: the block mapped anew every round,
    # a fault per page (or per huge page, where transparent huge pages are always on)
    assert result["kept"] < pages // 8
    assert result["default"] >= 16 * huge_pages
    assert result["default"] > 4 * result["kept"]
    # after an epoch the freed block (64 MiB) goes back to the OS
    assert result["given_back"] >= BLOCK // 2


def test_without_glibc_nothing_is_applied(monkeypatch) -> None:
    monkeypatch.setattr(allocator, "_glibc", lambda: None)
    assert allocator.keep_freed_memory() is False
    assert allocator.release_freed_memory() is False
    allocator.KeepFreedMemory().on_fit_start(None, None)  # says so in the log, does not fail
