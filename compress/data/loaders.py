"""Batch iterators the training loop consumes: ``for images, labels in loader`` (float, normalised).

``TensorLoader`` keeps a whole small dataset as uint8 on the target device and augments whole batches
there (pad-crop + flip), so a GPU is never starved by Python-side per-image transforms and a CPU run
avoids worker processes. Order and augmentation come from a generator seeded by (seed, epoch), so an
epoch is reproducible on its own: resuming at an epoch boundary gives the same batches.
With ``world_size > 1`` every rank draws the same global batch and keeps its own slice of it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Iterator, Protocol

import torch

from compress.data.labels import UNLABELED, epoch_batches, labeled_per_batch
from compress.data.preprocessing import Preprocessing


class BatchLoader(Protocol):
    num_samples: int

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]: ...

    def __len__(self) -> int: ...

    def set_epoch(self, epoch: int) -> None: ...

    def start_at(self, step: int) -> None:
        """The next pass begins after ``step`` batches of the epoch, with what an uninterrupted pass would
        yield from there (a run resumed in the middle of an epoch)."""


@dataclass(frozen=True)
class Augment:
    pad: int = 0  # random crop after zero padding by this many pixels
    flip: bool = False  # random horizontal flip


def convert_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """Grey -> RGB by repetition, RGB -> grey by ITU-R BT.601 luma."""
    have = images.shape[1]
    if have == channels:
        return images
    if have == 1 and channels == 3:
        return images.expand(-1, 3, -1, -1)
    if have == 3 and channels == 1:
        weights = torch.tensor([0.299, 0.587, 0.114], device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
        return (images * weights).sum(dim=1, keepdim=True)
    raise ValueError(f"cannot convert {have}-channel images to {channels} channels")


def augmentation_draws(n: int, augment: Augment, generator: torch.Generator
                       ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """(crop rows, crop columns, flip) for ``n`` images: every random number a batch's augmentation takes, in
    order, so skipping a batch (resuming mid-epoch) draws exactly what augmenting it would have."""
    dy = dx = flip = None
    if augment.pad:
        dy = torch.randint(0, 2 * augment.pad + 1, (n,), generator=generator)
        dx = torch.randint(0, 2 * augment.pad + 1, (n,), generator=generator)
    if augment.flip:
        flip = torch.rand(n, generator=generator) < 0.5
    return dy, dx, flip


def random_crop_flip(batch: torch.Tensor, augment: Augment, generator: torch.Generator) -> torch.Tensor:
    """Per-image random crop (zero padding) and horizontal flip on a whole uint8/float batch."""
    n, _, h, w = batch.shape
    dy, dx, flip = augmentation_draws(n, augment, generator)
    if dy is not None and dx is not None:
        p = augment.pad
        padded = torch.nn.functional.pad(batch, (p, p, p, p))
        dy, dx = dy.to(batch.device), dx.to(batch.device)
        rows = (dy[:, None] + torch.arange(h, device=batch.device)[None, :])[:, None, :, None]
        cols = (dx[:, None] + torch.arange(w, device=batch.device)[None, :])[:, None, None, :]
        idx_n = torch.arange(n, device=batch.device)[:, None, None, None]
        idx_c = torch.arange(batch.shape[1], device=batch.device)[None, :, None, None]
        batch = padded[idx_n, idx_c, rows, cols]
    if flip is not None:
        batch = torch.where(flip.to(batch.device)[:, None, None, None], batch.flip(3), batch)
    return batch


class TensorLoader:
    def __init__(
        self,
        images: torch.Tensor,  # uint8, N x C x H x W
        labels: torch.Tensor,  # int64, N
        batch_size: int,
        preprocessing: Preprocessing,
        *,
        shuffle: bool,
        augment: Augment = Augment(),
        drop_last: bool = False,
        seed: int = 0,
        device: torch.device | str = "cpu",
        channels_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
        labeled_share: float | None = None,
    ) -> None:
        """``labels`` may mark unlabelled images with ``UNLABELED``; then ``labeled_share`` of each batch
        is labelled for methods that use unlabelled images (``use_unlabeled``), see ``compress.data.labels``."""
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError("TensorLoader wants uint8 images shaped N x C x H x W")
        self.device = torch.device(device)
        self.images = images.to(self.device)
        self.labels = labels.to(self.device)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.augment = augment
        self.drop_last = drop_last
        self.seed = seed
        self.channels_last = channels_last
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.first_step = 0  # the next pass skips this many batches (resumed mid-epoch), then resets it
        self.num_samples = len(self.labels)
        self.channels = preprocessing.channels
        self._scale, self._shift = uint8_affine(preprocessing, self.device)
        # Partly labelled data: index pools on the CPU, where the generator draws from them.
        self.partly_labeled = labeled_share is not None
        self.use_unlabeled = True
        if self.partly_labeled:
            known = labels.cpu() != UNLABELED
            self.labeled_index = torch.nonzero(known).flatten()
            self.unlabeled_index = torch.nonzero(~known).flatten()
            if len(self.labeled_index) == 0:
                raise ValueError("partly labelled data needs at least one labelled image")
            self.labeled_per_batch = labeled_per_batch(batch_size, labeled_share)  # type: ignore[arg-type]

    def labels_only(self) -> "TensorLoader":
        """The same data for a method that learns from labels alone: whole batches of labelled images."""
        clone = copy.copy(self)
        clone.use_unlabeled = False
        return clone

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def start_at(self, step: int) -> None:
        self.first_step = step

    def _order(self, generator: torch.Generator) -> torch.Tensor:
        """The epoch's image indices, batch after batch (moved to the device once, not per step)."""
        if self.partly_labeled:
            return torch.cat(list(epoch_batches(self.labeled_index, self.unlabeled_index, self.batch_size, len(self),
                                                self.labeled_per_batch, self.use_unlabeled, generator)))
        return torch.randperm(self.num_samples, generator=generator) if self.shuffle else torch.arange(self.num_samples)

    def __len__(self) -> int:
        if self.partly_labeled:  # the same steps for every method: one pass's worth of images
            return max(1, self.num_samples // self.batch_size)
        if self.drop_last:
            return self.num_samples // self.batch_size
        return -(-self.num_samples // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = self._order(generator).to(self.device)
        first, self.first_step = self.first_step, 0
        for step in range(len(self)):
            index = order[step * self.batch_size:(step + 1) * self.batch_size]
            if step < first:  # already trained on: only the random numbers its augmentation took
                augmentation_draws(len(index), self.augment, generator)
                continue
            batch = self.images[index]
            if self.augment.pad or self.augment.flip:
                batch = random_crop_flip(batch, self.augment, generator)
            labels = self.labels[index]
            if self.world_size > 1:
                batch, labels = batch[self.rank::self.world_size], labels[self.rank::self.world_size]
            x = convert_channels(batch.float(), self.channels) * self._scale + self._shift
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, labels


def uint8_affine(preprocessing: Preprocessing, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel ``(scale, shift)`` with ``(u8 / 255 - mean) / std == u8 * scale + shift``: one fused
    multiply-add per pixel instead of a division, a subtraction and a division."""
    mean = torch.tensor(preprocessing.mean, device=device).view(1, -1, 1, 1)
    std = torch.tensor(preprocessing.std, device=device).view(1, -1, 1, 1)
    return 1.0 / (255.0 * std), -mean / std


class DataLoaderAdapter:
    """Wraps a torch DataLoader (ImageFolder) to the same interface; epoch order via its sampler.

    The loader yields uint8 images (decoded, cropped and flipped by the workers) and the
    normalisation happens here, on the device: a quarter of the bytes cross to the GPU, and the
    workers do no per-pixel float work.
    """

    def __init__(self, loader: torch.utils.data.DataLoader, preprocessing: Preprocessing,
                 device: torch.device | str = "cpu", channels_last: bool = False) -> None:
        self.loader = loader
        self.device = torch.device(device)
        self.channels_last = channels_last
        self.num_samples = len(loader.dataset)  # type: ignore[arg-type]
        self._scale, self._shift = uint8_affine(preprocessing, self.device)
        self.labels_only_loader: DataLoaderAdapter | None = None  # partly labelled folders: labelled batches only
        self.first_step = 0  # the next pass skips this many batches (resumed mid-epoch), then resets it

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.loader.batch_sampler, "set_epoch"):  # MixedBatchSampler (partly labelled)
            self.loader.batch_sampler.set_epoch(epoch)  # type: ignore[union-attr]
            return
        sampler = self.loader.sampler
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        elif self.loader.generator is not None:
            self.loader.generator.manual_seed(1_000_003 + epoch)

    def __len__(self) -> int:
        return len(self.loader)

    def start_at(self, step: int) -> None:
        self.first_step = step

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        batches = iter(self.loader)
        first, self.first_step = self.first_step, 0
        if first:
            # The batches already trained on are loaded again and dropped: worker processes draw their
            # augmentation from seeds of their own, so only loading them draws what the first pass drew. Without
            # workers the transforms draw from the global RNG, which the resume state restored: keep it.
            rng = torch.get_rng_state()
            for _ in range(first):
                next(batches, None)
            torch.set_rng_state(rng)
        for images, labels in batches:
            images = images.to(self.device, non_blocking=True).float() * self._scale + self._shift
            yield images.contiguous(memory_format=memory_format), labels.to(self.device, non_blocking=True)


def take(loader: "BatchLoader | DataLoaderAdapter | TensorLoader", limit: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``limit`` (images, labels) a loader yields, on the CPU (calibration, parity checks)."""
    images, labels, n = [], [], 0
    for x, y in loader:
        images.append(x.cpu())
        labels.append(y.cpu())
        n += len(y)
        if n >= limit:
            break
    return torch.cat(images)[:limit], torch.cat(labels)[:limit]
