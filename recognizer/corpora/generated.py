"""Machinery shared by the corpora that are generated rather than read (synthetic speech, synthetic ink).

A generated corpus is a folder holding ``<split>.jsonl`` manifests and a ``corpus.json`` that records the
parameters it was made with. ``corpus.json`` is written last and removed first, so its presence with the
same parameters marks a complete corpus that need not be made again. Items are made in chunks by worker
processes; each item draws from its own random stream, so the output does not depend on the worker count.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

SPLITS = ("train", "dev", "test")

Task = TypeVar("Task")
Result = TypeVar("Result")


def check_sizes(num_train: int, num_dev: int, num_test: int, workers: int | None) -> int:
    """ValueError for a negative split size or a worker count below 1; returns the worker count (default: all CPUs)."""
    for name, value in (("num_train", num_train), ("num_dev", num_dev), ("num_test", num_test)):
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
    if workers is None:
        workers = os.cpu_count() or 1
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    return workers


def corpus_parameters(
    generator: str, version: int, num_train: int, num_dev: int, num_test: int, seed: int, **extra: Any
) -> dict[str, Any]:
    """What a generated corpus depends on, as recorded in ``corpus.json`` and compared by ``is_complete``."""
    return {
        "generator": generator,
        "version": version,
        "num_train": num_train,
        "num_dev": num_dev,
        "num_test": num_test,
        "seed": seed,
        **extra,
    }


def item_id(split: str, index: int) -> str:
    """``train-000042``: the id and file stem of item ``index`` of ``split``."""
    return f"{split}-{index:06d}"


def is_complete(out: Path, parameters: dict[str, Any], splits: Sequence[str] = SPLITS) -> bool:
    """Whether ``out/corpus.json`` records exactly ``parameters`` and every split's manifest exists."""
    try:
        recorded = json.loads((out / "corpus.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(recorded, dict) or recorded.get("parameters") != parameters:
        return False
    return all((out / f"{split}.jsonl").is_file() for split in splits)


def write_record(out: Path, record: dict[str, Any]) -> None:
    """Write ``out/corpus.json``; call it last, once everything else is in place."""
    (out / "corpus.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def pool_context(preload: str) -> multiprocessing.context.BaseContext:
    """The multiprocessing context for generator workers; ``preload`` is the generator's module name."""
    # A fork server is a clean single-threaded parent, so forking a fresh worker per chunk is cheap and
    # safe even when the caller has threads (a training loop, torch's pools); spawn where it is missing.
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        # Workers then fork with the generator module (and its heavy parent package) already imported
        # instead of importing it per chunk. "__main__" keeps the default list a subset; the setting only
        # counts if no fork server is running yet.
        context.set_forkserver_preload(["__main__", preload])
        return context
    return multiprocessing.get_context("spawn")


def run_chunks(
    function: Callable[[Task], Result],
    tasks: Sequence[Task],
    workers: int,
    preload: str,
    fresh_process: bool = False,
) -> list[Result]:
    """``[function(task) for task in tasks]``, shared out over ``workers`` processes, results in task order.

    ``fresh_process`` runs every task in a process of its own, for generators whose library keeps state
    between items; otherwise a single worker runs the tasks in this process, sparing the process start.
    """
    if not tasks:
        return []
    if workers == 1 and not fresh_process:
        return [function(task) for task in tasks]
    processes = min(workers, len(tasks))
    with pool_context(preload).Pool(processes, maxtasksperchild=1 if fresh_process else None) as pool:
        return list(pool.imap(function, tasks, chunksize=1))


def make_splits(
    out: Path,
    folder: str,
    counts: dict[str, int],
    seed: int,
    make_chunk: Callable[[tuple[str, str, int, int, int, int]], list[Result]],
    workers: int,
    preload: str,
    chunk_size: int,
    fresh_process: bool = False,
) -> dict[str, list[Result]]:
    """Make every split's items into ``out/<folder>/<split>/``; returns each split's results, sorted.

    ``make_chunk`` takes ``(directory, split, split_index, start, stop, seed)`` and returns one result
    per item (starting with the item's index, so sorting restores the order). Any previous corpus in
    ``out`` is removed first, so that an interrupted run is never taken for a complete corpus.
    """
    out.mkdir(parents=True, exist_ok=True)
    (out / "corpus.json").unlink(missing_ok=True)
    shutil.rmtree(out / folder, ignore_errors=True)
    tasks = []
    for split_index, (split, count) in enumerate(counts.items()):
        directory = out / folder / split
        directory.mkdir(parents=True, exist_ok=True)
        for start in range(0, count, chunk_size):
            tasks.append((str(directory), split, split_index, start, min(start + chunk_size, count), seed))
    results: dict[str, list[Result]] = {split: [] for split in counts}
    for task, chunk in zip(tasks, run_chunks(make_chunk, tasks, workers, preload, fresh_process)):
        results[task[1]].extend(chunk)
    return {split: sorted(items) for split, items in results.items()}
