"""Data pipeline shared by every modality: manifest datasets, length-budget batching, the DataModule.

The front-end (``recognizer.audio.AudioFrontend`` for speech) decides how an input becomes features;
everything here is modality-agnostic.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader, Dataset, Sampler

from .batching import budget_batches
from .ctc import min_ctc_frames
from .frontend import Frontend
from .manifest import read_manifest
from .tokenizer import CASE, REPLACEMENT, UNKNOWN, Case, Tokenizer, Unknown

log = logging.getLogger(__name__)


class LengthBudgetBatchSampler(Sampler[list[int]]):
    """Batches of similar lengths up to a frame budget, reshuffled each epoch, sharded for DDP.

    Each epoch, lengths are perturbed by up to ``jitter`` (relative) before sorting, so batch
    contents vary between epochs while lengths within a batch stay close; the batch order is then
    shuffled. Everything derives from ``(seed, epoch)``, so all DDP ranks agree on the batches and
    each takes every ``num_replicas``-th one. With ``equal_shards`` (training) the list is padded by
    repeating batches so every rank runs the same number of steps; without it (evaluation) ranks
    may get unequal counts and no utterance is counted twice.

    With ``tag_epoch`` each item is yielded as ``(index, epoch)``, so the dataset can seed the item's
    augmentation from it (independent of workers, prefetching and resumption). ``resume(epoch, done)``
    makes that epoch's iteration start after its first ``done`` batches (a resumed run).

    The first ``sorted_epochs`` epochs keep their batches shortest first instead of shuffling them
    (SortaGrad, Amodei et al. 2016, "Deep Speech 2", section 3.1): short utterances have few
    alignments, so CTC leaves its all-blank start sooner on them.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        max_frames: int,
        max_batch_size: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        equal_shards: bool = True,
        jitter: float = 0.1,
        tag_epoch: bool = False,
        sorted_epochs: int = 0,
    ) -> None:
        if sorted_epochs < 0:
            raise ValueError(f"sorted_epochs must be >= 0, got {sorted_epochs}")
        self.lengths = list(lengths)
        self.max_frames = max_frames
        self.max_batch_size = max_batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.num_replicas = num_replicas
        self.rank = rank
        self.equal_shards = equal_shards
        self.jitter = jitter
        self.tag_epoch = tag_epoch
        self.sorted_epochs = sorted_epochs
        self._resume: tuple[int, int] | None = None
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning before each epoch; fixes this epoch's batches."""
        self.epoch = epoch
        self._batches = self._make_batches()
        self._start = 0
        if self._resume is not None and self._resume[0] == epoch:  # may be set again for the same epoch
            self._start = min(self._resume[1], len(self._batches))
        else:
            self._resume = None

    def resume(self, epoch: int, done: int) -> None:
        """Go to ``epoch`` and skip its first ``done`` batches, as a run resumed mid-epoch must (until
        another epoch is set)."""
        self._resume = (epoch, done)
        self.set_epoch(epoch)

    def _make_batches(self) -> list[list[int]]:
        lengths = np.asarray(self.lengths, dtype=np.float64)
        if self.shuffle and self.epoch >= self.sorted_epochs:
            rng = np.random.default_rng([self.seed, self.epoch])
            keys = lengths * (1 + self.jitter * rng.uniform(-1, 1, len(lengths)))
            order = np.argsort(keys, kind="stable")
        else:  # evaluation, and SortaGrad's epochs: exactly shortest first
            rng, order = None, np.argsort(lengths, kind="stable")
        batches = budget_batches(order.tolist(), self.lengths, self.max_frames, self.max_batch_size)
        if rng is not None:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        if self.num_replicas > 1:
            if self.equal_shards and len(batches) % self.num_replicas:
                extra = self.num_replicas - len(batches) % self.num_replicas
                batches = batches + [batches[i % len(batches)] for i in range(extra)]
            batches = batches[self.rank :: self.num_replicas]
        return batches

    @property
    def sampler(self) -> _EpochSetter:
        """Lightning calls ``set_epoch`` on ``batch_sampler.sampler``, never on the batch sampler itself:
        without this, every epoch would repeat the first one's batches."""
        return _EpochSetter(self)

    def __iter__(self) -> Iterator[list]:
        for batch in self._batches[self._start :]:
            yield [(index, self.epoch) for index in batch] if self.tag_epoch else batch

    def __len__(self) -> int:
        return len(self._batches)  # the whole epoch: Lightning counts the skipped batches as done


class _EpochSetter:
    """What Lightning sees as ``batch_sampler.sampler``: forwards ``set_epoch`` to the batch sampler."""

    def __init__(self, batch_sampler: LengthBudgetBatchSampler) -> None:
        self.batch_sampler = batch_sampler

    def set_epoch(self, epoch: int) -> None:
        self.batch_sampler.set_epoch(epoch)


