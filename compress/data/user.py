"""Data given from Python: the user's own torch Datasets or DataLoaders as a ``DataBundle``.

Each item (a Dataset) or batch (a DataLoader) is ``(image, label)``; the image is either
- uint8 pixels (tensor, numpy array or PIL image), H x W or C x H x W (a batch: N x H x W or N x C x H x W),
  normalised here with the preprocessing's mean/std: given, else measured on the first training images; or
- float, already normalised by the user's transform and used as it is. The deployed model is fed raw
  pixels, so then ``preprocessing`` must say how the floats were made: ``(pixels / 255 - mean) / std``
  (mean 0, std 1 for ``ToTensor()`` alone). Without it there is one error saying so.
Images are square with 1 or 3 channels; labels are class indices. A Dataset gets a DataLoader here (shuffled
per epoch by the run's seed, so a resumed run sees the same order); a DataLoader is used as it is.
The training loop then consumes these loaders like any other dataset's: there is no second loop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from compress.data.config import DataConfig, DatasetInfo
from compress.data.loading import DataBundle
from compress.data.loaders import convert_channels, uint8_affine
from compress.data.preprocessing import Preprocessing
from compress.errors import ConfigError, DataError

PREPROCESSING_HINT = ("pass preprocessing={'mean': [...], 'std': [...]} (your transform's (pixels / 255 - mean) / std; "
                      "mean 0 and std 1 for ToTensor() alone), or give uint8 images")


@dataclass
class UserData(DataConfig):
    """A ``DataConfig`` whose images come from Python objects instead of a named dataset.

    ``train``/``val``: Datasets or DataLoaders yielding ``(image, label)`` (``val`` alone is enough to validate;
    one set serves as both when the other is missing). ``num_classes``: default ``len(class_names)`` or the
    dataset's ``classes``. ``preprocessing``: a ``Preprocessing`` or a mapping with ``mean``, ``std`` and
    optionally ``resize_size`` (what deployment resizes the shorter side to before the centre crop) and
    ``class_names``. ``batch_size``, ``eval_batch_size``, ``seed``, ``workers``, ``train_limit``, ``val_limit``
    and ``channels`` (the model's) apply to Datasets; a DataLoader keeps its own batching and order.
    """

    name: str = "custom"
    workers: int = 0  # Datasets built in a notebook often cannot be pickled into worker processes
    train: Any = None
    val: Any = None
    num_classes: int | None = None
    class_names: tuple[str, ...] = ()
    preprocessing: Preprocessing | Mapping[str, Any] | None = None
    measure_images: int = 1024  # training images the mean/std of uint8 data are measured on

    def validate(self) -> None:
        super().validate()
        if self.train is None and self.val is None:
            raise ConfigError("no data given: pass data=(train, val) with torch Datasets or DataLoaders")
        if self.partly_labeled:
            raise ConfigError("--labels-per-class/--label-fraction/--unlabeled-dir are for named datasets; with data "
                              "from Python, give the labelled images only")
        if self.holdout_per_class is not None or self.shift is not None:
            raise ConfigError("holdout_per_class and shift are for named datasets; with data from Python, pass your "
                              "own validation split, of the images your device delivers")
        if self.num_classes is not None and self.num_classes < 2:
            raise ConfigError(f"num_classes must be at least 2, got {self.num_classes}")

    def for_model(self, record: Mapping[str, Any]) -> "UserData":
        """The data as a model with this preprocessing ``record`` needs it: its channels, and its mean/std,
        size and class names when the data does not give them (validation and export calibration)."""
        if self.preprocessing is not None:
            return replace(self, channels=self.channels or record.get("channels"))
        return replace(self, channels=self.channels or record.get("channels"), preprocessing=dict(record),
                       class_names=self.class_names or tuple(record.get("class_names", ())))

    def own_bundle(self, device: torch.device | str = "cpu", channels_last: bool = False, rank: int = 0,
                   world_size: int = 1) -> DataBundle:
        self.validate()
        train_given = self.train if self.train is not None else self.val
        val_given = self.val if self.val is not None else self.train
        num_classes, names = self._classes(train_given, val_given)
        loaders = [self._loader(given, train, rank, world_size)
                   for given, train in ((train_given, True), (val_given, False))]
        first = _batch(*_first(loaders[1]), "the validation data")
        pre = self._preprocessing(first, loaders[0], names)
        info = DatasetInfo(self.name, num_classes, first.shape[1], pre.image_size, pre.mean, pre.std,
                           "data given from Python", pre.resize_size)
        limits = (self.train_limit, self.val_limit)
        wrapped = [UserLoader(loader, num_classes, pre, first, device, channels_last,
                              None if isinstance(given, Dataset) else limit)
                   for loader, given, limit in zip(loaders, (train_given, val_given), limits)]
        return DataBundle(wrapped[0], wrapped[1], info, num_classes, pre)

    def _classes(self, *given: Any) -> tuple[int, tuple[str, ...]]:
        found = next((tuple(c) for g in given for c in [_dataset_classes(g)] if c), ())
        names = tuple(self.class_names) or found
        num_classes = self.num_classes or len(names)
        if not num_classes:
            raise ConfigError("cannot tell how many classes the data has: pass num_classes=N (or class_names=[...])")
        if names and len(names) != num_classes:
            raise ConfigError(f"{len(names)} class names for {num_classes} classes: give one name per class")
        return num_classes, tuple(str(n) for n in names) or tuple(str(i) for i in range(num_classes))

    def _loader(self, given: Any, train: bool, rank: int, world_size: int) -> DataLoader:
        """A DataLoader as given, or one over a Dataset (its limit applied as a fixed subset)."""
        if isinstance(given, DataLoader):
            if world_size > 1:
                raise ConfigError("a DataLoader cannot be split over processes: pass Datasets for a multi-GPU run")
            return given
        if not isinstance(given, Dataset) or not hasattr(given, "__len__"):
            raise ConfigError(f"data must be torch Datasets (with a length) or DataLoaders, got {type(given).__name__}")
        limit = self.train_limit if train else self.val_limit
        if limit is not None and limit < len(given):
            order = np.random.default_rng(0 if train else 1).permutation(len(given))[:limit]
            given = Subset(given, sorted(order.tolist()))
        options: dict[str, Any] = dict(num_workers=self.workers, collate_fn=collate)
        if not train:
            return DataLoader(given, self.eval_batch_size, shuffle=False, **options)
        if world_size > 1:
            sampler = torch.utils.data.distributed.DistributedSampler(given, world_size, rank, seed=self.seed)
            return DataLoader(given, self.batch_size // world_size, sampler=sampler, drop_last=True, **options)
        generator = torch.Generator().manual_seed(self.seed)
        return DataLoader(given, self.batch_size, shuffle=True, drop_last=len(given) > self.batch_size,
                          generator=generator, **options)

    def _preprocessing(self, first: torch.Tensor, train: DataLoader, names: tuple[str, ...]) -> Preprocessing:
        source, size = first.shape[1], first.shape[2]
        channels = self.channels or source
        if first.is_floating_point() and channels != source:
            raise ConfigError(f"the float images have {source} channel(s) but the model takes {channels}: give "
                              f"{channels}-channel images, or uint8 ones (converted here)")
        if self.image_size is not None and self.image_size != size:
            raise ConfigError(f"the images are {size} px but image_size is {self.image_size}: resize them in your "
                              "dataset's transform")
        given = self.preprocessing
        if isinstance(given, Preprocessing):
            given = given.to_dict()
        if given is not None and given.get("image_size") not in (None, size):
            raise ConfigError(f"the model takes {given['image_size']} px images but the data gives {size} px: resize "
                              "them in your dataset's transform")
        if given is None and first.is_floating_point():
            raise ConfigError(f"float images are used as given, so their normalisation is unknown: {PREPROCESSING_HINT}")
        if given is None:
            mean, std = measure(train, source, self.measure_images)
            given = {"mean": mean, "std": std}
        if "mean" not in given or "std" not in given:
            raise ConfigError(f"preprocessing needs 'mean' and 'std', got keys {sorted(given)}")
        mean, std = tuple(float(v) for v in given["mean"]), tuple(float(v) for v in given["std"])
        if len(mean) != len(std) or len(mean) not in (source, channels) or min(std) <= 0:
            raise ConfigError(f"preprocessing mean {list(mean)} / std {list(std)} must have one entry per image "
                              f"channel ({source}) and positive std")
        resize = given.get("resize_size")
        return Preprocessing(mean, std, size, len(mean), source, None if resize is None else int(resize),
                             names).for_channels(channels)


def _dataset_classes(given: Any) -> Sequence[Any]:
    """``classes`` of a torchvision-style dataset (through a DataLoader and Subsets), or nothing."""
    dataset = given.dataset if isinstance(given, DataLoader) else given
    while isinstance(dataset, Subset):
        dataset = dataset.dataset
    classes = getattr(dataset, "classes", None)
    return classes if isinstance(classes, (list, tuple)) else ()


def _as_image(image: Any) -> torch.Tensor:
    if isinstance(image, torch.Tensor):
        return image
    if isinstance(image, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(image))
    if hasattr(image, "mode") and hasattr(image, "size"):  # a PIL image
        from torchvision.transforms.functional import pil_to_tensor

        return pil_to_tensor(image)
    raise DataError(f"an image is a {type(image).__name__}: give tensors, numpy arrays or PIL images")


def collate(items: Sequence[Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch from a Dataset's ``(image, label)`` items: images stacked as they are, labels as int64."""
    if not items or not all(isinstance(item, (tuple, list)) and len(item) == 2 for item in items):
        raise DataError("each item of the dataset must be (image, label)")
    images = [_as_image(image) for image, _ in items]
    if len({tuple(image.shape) for image in images}) > 1:
        raise DataError(f"the images have different shapes ({tuple(images[0].shape)}, ...): resize them to one "
                        "size in your dataset's transform")
    return torch.stack(images), torch.tensor([int(label) for _, label in items], dtype=torch.int64)


def _first(loader: DataLoader) -> tuple[Any, Any]:
    for batch in loader:
        return _pair(batch)
    raise DataError("the data has no images")


def _pair(batch: Any) -> tuple[Any, Any]:
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        raise DataError(f"each batch must be (images, labels), got a {type(batch).__name__}")
    return batch[0], batch[1]


def _batch(images: Any, labels: Any, what: str) -> torch.Tensor:
    """A batch's images as N x C x H x W (uint8 or float), checked."""
    x = _as_image(images)
    x = x.unsqueeze(1) if x.dim() == 3 else x
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise DataError(f"{what} gives images of shape {tuple(x.shape)}: expected N x C x H x W with 1 or 3 channels "
                        "(torch layout; permute H x W x C arrays)")
    if x.shape[2] != x.shape[3]:
        raise DataError(f"{what} gives {x.shape[2]}x{x.shape[3]} images: models take square images; crop or resize "
                        "them in your dataset's transform")
    if x.dtype != torch.uint8 and not x.is_floating_point():
        raise DataError(f"{what} gives {x.dtype} images: give uint8 pixels or float images")
    if len(torch.as_tensor(labels)) != len(x):
        raise DataError(f"{what} gives {len(x)} images but {len(torch.as_tensor(labels))} labels")
    return x


def measure(train: DataLoader, channels: int, limit: int) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of ``pixels / 255`` over the first ``limit`` training images (4 decimals)."""
    total, squares, count = torch.zeros(channels, dtype=torch.float64), torch.zeros(channels, dtype=torch.float64), 0
    for batch in train:
        x = _batch(*_pair(batch), "the training data")[: limit - count].double() / 255
        total += x.sum(dim=(0, 2, 3))
        squares += (x * x).sum(dim=(0, 2, 3))
        count += len(x)
        if count >= limit:
            break
    if count == 0:
        raise DataError("the training data has no images")
    pixels = count * x.shape[2] * x.shape[3]
    mean = total / pixels
    std = (squares / pixels - mean * mean).clamp(min=0).sqrt()
    std = torch.where(std < 1e-3, torch.ones_like(std), std)  # constant images: nothing to scale by
    return [round(v, 4) for v in mean.tolist()], [round(v, 4) for v in std.tolist()]


class UserLoader:
    """A user's DataLoader as a ``BatchLoader``: checked, normalised (uint8) and moved batches."""

    def __init__(self, loader: DataLoader, num_classes: int, preprocessing: Preprocessing, first: torch.Tensor,
                 device: torch.device | str = "cpu", channels_last: bool = False, limit: int | None = None) -> None:
        self.loader, self.num_classes, self.limit = loader, num_classes, limit
        self.device, self.channels = torch.device(device), preprocessing.channels
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.image = (first.is_floating_point(), tuple(first.shape[1:]))  # every batch must match the first
        self._scale, self._shift = uint8_affine(preprocessing, self.device)
        size = len(loader.dataset)  # type: ignore[arg-type]
        self.num_samples = size if limit is None else min(size, limit)

    def set_epoch(self, epoch: int) -> None:
        sampler = self.loader.sampler
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        elif self.loader.generator is not None:  # the epoch's shuffle, the same when a run resumes
            self.loader.generator.manual_seed(1_000_003 + epoch)

    def __len__(self) -> int:
        if self.limit is None or not self.loader.batch_size:
            return len(self.loader)
        return min(len(self.loader), math.ceil(self.limit / self.loader.batch_size))

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        left = self.num_samples
        for batch in self.loader:
            images, labels = _pair(batch)
            x, y = _batch(images, labels, "the data")[:left], torch.as_tensor(labels).long()[:left]
            if (x.is_floating_point(), tuple(x.shape[1:])) != self.image:
                raise DataError(f"a batch has {x.dtype} images of shape {tuple(x.shape[1:])}, unlike the first "
                                f"batch's: give every image one size and type")
            if len(y) and (int(y.min()) < 0 or int(y.max()) >= self.num_classes):  # checked on the CPU: no sync
                bad = int(y.min()) if int(y.min()) < 0 else int(y.max())
                raise DataError(f"label {bad} is outside 0..{self.num_classes - 1}: labels must be class indices "
                                "(or pass num_classes)")
            x = x.to(self.device, non_blocking=True)
            if not x.is_floating_point():
                x = convert_channels(x.float(), self.channels) * self._scale + self._shift
            yield x.float().contiguous(memory_format=self.memory_format), y.to(self.device, non_blocking=True)
            left -= len(y)
            if left <= 0:
                break


def user_data(data: Any, **settings: Any) -> UserData:
    """``UserData`` from what the API was given: a ``(train, val)`` pair, one Dataset or DataLoader (used as
    both), or a ``UserData`` (``settings`` replace its fields)."""
    if isinstance(data, UserData):
        return replace(data, **settings)
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return UserData(train=data[0], val=data[1], **settings)
    if isinstance(data, (Dataset, DataLoader)):
        return UserData(train=data, val=data, **settings)
    raise ConfigError(f"data must be a dataset name, a DataConfig, a (train, val) pair or a torch Dataset/DataLoader, "
                      f"got {type(data).__name__}")


__all__ = ["UserData", "UserLoader", "collate", "measure", "user_data"]
