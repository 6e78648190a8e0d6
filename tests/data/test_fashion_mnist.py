import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from compress.data import DataConfig, load_data
from compress.data.idx import read_idx
from compress.data.loaders import Augment, random_crop_flip
from compress.data.sources import load_fashion_mnist
from compress.errors import ConfigError, DataError


def test_real_files_shapes_labels_and_pixel_statistics(fmnist_available: Path) -> None:
    splits = load_fashion_mnist(None, download=False)
    train, val = splits["train"], splits["val"]
    assert train.images.shape == (60000, 1, 28, 28) and val.images.shape == (10000, 1, 28, 28)
    assert train.images.dtype == np.uint8
    assert np.array_equal(np.bincount(train.labels), np.full(10, 6000))
    assert np.array_equal(np.bincount(val.labels), np.full(10, 1000))
    pixels = train.images.astype(np.float64) / 255
    assert abs(pixels.mean() - 0.2860) < 5e-4 and abs(pixels.std() - 0.3530) < 5e-4


def test_loader_normalises_with_recorded_statistics(fmnist_available: Path) -> None:
    bundle = load_data(DataConfig(eval_batch_size=1000, augment=False))
    x, y = next(iter(bundle.val))
    raw = torch.from_numpy(load_fashion_mnist(None, False)["val"].images[:1000]).float() / 255
    expected = (raw - 0.2860) / 0.3530
    assert torch.allclose(x, expected, atol=1e-5)
    assert bundle.preprocessing.class_names[0] == "T-shirt/top" and bundle.num_classes == 10


def test_subsets_are_deterministic_and_three_channel_repeats(fmnist_available: Path) -> None:
    a = load_data(DataConfig(train_limit=500, val_limit=200, augment=False, eval_batch_size=500))
    b = load_data(DataConfig(train_limit=500, val_limit=200, augment=False, eval_batch_size=500, channels=3, seed=7))
    assert a.train.num_samples == 500 and a.val.num_samples == 200
    xa, ya = next(iter(a.val))
    xb, yb = next(iter(b.val))
    assert torch.equal(ya, yb) and xb.shape == (200, 3, 28, 28)
    assert torch.allclose(xb[:, 0], xa[:, 0]) and torch.allclose(xb[:, 2], xa[:, 0])


def test_epoch_order_depends_only_on_seed_and_epoch(fmnist_available: Path) -> None:
    cfg = DataConfig(train_limit=512, batch_size=128)
    first, second = load_data(cfg), load_data(cfg)
    first.train.set_epoch(3)
    second.train.set_epoch(3)
    for (x1, y1), (x2, y2) in zip(first.train, second.train):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    second.train.set_epoch(4)
    assert not torch.equal(next(iter(first.train))[1], next(iter(second.train))[1])


def test_crop_and_flip_move_pixels_but_keep_shape() -> None:
    batch = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).view(2, 1, 4, 4)
    flipped = random_crop_flip(batch, Augment(pad=0, flip=True), torch.Generator().manual_seed(1))
    for i in range(2):
        assert torch.equal(flipped[i], batch[i]) or torch.equal(flipped[i], batch[i].flip(2))
    cropped = random_crop_flip(batch, Augment(pad=1, flip=False), torch.Generator().manual_seed(0))
    assert cropped.shape == batch.shape
    # every crop is a shifted window of the zero-padded image
    padded = torch.nn.functional.pad(batch, (1, 1, 1, 1))
    for i in range(2):
        assert any(torch.equal(cropped[i], padded[i, :, dy:dy + 4, dx:dx + 4]) for dy in range(3) for dx in range(3))


def test_truncated_idx_file_is_reported(tmp_path: Path, fmnist_available: Path) -> None:
    data = gzip.open(fmnist_available / "t10k-labels-idx1-ubyte.gz").read()
    broken = tmp_path / "t10k-labels-idx1-ubyte.gz"
    broken.write_bytes(gzip.compress(data[:-10]))
    with pytest.raises(DataError, match="truncated"):
        read_idx(broken)
    (tmp_path / "junk.gz").write_bytes(gzip.compress(b"hello world"))
    with pytest.raises(DataError, match="not an IDX file"):
        read_idx(tmp_path / "junk.gz")


def test_missing_dataset_names_the_package(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        load_data(DataConfig(data_dir=str(tmp_path)))


@pytest.mark.parametrize("field,value,message", [("batch_size", 0, "batch-size must be at least 1"),
                                                 ("train_limit", -5, "--train-limit must be at least 1"),
                                                 ("channels", 2, "channels must be 1 or 3"),
                                                 ("workers", -1, r"--workers must be 0 or more \(0 decodes")])
def test_bad_numbers(field: str, value: int, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_data(DataConfig(**{field: value}))