class ManifestDataset(Dataset):
    """Manifest entries -> feature tensors and label sequences through a front-end.

    Labels are encoded once, up front (``entries[i]["labels"]``), so a transcript the tokenizer
    cannot encode fails at setup, naming the utterance, not in the middle of training.
    """

    def __init__(self, entries: list[dict[str, Any]], frontend: Frontend, augment: bool = False, seed: int = 0) -> None:
        self.entries = entries
        self.frontend = frontend
        self.augment = augment
        self.seed = seed

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        """``index``, or ``(index, epoch)`` from a batch sampler with ``tag_epoch``: then the item's
        augmentation draws from a generator seeded by (seed, epoch, index), so it is the same whatever
        the workers, the prefetching or a resumption."""
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        entry = self.entries[index]
        rng = np.random.default_rng([self.seed, epoch, index]) if self.augment else None
        features = self.frontend.features(self.frontend.load_entry(entry), rng)
        return {"id": entry["id"], "entry": entry, "features": features, "labels": entry.get("labels", [])}

    def lengths(self) -> list[int]:
        """Estimated feature frames per entry, for batching."""
        return [self.frontend.estimate_frames(entry) for entry in self.entries]


@dataclass
class Batch:
    """What the DataModule hands the LightningModule: padded features and CTC targets.

    Not frozen: Lightning moves a batch to the device by replacing its tensor fields.
    """

    #: manifest ids, in batch order
    ids: list[str]
    #: the manifest entries (``text``, the input's path, ``source`` = ``manifest:line``)
    entries: list[dict[str, Any]]
    #: (batch, T, feature_dim), zero-padded
    features: torch.Tensor
    #: (batch,) feature frames per item
    lengths: torch.Tensor
    #: every item's labels, concatenated (CTC's 1-D targets)
    targets: torch.Tensor
    #: (batch,) labels per item
    target_lengths: torch.Tensor
    #: (batch,) fewest output frames CTC needs per item (``recognizer.ctc.min_ctc_frames``)
    min_frames: torch.Tensor

    def __len__(self) -> int:
        return len(self.ids)


def collate(items: list[dict[str, Any]]) -> Batch:
    """Pad features to (batch, T, F); concatenate labels as CTC targets."""
    features = [item["features"] for item in items]
    labels = [torch.as_tensor(item["labels"], dtype=torch.long) for item in items]
    return Batch(
        ids=[item["id"] for item in items],
        entries=[item["entry"] for item in items],
        features=pad_sequence(features, batch_first=True),
        lengths=torch.tensor([f.shape[0] for f in features]),
        targets=torch.cat(labels),
        target_lengths=torch.tensor([len(label) for label in labels]),
        min_frames=torch.tensor([min_ctc_frames(item["labels"]) for item in items]),
    )


