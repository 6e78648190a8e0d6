"""Loading data: ``load_data(DataConfig)`` gives the normalised float batches of a dataset and its
preprocessing record (``DataBundle``)."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import compress.data.sources as sources
from compress.data.config import DATASETS, DataConfig, DatasetInfo
from compress.data.labels import UNLABELED, hide_labels, holdout_subset, labeled_subset
from compress.data.loaders import Augment, BatchLoader, DataLoaderAdapter, TensorLoader
from compress.data.preprocessing import Preprocessing
from compress.errors import ConfigError, DataError


@dataclass
class DataBundle:
    train: BatchLoader
    val: BatchLoader  # what epochs are chosen on: the held-out training images, else the test split
    info: DatasetInfo
    num_classes: int
    preprocessing: Preprocessing  # for the model's channel count
    test: BatchLoader | None = None  # the test split, read once after training; None without a holdout

    @property
    def final(self) -> BatchLoader:
        """The split a finished model is judged on: the test split when the validation split is held out."""
        return self.test if self.test is not None else self.val

    @property
    def image_size(self) -> int:
        return self.preprocessing.image_size

    def train_for(self, uses_unlabeled: bool) -> BatchLoader:
        """The training batches for a method: on partly labelled data, one that learns from labels alone
        gets batches of labelled images only (same steps per epoch); otherwise the loader as it is."""
        if uses_unlabeled:
            return self.train
        if isinstance(self.train, TensorLoader) and self.train.partly_labeled:
            return self.train.labels_only()
        return getattr(self.train, "labels_only_loader", None) or self.train


def _subset(split: sources.ArraySplit, limit: int | None, seed: int) -> sources.ArraySplit:
    """A deterministic subset: the first ``limit`` items of a fixed permutation (seed-independent of training)."""
    if limit is None or limit >= len(split.labels):
        return split
    order = np.random.default_rng(seed).permutation(len(split.labels))[:limit]
    order.sort()
    return sources.ArraySplit(split.images[order], split.labels[order])


def augment_for(image_size: int) -> Augment:
    """Standard augmentation: pad-crop + flip up to 64 px (RandomResizedCrop is used for folders)."""
    return Augment(pad=max(2, image_size // 8), flip=True)


def load_data(cfg: DataConfig, device: torch.device | str = "cpu", channels_last: bool = False,
              rank: int = 0, world_size: int = 1) -> DataBundle:
    own = cfg.own_bundle(device, channels_last, rank, world_size)
    if own is not None:  # Datasets/DataLoaders given from Python
        return own
    cfg.validate()
    info = DATASETS.get(cfg.name)
    if info.name == "imagefolder":
        return _load_image_folder(cfg, info, device, channels_last, rank, world_size)
    class_names: tuple[str, ...]
    if info.name == "fashion-mnist":
        splits, class_names = sources.load_fashion_mnist(cfg.data_dir, cfg.download), sources.FASHION_MNIST_CLASSES
    elif info.name in ("cifar10", "cifar100"):
        splits, class_names = sources.load_cifar(info.name, cfg.data_dir, cfg.download)
    else:
        size = cfg.image_size or info.image_size
        splits = sources.synthetic(info.num_classes, size, info.channels, *cfg.synthetic_size, seed=cfg.seed)
        class_names = tuple(str(i) for i in range(info.num_classes))
        info = DatasetInfo(info.name, info.num_classes, info.channels, size, info.mean, info.std, info.description)
    if cfg.image_size is not None and cfg.image_size != info.image_size:
        raise ConfigError(f"{info.name} images are {info.image_size} px; --image-size {cfg.image_size} is only for "
                          "imagefolder and synthetic data")
    if cfg.shift is not None:  # the camera: every image, before any subset, so an image's noise is its own
        from compress.data.shift import apply_shift

        splits = {split: sources.ArraySplit(apply_shift(part.images, cfg.shift, cfg.shift_seed,
                                                        "test" if split == "val" else split), part.labels)
                  for split, part in splits.items()}
    train, val, test = _split_arrays(cfg, splits, info.num_classes)
    share = cfg.labeled_share if cfg.partly_labeled else None
    channels = cfg.channels or info.channels
    pre = Preprocessing(info.mean, info.std, info.image_size, info.channels, info.channels,
                        None, class_names).for_channels(channels)
    common = dict(device=device, channels_last=channels_last, rank=rank, world_size=world_size)
    train_loader = TensorLoader(torch.from_numpy(train.images), torch.from_numpy(train.labels), cfg.batch_size, pre,
                                shuffle=True, augment=augment_for(info.image_size) if cfg.augment else Augment(),
                                drop_last=len(train.labels) > cfg.batch_size, seed=cfg.seed, labeled_share=share,
                                **common)
    val_loader, test_loader = (
        None if part is None else TensorLoader(torch.from_numpy(part.images), torch.from_numpy(part.labels),
                                               cfg.eval_batch_size, pre, shuffle=False, **common)
        for part in (val, test))
    return DataBundle(train_loader, val_loader, info, info.num_classes, pre, test_loader)  # type: ignore[arg-type]


def _split_arrays(cfg: DataConfig, splits: dict[str, sources.ArraySplit],
                  num_classes: int) -> tuple[sources.ArraySplit, sources.ArraySplit, sources.ArraySplit | None]:
    """(training, validation, test) images: the validation split is the dataset's test split, or with
    ``holdout_per_class`` images held out of training (and then the test split is returned as well).

    Unlabelled training images get ``UNLABELED`` here, before any loader exists: no loss can read them.
    """
    train = _subset(splits["train"], cfg.train_limit, 0)
    test = _subset(splits["val"], cfg.val_limit, 1)
    keep = None  # the training images that keep their labels (None: all)
    if cfg.labels_per_class is not None or cfg.label_fraction is not None:
        keep = labeled_subset(train.labels, num_classes, cfg.labels_per_class, cfg.label_fraction, cfg.label_seed)
    if cfg.holdout_per_class is None:
        if keep is not None:
            train = sources.ArraySplit(train.images, hide_labels(train.labels, keep))
        return train, test, None
    held = holdout_subset(train.labels, num_classes, cfg.holdout_per_class, cfg.label_seed, pool=keep)
    val = sources.ArraySplit(train.images[held], train.labels[held])
    rest = np.setdiff1d(np.arange(len(train.labels)), held)  # neither labelled nor unlabelled any more
    labels = train.labels[rest]
    if keep is not None:  # the labelled images left, as positions in ``rest``
        labels = hide_labels(labels, np.searchsorted(rest, np.setdiff1d(keep, held)))
    return sources.ArraySplit(train.images[rest], labels), val, test


def _load_image_folder(cfg: DataConfig, info: DatasetInfo, device: torch.device | str, channels_last: bool,
                       rank: int, world_size: int) -> DataBundle:
    from torchvision import transforms

    if not cfg.data_dir:
        raise DataError("imagefolder needs --data-dir DIR with DIR/train/<class>/ and DIR/val/<class>/")
    root = Path(cfg.data_dir)
    size = cfg.image_size or info.image_size
    resize = int(round(size * 256 / 224))
    channels = cfg.channels or 3
    pre = Preprocessing(info.mean, info.std, size, 3, 3, resize).for_channels(channels)
    grey = [transforms.Grayscale(1)] if channels == 1 else []  # ImageFolder already opens images as RGB
    # Workers decode, crop and flip, and hand over uint8; DataLoaderAdapter normalises on the device.
    to_uint8 = [transforms.PILToTensor()]
    train_tf = transforms.Compose(([transforms.RandomResizedCrop(size), transforms.RandomHorizontalFlip()]
                                   if cfg.augment else [transforms.Resize(resize), transforms.CenterCrop(size)])
                                  + grey + to_uint8)
    val_tf = transforms.Compose([transforms.Resize(resize), transforms.CenterCrop(size)] + grey + to_uint8)
    from compress.data.images import SafeImageFolder

    train_ds = SafeImageFolder(sources.check_image_folder(root, "train"), train_tf, cfg.strict_data)
    val_ds = SafeImageFolder(sources.check_image_folder(root, "val"), val_tf, cfg.strict_data)
    if train_ds.classes != val_ds.classes:
        raise DataError(f"train/ and val/ in '{root}' have different class folders: make them match")
    class_names = tuple(val_ds.classes)
    if cfg.train_limit:
        train_ds = torch.utils.data.Subset(train_ds, _limit_indices(len(train_ds), cfg.train_limit, 0))  # type: ignore[assignment]
    if cfg.val_limit:
        val_ds = torch.utils.data.Subset(val_ds, _limit_indices(len(val_ds), cfg.val_limit, 1))  # type: ignore[assignment]
    pre = Preprocessing(pre.mean, pre.std, size, channels, 3, resize, class_names)
    pin = torch.device(device).type == "cuda"
    loader_kw = dict(num_workers=cfg.workers, pin_memory=pin, persistent_workers=cfg.workers > 0)
    labelled = None  # positions in train_ds of the images that keep their labels (None: all)
    if cfg.labels_per_class is not None or cfg.label_fraction is not None:
        labelled = labeled_subset(_folder_targets(train_ds), len(class_names), cfg.labels_per_class,
                                  cfg.label_fraction, cfg.label_seed)
    held_ds = None
    if cfg.holdout_per_class is not None:
        train_ds, held_ds, labelled = _hold_out_folder(cfg, train_ds, val_tf, len(class_names), labelled)
    if cfg.partly_labeled:
        train_ds, sampler = _partly_labeled_folder(cfg, root, train_ds, labelled, train_tf, rank, world_size)
        train_dl = torch.utils.data.DataLoader(train_ds, batch_sampler=sampler, **loader_kw)
        labels_only = torch.utils.data.DataLoader(train_ds, batch_sampler=sampler.labels_only(), **loader_kw)
    elif world_size > 1:
        sampler = torch.utils.data.distributed.DistributedSampler(train_ds, world_size, rank, shuffle=True, seed=cfg.seed)
        train_dl = torch.utils.data.DataLoader(train_ds, cfg.batch_size // world_size, sampler=sampler, drop_last=True,
                                               **loader_kw)
    else:
        gen = torch.Generator().manual_seed(cfg.seed)
        # As TensorLoader: a split smaller than one batch is one short batch, not none (export's
        # calibration reads train_limit=N images with the default batch of 128)
        train_dl = torch.utils.data.DataLoader(train_ds, cfg.batch_size, shuffle=True, generator=gen,
                                               drop_last=len(train_ds) > cfg.batch_size, **loader_kw)
    val_dl, test_dl = (None if part is None else
                       torch.utils.data.DataLoader(part, cfg.eval_batch_size, shuffle=False, **loader_kw)
                       for part in ((val_ds, None) if held_ds is None else (held_ds, val_ds)))
    n_classes = len(pre.class_names)
    info = DatasetInfo(info.name, n_classes, 3, size, info.mean, info.std, info.description, resize)
    train = DataLoaderAdapter(train_dl, pre, device, channels_last)
    if cfg.partly_labeled:
        train.labels_only_loader = DataLoaderAdapter(labels_only, pre, device, channels_last)
    return DataBundle(train, DataLoaderAdapter(val_dl, pre, device, channels_last), info, n_classes, pre,
                      None if test_dl is None else DataLoaderAdapter(test_dl, pre, device, channels_last))


def _hold_out_folder(cfg: DataConfig, train_ds: torch.utils.data.Dataset, val_tf: object, n_classes: int,
                     labelled: np.ndarray | None) -> tuple[torch.utils.data.Dataset, torch.utils.data.Dataset,
                                                           np.ndarray | None]:
    """(train/ without the held-out images, the held-out images read like val/'s, the labelled images
    left as positions in the first): ``holdout_per_class`` per class, of the labelled ones when some are."""
    base = train_ds.dataset if isinstance(train_ds, torch.utils.data.Subset) else train_ds
    index = np.asarray(train_ds.indices) if isinstance(train_ds, torch.utils.data.Subset) else np.arange(len(base))  # type: ignore[arg-type]
    held = holdout_subset(_folder_targets(train_ds), n_classes, cfg.holdout_per_class, cfg.label_seed,  # type: ignore[arg-type]
                          pool=labelled)
    rest = np.setdiff1d(np.arange(len(index)), held)
    unaugmented = copy.copy(base)  # the same file list, read without random crops or flips
    unaugmented.transform = val_tf  # type: ignore[attr-defined]
    if labelled is not None:
        labelled = np.searchsorted(rest, np.setdiff1d(labelled, held))
    return (torch.utils.data.Subset(base, index[rest].tolist()),
            torch.utils.data.Subset(unaugmented, index[held].tolist()), labelled)


def _folder_targets(dataset: torch.utils.data.Dataset) -> np.ndarray:
    """The class index of every image of an ImageFolder (or a Subset of one), from its file list."""
    if isinstance(dataset, torch.utils.data.Subset):
        targets = np.asarray(dataset.dataset.targets)  # type: ignore[attr-defined]
        return targets[np.asarray(dataset.indices)]
    return np.asarray(dataset.targets)  # type: ignore[attr-defined]


def _partly_labeled_folder(cfg: DataConfig, root: Path, train_ds: torch.utils.data.Dataset,
                           labelled: np.ndarray | None, transform: object, rank: int,
                           world_size: int) -> tuple[torch.utils.data.Dataset, "MixedBatchSampler"]:
    """train/ with the labels outside ``labelled`` (positions in it; None: all) hidden, followed by
    --unlabeled-dir's images."""
    from compress.data.labels import HiddenLabels, MixedBatchSampler

    keep = np.arange(len(train_ds)) if labelled is None else labelled  # type: ignore[arg-type]
    parts: list[torch.utils.data.Dataset] = [HiddenLabels(train_ds, keep)]
    if cfg.unlabeled_dir:
        parts.append(sources.UnlabeledFolder(Path(cfg.unlabeled_dir), transform, cfg.strict_data))  # type: ignore[arg-type]
    dataset = torch.utils.data.ConcatDataset(parts)
    labeled = torch.from_numpy(keep).long()
    known = np.zeros(len(dataset), dtype=bool)
    known[keep] = True
    unlabeled = torch.from_numpy(np.flatnonzero(~known)).long()
    return dataset, MixedBatchSampler(labeled, unlabeled, cfg.batch_size, cfg.labeled_share, cfg.seed, rank, world_size)


def _limit_indices(n: int, limit: int, seed: int) -> list[int]:
    return sorted(np.random.default_rng(seed).permutation(n)[:limit].tolist())

__all__ = ["DataBundle", "augment_for", "load_data"]
