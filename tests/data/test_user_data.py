"""The user's own Datasets/DataLoaders as a DataBundle: shapes, normalisation, the preprocessing record, errors."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from compress.data import load_data
from compress.data.user import UserData
from compress.errors import ConfigError, DataError


class Pixels(Dataset):
    """``n`` random images of ``shape`` (uint8 unless ``scale`` makes floats), labels cycling 0..classes-1."""

    def __init__(self, n: int, shape: tuple[int, ...] = (12, 12), classes: int = 3, seed: int = 0,
                 scale: float | None = None) -> None:
        rng = np.random.default_rng(seed)
        self.images = rng.integers(0, 256, (n, *shape)).astype(np.uint8)
        self.labels = np.arange(n) % classes
        self.scale = scale

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        if self.scale is not None:
            return torch.from_numpy(self.images[i]).float() * self.scale, int(self.labels[i])
        return self.images[i], int(self.labels[i])


def test_uint8_images_are_normalised_with_the_measured_mean_and_std() -> None:
    train, val = Pixels(40), Pixels(10, seed=1)
    bundle = load_data(UserData(train=train, val=val, num_classes=3, batch_size=8, eval_batch_size=4))
    pixels = train.images.astype(np.float64) / 255  # fewer than measure_images: all of them
    assert bundle.preprocessing.mean == pytest.approx((round(pixels.mean(), 4),))
    assert bundle.preprocessing.std == pytest.approx((round(pixels.std(), 4),))
    assert (bundle.image_size, bundle.preprocessing.channels, bundle.num_classes) == (12, 1, 3)
    assert bundle.preprocessing.class_names == ("0", "1", "2")
    images, labels = next(iter(bundle.val))  # in order: the first four validation images
    expected = (val.images[:4, None] / 255 - bundle.preprocessing.mean[0]) / bundle.preprocessing.std[0]
    assert images.shape == (4, 1, 12, 12) and images.dtype == torch.float32
    np.testing.assert_allclose(images.numpy(), expected, atol=1e-5)
    assert labels.tolist() == [0, 1, 2, 0]
    assert (len(bundle.train), bundle.train.num_samples) == (5, 40)  # drop_last: 40 / 8


def test_the_training_order_is_fixed_by_seed_and_epoch() -> None:
    def first_labels(epoch: int) -> list[int]:
        bundle = load_data(UserData(train=Pixels(30, classes=10), val=Pixels(5), num_classes=10, batch_size=10))
        bundle.train.set_epoch(epoch)
        return next(iter(bundle.train))[1].tolist()

    assert first_labels(0) == first_labels(0) != first_labels(1)


def test_float_images_need_their_normalisation() -> None:
    floats = Pixels(8, (3, 10, 10), scale=1 / 255)
    with pytest.raises(ConfigError, match=r"float images are used as given.*pass preprocessing=\{'mean'"):
        load_data(UserData(train=floats, val=floats, num_classes=3))
    bundle = load_data(UserData(train=floats, val=floats, num_classes=3, eval_batch_size=8,
                                preprocessing={"mean": [0, 0, 0], "std": [1, 1, 1], "resize_size": 12}))
    pre = bundle.preprocessing
    assert (pre.mean, pre.std, pre.image_size, pre.resize_size, pre.channels) == ((0.0,) * 3, (1.0,) * 3, 10, 12, 3)
    images, _ = next(iter(bundle.val))
    np.testing.assert_allclose(images.numpy(), floats.images / 255, atol=1e-6)  # used as given


def test_grey_pixels_for_an_rgb_model_and_classes_from_the_dataset() -> None:
    data = Pixels(6, (8, 8))
    data.classes = ["cat", "dog", "owl"]  # type: ignore[attr-defined]  # a torchvision-style dataset
    bundle = load_data(UserData(train=data, val=data, channels=3, preprocessing={"mean": [0.5], "std": [0.25]}))
    assert bundle.num_classes == 3 and bundle.preprocessing.class_names == ("cat", "dog", "owl")
    assert (bundle.preprocessing.mean, bundle.preprocessing.source_channels) == ((0.5,) * 3, 1)
    images, _ = next(iter(bundle.val))
    assert images.shape == (6, 3, 8, 8)
    np.testing.assert_allclose(images[:, 2].numpy(), (data.images / 255 - 0.5) / 0.25, atol=1e-5)


def test_a_dataloader_is_used_as_given_and_cut_at_its_limit() -> None:
    loader = DataLoader(Pixels(20), batch_size=6)  # default collate: N x H x W uint8 tensors
    bundle = load_data(UserData(train=loader, val=loader, num_classes=3, val_limit=8,
                                preprocessing={"mean": [0.0], "std": [1.0]}))
    sizes = [len(labels) for _, labels in bundle.val]
    assert sizes == [6, 2] and len(bundle.val) == 2 and bundle.val.num_samples == 8
    assert [len(labels) for _, labels in bundle.train] == [6, 6, 6, 2]


@pytest.mark.parametrize("data, settings, error, match", [
    (Pixels(4), {}, ConfigError, r"cannot tell how many classes.*pass num_classes=N"),
    (Pixels(4, classes=5), {"num_classes": 3}, DataError, r"label 3 is outside 0\.\.2"),
    (Pixels(4, (10, 12)), {"num_classes": 3}, DataError, r"10x12 images: models take square images"),
    (Pixels(4, (12, 12, 3)), {"num_classes": 3}, DataError, r"shape \(4, 12, 12, 3\).*permute H x W x C"),
    ([1, 2], {"num_classes": 3}, ConfigError, r"torch Datasets \(with a length\) or DataLoaders, got list"),
    (Pixels(4), {"num_classes": 3, "image_size": 16}, ConfigError, r"images are 12 px but image_size is 16"),
])
def test_bad_data_gets_one_clear_error(data: Any, settings: dict[str, Any], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        bundle = load_data(UserData(train=data, val=data, **settings))
        list(bundle.val)