def _ignore_interrupts(worker_id: int) -> None:
    """Ctrl-C reaches the whole process group: workers leave it to the main process, which saves a
    checkpoint after the current batch and stops them itself."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class DataModule(pl.LightningDataModule):
    """Manifests -> length-budget batches, for any modality's front-end.

    Args:
        frontend: turns inputs into features (e.g. ``recognizer.audio.AudioFrontend``).
        train_manifest, val_manifest, test_manifest, predict_manifest: JSON-lines manifests.
        alphabet: the model's characters; built from the training transcripts when not given.
        case, keep, unknown, replacement: text normalization and the policy for characters outside
            the alphabet (see ``recognizer.tokenizer.Tokenizer``).
        max_frames: batch budget in feature frames (count x longest, padding included).
        max_batch_size: optional cap on utterances per batch.
        num_workers: DataLoader worker processes.
        seed: batch shuffling seed (the epoch is mixed in).
        stats_utterances: training utterances used for the normalization statistics.
        sorted_epochs: the first epochs run their batches shortest first (SortaGrad), the rest shuffled.
    """

    def __init__(
        self,
        frontend: Frontend,
        train_manifest: str | None = None,
        val_manifest: str | None = None,
        test_manifest: str | None = None,
        predict_manifest: str | None = None,
        alphabet: str | None = None,
        case: Case = CASE,
        keep: str | None = None,
        unknown: Unknown = UNKNOWN,
        replacement: str = REPLACEMENT,
        max_frames: int = 20000,
        max_batch_size: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
        stats_utterances: int = 2000,
        sorted_epochs: int = 0,
    ) -> None:
        super().__init__()
        self.frontend = frontend
        self.manifests = {
            "fit": train_manifest,
            "validate": val_manifest,
            "test": test_manifest,
            "predict": predict_manifest,
        }
        self.max_frames = max_frames
        self.max_batch_size = max_batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.stats_utterances = stats_utterances
        self.sorted_epochs = sorted_epochs
        self._entries: dict[str, list[dict[str, Any]]] = {}
        self._resume_position: tuple[int, int] | None = None
        options: dict[str, Any] = dict(case=case, keep=keep, unknown=unknown, replacement=replacement)
        if alphabet:
            self.tokenizer = Tokenizer(alphabet=alphabet, **options)
        elif train_manifest:
            texts = [entry["text"] for entry in self._read("fit")]
            self.tokenizer = Tokenizer.from_texts(texts, **options)
        else:
            raise ValueError("give data.alphabet or data.train_manifest (the alphabet is built from it)")

    @property
    def tokenizer_config(self) -> dict[str, Any]:
        """The tokenizer's settings, linked into the model's hyperparameters by the CLI."""
        return self.tokenizer.to_dict()

    @property
    def frontend_config(self) -> dict[str, Any]:
        """The front-end's settings, linked into the model's hyperparameters by the CLI."""
        return self.frontend.config()

    def _read(self, stage: str) -> list[dict[str, Any]]:
        if stage not in self._entries:
            path = self.manifests[stage]
            if not path:
                raise ValueError(f"no manifest for {stage!r}: set data.{_MANIFEST_ARGS[stage]}")
            required = ("text",) if stage != "predict" else ()
            self._entries[stage] = read_manifest(path, required=required, path_key=self.frontend.path_key)
        return self._entries[stage]

    def _dataset(self, stage: str, augment: bool = False) -> ManifestDataset:
        entries = self._read(stage)
        if stage != "predict":
            before = sum(self.tokenizer.unknown_counts.values())
            for entry in entries:
                if "labels" not in entry:  # setup may run for several stages over the same entries
                    entry["labels"] = self.tokenizer.encode(entry["text"], utterance=entry["source"])
            changed = sum(self.tokenizer.unknown_counts.values()) - before
            if changed:
                log.warning(
                    "%s: %d character(s) outside the alphabet were %s: %s",
                    self.manifests[stage],
                    changed,
                    "dropped" if self.tokenizer.unknown == "drop" else "replaced",
                    dict(self.tokenizer.unknown_counts),
                )
        return ManifestDataset(entries, self.frontend, augment=augment, seed=self.seed)

    def setup(self, stage: str) -> None:
        if stage == "fit":
            self.train_set = self._dataset("fit", augment=True)
            self.val_set = self._dataset("validate") if self.manifests["validate"] else None
        elif stage == "validate":
            self.val_set = self._dataset("validate")
        elif stage == "test":
            self.test_set = self._dataset("test")
        elif stage == "predict":
            self.predict_set = self._dataset("predict")

    def _loader(self, dataset: ManifestDataset, train: bool) -> DataLoader:
        trainer = self.trainer
        sampler = LengthBudgetBatchSampler(
            dataset.lengths(),
            self.max_frames,
            self.max_batch_size,
            shuffle=train,
            seed=self.seed,
            num_replicas=trainer.world_size if trainer else 1,
            rank=trainer.global_rank if trainer else 0,
            equal_shards=train,
            tag_epoch=train,
            sorted_epochs=self.sorted_epochs if train else 0,
        )
        return DataLoader(
            dataset,
            batch_sampler=sampler,
            collate_fn=collate,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            # The loader's own generator: starting an iteration must not draw from the global one,
            # which dropout uses (an exact resume restores it).
            generator=torch.Generator().manual_seed(self.seed),
            worker_init_fn=_ignore_interrupts if self.num_workers else None,
        )

    def train_dataloader(self) -> DataLoader:
        loader = self._loader(self.train_set, train=True)
        if self._resume_position is not None:  # kept: Lightning may make a loader just to count its batches
            sampler = loader.batch_sampler
            assert isinstance(sampler, LengthBudgetBatchSampler), "the training loader batches by length budget"
            sampler.resume(*self._resume_position)
        return loader

    # Lightning saves this in every checkpoint and restores it before the loaders are made.
    def state_dict(self) -> dict[str, Any]:
        """The training position: epoch and batches already trained on in it."""
        trainer = self.trainer
        if trainer is None or trainer.state.fn != "fit":
            return {}
        return {
            "epoch": trainer.current_epoch,
            # Lightning types `current` as the base tracker; at run time it counts `processed` batches too
            "batches_done": trainer.fit_loop.epoch_loop.batch_progress.current.processed,  # type: ignore[attr-defined]
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "epoch" in state_dict:
            self._resume_position = (int(state_dict["epoch"]), int(state_dict["batches_done"]))

    def val_dataloader(self) -> DataLoader | list:
        return self._loader(self.val_set, train=False) if self.val_set is not None else []

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, train=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.predict_set, train=False)

    def feature_statistics(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-dimension mean and std of un-augmented training features (a fixed, seeded subset)."""
        entries = self._read("fit")
        rng = np.random.default_rng(self.seed)
        chosen = rng.permutation(len(entries))[: self.stats_utterances]
        total = torch.zeros(self.frontend.feature_dim, dtype=torch.float64)
        squares = torch.zeros_like(total)
        count = 0
        for index in chosen.tolist():
            entry = entries[index]
            features = self.frontend.features(self.frontend.load_entry(entry)).double()
            total += features.sum(0)
            squares += (features**2).sum(0)
            count += features.shape[0]
        mean = total / count
        std = (squares / count - mean**2).clamp_min(0).sqrt()
        return mean.float(), std.float()


_MANIFEST_ARGS = {
    "fit": "train_manifest",
    "validate": "val_manifest",
    "test": "test_manifest",
    "predict": "predict_manifest",
}
