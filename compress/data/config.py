"""What a dataset is (``DATASETS``: name -> ``DatasetInfo``) and which data a run reads (``DataConfig``).

Torch-free: the command line and the recipe schema read them without loading torch; ``loading.py``
turns a ``DataConfig`` into batches.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Mapping

from compress.bounds import MAX_BATCH, MAX_COUNT, MAX_IMAGE_SIZE, MAX_SEED, MAX_WORKERS, check_range, shown, within
from compress.errors import ConfigError
from compress.registry import Registry

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    num_classes: int
    channels: int
    image_size: int  # native (or default model) input size
    mean: tuple[float, ...]
    std: tuple[float, ...]
    description: str
    resize_size: int | None = None


DATASETS: Registry[DatasetInfo] = Registry("dataset")
for _info in (
    DatasetInfo("fashion-mnist", 10, 1, 28, (0.2860,), (0.3530,), "Fashion-MNIST 60k/10k 28x28 grey (Debian package)"),
    DatasetInfo("cifar10", 10, 3, 32, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), "CIFAR-10 (torchvision)"),
    DatasetInfo("cifar100", 100, 3, 32, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), "CIFAR-100 (torchvision)"),
    DatasetInfo("imagefolder", 0, 3, 224, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225),
                "ImageNet layout: DIR/train/<class>/*.jpg and DIR/val/<class>/*.jpg", resize_size=256),
    DatasetInfo("synthetic", 10, 3, 32, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), "random pixels, for speed benchmarks"),
):
    DATASETS.add(_info.name, _info, *(("fmnist",) if _info.name == "fashion-mnist" else
                                     ("imagenet",) if _info.name == "imagefolder" else ()))

MAX_SYNTHETIC_BYTES = 8 * 2**30  # synthetic images are generated in memory at once


@dataclass
class DataConfig:
    name: str = "fashion-mnist"
    data_dir: str | None = None
    download: bool = False
    batch_size: int = 128
    eval_batch_size: int = 512
    train_limit: int | None = None
    val_limit: int | None = None
    image_size: int | None = None  # only for imagefolder / synthetic
    channels: int | None = None  # model input channels; default: the data's
    augment: bool = True
    workers: int = 4
    seed: int = 0
    synthetic_size: tuple[int, int] = (2048, 512)
    # Partly labelled training data (compress.data.labels): a class-balanced subset keeps its labels
    # (labels_per_class or label_fraction, chosen by label_seed), the rest of the training images and
    # every image in unlabeled_dir (imagefolder) are unlabelled.
    labels_per_class: int | None = None
    label_fraction: float | None = None
    unlabeled_dir: str | None = None
    labeled_share: float = 0.25  # labelled images per batch, for methods that learn from unlabelled ones
    label_seed: int = 0
    # An honest protocol: a class-balanced validation split held out of the training images (chosen by
    # label_seed); the best epoch is chosen on it and the test split is read once, at the end (``DataBundle.test``).
    holdout_per_class: int | None = None  # validation images per class, held out of training (of the labelled ones)
    # A seeded covariate shift of every image, training and test alike (compress.data.shift).
    shift: str | None = None  # what a device camera delivers: camera (darker, lower contrast, blurred, noisy)
    shift_seed: int = 0  # which sensor noise the shift draws
    # Image folders: refuse the first unreadable image when the folder is opened (reads every file once),
    # instead of skipping bad files with a warning during training.
    strict_data: bool = False

    @property
    def partly_labeled(self) -> bool:
        return self.labels_per_class is not None or self.label_fraction is not None or self.unlabeled_dir is not None

    def without_label_split(self) -> "DataConfig":
        """The same images with no labelled/unlabelled split and no held-out validation split: for export
        parity, calibration and validation after training, which read images and the test split's labels
        only (a split of a small calibration subset may not even be possible). The shift stays: the
        device's camera delivers the images a deployed model is judged on."""
        return replace(self, labels_per_class=None, label_fraction=None, unlabeled_dir=None, holdout_per_class=None)

    def for_model(self, record: Mapping[str, Any]) -> "DataConfig":
        """The data as a model with this preprocessing ``record`` needs it: its channel count, unless given."""
        if self.channels is None and record.get("channels"):
            return replace(self, channels=int(record["channels"]))
        return self

    def own_bundle(self, device: torch.device | str, channels_last: bool, rank: int,
                   world_size: int) -> "DataBundle | None":
        """The batches of data that is not a named dataset (``compress.data.user.UserData`` loads the user's
        Datasets/DataLoaders); None here: ``load_data`` reads the named dataset."""
        return None

    def validate(self) -> None:
        for field_name in ("batch_size", "eval_batch_size"):
            check_range(field_name.replace("_", "-"), getattr(self, field_name), 1, MAX_BATCH)
        for field_name in ("train_limit", "val_limit", "labels_per_class", "holdout_per_class"):
            value = getattr(self, field_name)
            if value is not None:
                check_range(f"--{field_name.replace('_', '-')}", value, 1, MAX_COUNT)
        if not within(self.workers, 0, MAX_WORKERS):
            raise ConfigError(f"--workers must be 0 or more (0 decodes in the main process) and at most {MAX_WORKERS}, "
                              f"got {shown(self.workers)}")
        if self.channels not in (None, 1, 3):
            raise ConfigError(f"channels must be 1 or 3, got {shown(self.channels)}")
        if self.image_size is not None:
            check_range("image size", self.image_size, 8, MAX_IMAGE_SIZE, hint=" px")
        for field_name in ("seed", "label_seed", "shift_seed"):
            check_range(f"--{field_name.replace('_', '-')}", getattr(self, field_name), 0, MAX_SEED)
        if self.labels_per_class is not None and self.label_fraction is not None:
            raise ConfigError("give --labels-per-class or --label-fraction, not both")
        if self.label_fraction is not None and not within(self.label_fraction, 0, 1, above=True):
            raise ConfigError(f"--label-fraction must be in (0, 1], e.g. 0.02 for 2 %, "
                              f"got {shown(self.label_fraction)}")
        check_range("--labeled-share (labelled images per batch)", self.labeled_share, 0, 1, above=True, below=True)
        if self.unlabeled_dir is not None and self.name not in ("imagefolder", "imagenet"):
            raise ConfigError("--unlabeled-dir is for imagefolder data; for built-in datasets use --labels-per-class N "
                              "(the other training images become unlabelled)")
        if self.shift is not None and self.name in ("imagefolder", "imagenet"):
            raise ConfigError("--shift is for built-in datasets (whose images are held in memory): an image folder "
                              "holds the device's own images; photograph them with that camera")
        if self.shift is not None:
            from compress.data.shift import SHIFTS, get_shift

            if not isinstance(self.shift, str):
                raise ConfigError(f"shift must be one of {', '.join(SHIFTS.names())}, got {shown(self.shift)}")
            get_shift(self.shift)  # an unknown name fails here, listing the known ones
        if self.name == "synthetic":
            self._validate_synthetic()

    def _validate_synthetic(self) -> None:
        """Synthetic images are made in memory at once: bound what they take."""
        if not all(within(n, 1, MAX_COUNT) for n in self.synthetic_size):
            raise ConfigError(f"synthetic-size must be two image counts (train, val) of at least 1, "
                              f"got {shown(self.synthetic_size)}")
        info = DATASETS.get(self.name)
        side = self.image_size or info.image_size
        needed = sum(self.synthetic_size) * info.channels * side * side
        if needed > MAX_SYNTHETIC_BYTES:
            raise ConfigError(f"synthetic data of {sum(self.synthetic_size)} images of {side} px needs "
                              f"{needed / 2**30:.1f} GiB (at most {MAX_SYNTHETIC_BYTES / 2**30:.0f}): use fewer or "
                              "smaller images")

__all__ = ["DATASETS", "MAX_SYNTHETIC_BYTES", "DataConfig", "DatasetInfo"]
