"""Labelled and unlabelled images in one training set.

Users who distil for an edge device usually hold a few labelled images and many unlabelled ones from
their deployment domain. Here an unlabelled image carries the label ``UNLABELED`` (-1): the data layer
writes it in place of whatever label the source had, so no loss can read a hidden label by mistake.
Loss terms that need labels (``labeled_ce``) average over the labelled images of a batch only; terms
that compare with a teacher use every image.

Batches are drawn by ``epoch_batches``, shared by the in-memory loader and the DataLoader path:
- a method that learns from unlabelled images gets ``labeled_per_batch`` labelled images per batch
  (cycling through the labelled set) and the rest from the unlabelled pool;
- a method that only learns from labels (the student alone) gets whole batches of labelled images.
Both run the same number of steps per epoch (``num_images // batch_size``), so every method gets the
same optimizer steps and images per step, whatever it does with them.
"""

from __future__ import annotations

import copy
import math
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from compress.errors import ConfigError

UNLABELED = -1


def labeled_subset(labels: np.ndarray, num_classes: int, per_class: int | None = None,
                   fraction: float | None = None, seed: int = 0) -> np.ndarray:
    """Sorted indices of a class-balanced subset that keeps its labels.

    ``per_class`` images of every class, or ``fraction`` of each class (at least one). The choice depends
    on ``seed`` and the labels alone, so every rank of a distributed run picks the same images.
    """
    if (per_class is None) == (fraction is None):
        raise ValueError("give exactly one of per_class and fraction")
    rng = np.random.default_rng(seed)
    chosen = []
    for c in range(num_classes):
        members = np.flatnonzero(labels == c)
        take = per_class if per_class is not None else max(1, int(round(fraction * len(members))))  # type: ignore[operator]
        if take > len(members):
            raise ConfigError(f"--labels-per-class {take} is more than class {c} has ({len(members)} images): "
                              "lower it or use --label-fraction")
        chosen.append(rng.permutation(members)[:take])
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)


def holdout_subset(labels: np.ndarray, num_classes: int, per_class: int, seed: int = 0,
                   pool: np.ndarray | None = None) -> np.ndarray:
    """Sorted indices of a class-balanced validation split: ``per_class`` images of every class.

    Drawn from ``pool`` (the labelled subset in a partly labelled regime: a user validates on labels
    they hold) or from every image. At least one image of each class stays for training. The choice
    depends on ``seed`` and the labels alone, so every rank of a distributed run holds out the same images.
    """
    candidates = np.arange(len(labels)) if pool is None else np.asarray(pool)
    rng = np.random.default_rng([seed, 21])  # its own stream: not the labelled subset's first draws again
    chosen = []
    for c in range(num_classes):
        members = candidates[labels[candidates] == c]
        if per_class >= len(members):
            what = "labelled images" if pool is not None else "training images"
            raise ConfigError(f"--holdout-per-class {per_class} leaves no {what} of class {c} to train on (it has "
                              f"{len(members)}): lower it" + (" or raise --labels-per-class" if pool is not None
                                                              else ""))
        chosen.append(rng.permutation(members)[:per_class])
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)


def hide_labels(labels: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """A copy of ``labels`` with ``UNLABELED`` everywhere but at the indices ``keep``."""
    hidden = np.full(len(labels), UNLABELED, dtype=np.int64)
    hidden[keep] = labels[keep]
    return hidden


def labeled_per_batch(batch_size: int, share: float) -> int:
    """How many images of a mixed batch are labelled: ``share`` of it, at least one, at most all but one."""
    return min(max(1, int(round(share * batch_size))), batch_size - 1)


def _cycled(pool: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` indices from ``pool``: fresh random permutations of it, one after another."""
    if count == 0 or len(pool) == 0:
        return pool[:0]
    rounds = math.ceil(count / len(pool))
    return torch.cat([pool[torch.randperm(len(pool), generator=generator)] for _ in range(rounds)])[:count]


def epoch_batches(labeled: torch.Tensor, unlabeled: torch.Tensor, batch_size: int, steps: int, per_batch: int,
                  use_unlabeled: bool, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """One epoch's batches of indices (CPU int64) into the training set.

    ``use_unlabeled``: ``per_batch`` labelled indices then ``batch_size - per_batch`` unlabelled ones
    per batch; otherwise ``batch_size`` labelled indices. Every draw comes from ``generator``.
    """
    if not use_unlabeled or len(unlabeled) == 0:
        order = _cycled(labeled, steps * batch_size, generator)
        for step in range(steps):
            yield order[step * batch_size:(step + 1) * batch_size]
        return
    rest = batch_size - per_batch
    labeled_order = _cycled(labeled, steps * per_batch, generator)
    unlabeled_order = _cycled(unlabeled, steps * rest, generator)
    for step in range(steps):
        yield torch.cat([labeled_order[step * per_batch:(step + 1) * per_batch],
                         unlabeled_order[step * rest:(step + 1) * rest]])


def labeled_ce(logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy averaged over the labelled images of the batch (0 when there are none).

    Labels of unlabelled images (``< 0``) are replaced before indexing and weighted by zero, so their
    value cannot change the result; no host sync (no boolean indexing).
    """
    known = labels >= 0
    safe = torch.where(known, labels, torch.zeros_like(labels))
    per_image = F.cross_entropy(logits.float(), safe, reduction="none", label_smoothing=label_smoothing)
    return (per_image * known).sum() / known.sum().clamp(min=1)


class MixedBatchSampler(torch.utils.data.Sampler[list[int]]):
    """``epoch_batches`` for a torch DataLoader (image folders): one global batch per step, of which
    each rank keeps its own slice, reproducible per (seed, epoch)."""

    def __init__(self, labeled: torch.Tensor, unlabeled: torch.Tensor, batch_size: int, share: float, seed: int = 0,
                 rank: int = 0, world_size: int = 1, use_unlabeled: bool = True) -> None:
        if len(labeled) == 0:
            raise ConfigError("no training image keeps its label: raise --labels-per-class or --label-fraction")
        self.labeled, self.unlabeled = labeled, unlabeled
        self.batch_size, self.per_batch = batch_size, labeled_per_batch(batch_size, share)
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.use_unlabeled = use_unlabeled
        self.steps = max(1, (len(labeled) + len(unlabeled)) // batch_size)
        self.epoch = 0

    def labels_only(self) -> "MixedBatchSampler":
        clone = copy.copy(self)
        clone.use_unlabeled = False
        return clone

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[list[int]]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        for batch in epoch_batches(self.labeled, self.unlabeled, self.batch_size, self.steps, self.per_batch,
                                   self.use_unlabeled, generator):
            yield batch[self.rank::self.world_size].tolist()


class HiddenLabels(torch.utils.data.Dataset):
    """A labelled dataset whose items outside ``keep`` come back with ``UNLABELED``."""

    def __init__(self, dataset: torch.utils.data.Dataset, keep: np.ndarray) -> None:
        self.dataset = dataset
        self.keep = np.zeros(len(dataset), dtype=bool)  # type: ignore[arg-type]
        self.keep[keep] = True

    def __len__(self) -> int:
        return len(self.keep)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image, label = self.dataset[index]
        return image, int(label) if self.keep[index] else UNLABELED
