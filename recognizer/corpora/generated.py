"""The one routine that makes the corpora that are generated rather than read (synthetic speech, ink).

A generated corpus is a folder holding ``<split>.jsonl`` manifests and a ``corpus.json`` that records the
parameters it was made with. ``corpus.json`` is written last and removed first, so its presence with the
same parameters marks a complete corpus that need not be made again. Items are made in chunks by worker
processes; each item draws from its own random stream, so the output does not depend on the worker count.

A corpus only says how to make one item: it describes itself as a :class:`CorpusGenerator` whose
``make_item`` writes one item's file and returns its manifest entry, and :func:`generate` does the rest
(sizes, reuse of a complete corpus, workers, manifests, ``corpus.json``).
"""

from __future__ import annotations

import functools
import json
import multiprocessing
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from recognizer.manifest import write_manifest

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
    make_chunk: Callable[[tuple[str, str, int, int, int, int]], list[tuple[int, Result]]],
    workers: int,
    preload: str,
    chunk_size: int,
    fresh_process: bool = False,
) -> dict[str, list[Result]]:
    """Make every split's items into ``out/<folder>/<split>/``; returns each split's results in item order.

    ``make_chunk`` takes ``(directory, split, split_index, start, stop, seed)`` and returns
    ``(index, result)`` per item. Any previous corpus in ``out`` is removed first, so that an interrupted
    run is never taken for a complete corpus.
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
    results: dict[str, list[tuple[int, Result]]] = {split: [] for split in counts}
    for task, chunk in zip(tasks, run_chunks(make_chunk, tasks, workers, preload, fresh_process)):
        results[task[1]].extend(chunk)
    return {
        split: [result for _, result in sorted(items, key=lambda item: item[0])] for split, items in results.items()
    }


@dataclass(frozen=True)
class Item:
    """One generated item: its manifest entry and how long it lasts (speech, or the writing of a line)."""

    entry: dict[str, Any]
    seconds: float


#: ``make_item(directory, item_id, rng)``: write the item ``item_id`` into ``directory``, drawing everything
#: from ``rng`` (its own stream), and return it
MakeItem = Callable[[Path, str, np.random.Generator], Item]


@dataclass(frozen=True)
class CorpusGenerator:
    """What makes one generated corpus different from another; :func:`generate` does the rest.

    Args:
        name: for progress lines, e.g. ``"synthetic-speech"``.
        module: the generator's module: recorded in ``corpus.json``, imported ahead by the worker processes.
        version: bump whenever the output for given parameters changes, so that older corpora are remade.
        folder: item files go to ``out/<folder>/<split>/``.
        make_item: makes one item (see :data:`MakeItem`); a module-level function, since it is sent to
            worker processes.
        summary: a split's items -> what its progress line says about them, e.g. ``"200 lines, ..."``.
        setup: checks, in this process, what every item needs (a library, fonts), so that a broken install
            fails with one clear error rather than one per worker; returns what ``corpus.json`` records
            about it (versions, voices, fonts).
        chunk_size: items per task given to a worker.
        fresh_process: run every chunk in a process of its own, for generators whose library keeps state
            between items (see :func:`run_chunks`).
        parameters: further parameters the corpus depends on, recorded in ``corpus.json`` (e.g. its rate).
    """

    name: str
    module: str
    version: int
    folder: str
    make_item: MakeItem
    summary: Callable[[list[Item]], str]
    setup: Callable[[], dict[str, Any]]
    chunk_size: int
    fresh_process: bool = False
    parameters: Mapping[str, Any] = field(default_factory=dict)


def _make_chunk(make_item: MakeItem, task: tuple[str, str, int, int, int, int]) -> list[tuple[int, Item]]:
    """Make items ``start:stop`` of one split; each draws from its own stream, seeded by (seed, split, index)."""
    directory, split, split_index, start, stop, seed = task
    return [
        (index, make_item(Path(directory), item_id(split, index), np.random.default_rng([seed, split_index, index])))
        for index in range(start, stop)
    ]


def generate(
    generator: CorpusGenerator,
    out: str | Path,
    num_train: int,
    num_dev: int,
    num_test: int,
    seed: int,
    workers: int | None = None,
) -> dict[str, Path]:
    """Make ``generator``'s corpus in ``out`` (unless it is already there); returns split -> manifest.

    Writes the items under ``out/<folder>/<split>/``, the manifests ``out/train.jsonl``, ``dev.jsonl``
    and ``test.jsonl`` (the entries ``make_item`` returned, in item order), then ``out/corpus.json``. If
    ``corpus.json`` shows a complete corpus made with the same parameters (sizes, seed, generator and its
    version), nothing is remade. The output depends on the parameters only; ``workers`` (default: all
    CPUs) just sets how many processes share the work.
    """
    workers = check_sizes(num_train, num_dev, num_test, workers)
    out = Path(out).expanduser().resolve()
    manifests = {split: out / f"{split}.jsonl" for split in SPLITS}
    parameters = corpus_parameters(
        generator.module, generator.version, num_train, num_dev, num_test, seed, **generator.parameters
    )
    if is_complete(out, parameters):
        return manifests

    record = generator.setup()
    counts = dict(zip(SPLITS, (num_train, num_dev, num_test)))
    results = make_splits(
        out,
        generator.folder,
        counts,
        seed,
        functools.partial(_make_chunk, generator.make_item),
        workers,
        generator.module,
        generator.chunk_size,
        generator.fresh_process,
    )
    for split in SPLITS:
        write_manifest(manifests[split], [item.entry for item in results[split]])
        print(f"{generator.name} {split}: {generator.summary(results[split])} -> {manifests[split]}")
    write_record(out, {"parameters": parameters, **record})
    return manifests
