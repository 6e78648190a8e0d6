"""ImageFolder (ImageNet-style) data: workers hand over uint8, the adapter normalises on the device."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from compress.data import DataConfig, load_data

CLASSES = ("cat", "dog", "eel")


def make_folder(root: Path, per_class: int = 4, size: tuple[int, int] = (40, 30)) -> Path:
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for name in CLASSES:
            (root / split / name).mkdir(parents=True)
            for i in range(per_class):
                pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{i}.png")  # lossless: exact pixels
    return root


def reference_val_batch(root: Path, size: int, resize: int, mean, std, grey: bool) -> torch.Tensor:
    """torchvision's usual float pipeline, written out: resize, centre crop, ToTensor, Normalize."""
    from torchvision import datasets, transforms

    steps = [transforms.Resize(resize), transforms.CenterCrop(size)] + ([transforms.Grayscale(1)] if grey else [])
    ds = datasets.ImageFolder(str(root / "val"), transforms.Compose(
        steps + [transforms.ToTensor(), transforms.Normalize(mean, std)]))
    return torch.stack([ds[i][0] for i in range(len(ds))])


@pytest.mark.parametrize("channels", [3, 1])
def test_validation_images_equal_the_float_pipeline(tmp_path: Path, channels: int) -> None:
    root = make_folder(tmp_path)
    data = load_data(DataConfig(name="imagefolder", data_dir=str(root), image_size=16, channels=channels,
                                batch_size=4, eval_batch_size=5, workers=0))
    assert data.num_classes == 3 and data.preprocessing.class_names == CLASSES
    assert data.preprocessing.channels == channels
    images, labels = zip(*data.val)
    got, labels = torch.cat(images), torch.cat(labels)
    assert got.dtype == torch.float32 and got.shape == (12, channels, 16, 16)
    assert labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    pre = data.preprocessing
    expected = reference_val_batch(root, 16, pre.resize_size, pre.mean, pre.std, grey=channels == 1)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_training_batches_are_augmented_uint8_normalised_and_reproducible(tmp_path: Path) -> None:
    root = make_folder(tmp_path)
    cfg = DataConfig(name="imagefolder", data_dir=str(root), image_size=16, batch_size=4, workers=2, seed=3)
    data = load_data(cfg, channels_last=True)
    assert data.train.loader.num_workers == 2 and data.train.loader.persistent_workers
    epoch = []
    for images, labels in data.train:
        assert images.dtype == torch.float32 and images.is_contiguous(memory_format=torch.channels_last)
        epoch.append((images, labels))
    assert len(epoch) == 3 and sum(len(y) for _, y in epoch) == 12
    pre = data.preprocessing
    low = (0 - max(pre.mean)) / min(pre.std)
    high = (1 - min(pre.mean)) / min(pre.std)
    assert all(low - 1e-5 <= x.min() and x.max() <= high + 1e-5 for x, _ in epoch)
    again = load_data(cfg, channels_last=True)
    for (a, y), (b, z) in zip(epoch, again.train):  # same seed, same epoch: same crops, flips and order
        assert torch.equal(a, b) and torch.equal(y, z)
    data.train.set_epoch(1)
    assert not all(torch.equal(a, b) for (a, _), (b, _) in zip(epoch, data.train))


def test_two_ranks_split_each_epoch(tmp_path: Path) -> None:
    root = make_folder(tmp_path)
    seen = []
    for rank in (0, 1):
        data = load_data(DataConfig(name="imagefolder", data_dir=str(root), image_size=16, batch_size=4, workers=0,
                                    augment=False), rank=rank, world_size=2)
        batches = list(data.train)
        assert all(len(y) == 2 for _, y in batches)  # batch size is the global batch
        seen.append(torch.cat([x.flatten(1) for x, _ in batches]))
    both = torch.cat(seen)
    assert len(both) == 12 and len(torch.unique(both, dim=0)) == 12  # disjoint halves, every image once


def test_unlabelled_folder_and_few_labels_mix_into_every_batch(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "data", per_class=4)
    extra = tmp_path / "unlabeled" / "camera" / "day1"  # any depth, no class structure
    extra.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for i in range(12):
        Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(extra / f"{i}.jpg")
    (extra / "notes.txt").write_text("not an image")
    cfg = DataConfig(name="imagefolder", data_dir=str(root), unlabeled_dir=str(tmp_path / "unlabeled"),
                     labels_per_class=2, labeled_share=0.25, image_size=16, batch_size=8, workers=0)
    data = load_data(cfg)
    assert data.train.num_samples == 12 + 12 and len(data.train) == 24 // 8
    for images, labels in data.train:  # 2 labelled images per batch of 8, the rest hidden or from the folder
        assert images.shape == (8, 3, 16, 16)
        assert (labels[:2] >= 0).all() and (labels[2:] == -1).all()
    only = data.train_for(uses_unlabeled=False)
    seen = torch.cat([labels for _, labels in only])
    assert len(only) == 3 and (seen >= 0).all()
    assert sorted(set(seen.tolist())) == [0, 1, 2] and len(seen) == 24  # the 6 labelled images, cycled
    data.train.set_epoch(1)
    first = [labels for _, labels in data.train]
    data.train.set_epoch(1)
    assert all(torch.equal(a, b) for a, b in zip(first, [labels for _, labels in data.train]))  # reproducible


def test_an_unlabelled_folder_without_images_is_one_line(tmp_path: Path) -> None:
    from compress.errors import DataError

    root = make_folder(tmp_path / "data", per_class=1)
    (tmp_path / "empty").mkdir()
    cfg = DataConfig(name="imagefolder", data_dir=str(root), unlabeled_dir=str(tmp_path / "empty"), workers=0)
    with pytest.raises(DataError, match="holds no images"):
        load_data(cfg)
    cfg.unlabeled_dir = str(tmp_path / "missing")
    with pytest.raises(DataError, match="does not exist"):
        load_data(cfg)
