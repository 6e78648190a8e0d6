"""A validation split held out of the training images: disjoint from training and test, the same on every rank."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from compress.data import DataConfig, load_data
from compress.data.labels import UNLABELED, holdout_subset
from compress.errors import ConfigError


def synthetic(**kw: object) -> DataConfig:
    """Random pixels: no two images alike, so an image's bytes name it."""
    base: dict = dict(name="synthetic", synthetic_size=(1500, 300), batch_size=64, augment=False, holdout_per_class=12)
    return DataConfig(**{**base, **kw})


def _rows(images: torch.Tensor) -> set[bytes]:
    return {image.numpy().tobytes() for image in images}


@pytest.mark.parametrize("labels", [{}, {"labels_per_class": 40}, {"label_fraction": 0.2}])
def test_the_validation_split_never_overlaps_training_or_test_images(labels: dict) -> None:
    data = load_data(synthetic(**labels))
    assert data.test is not None
    train, val, test = _rows(data.train.images), _rows(data.val.images), _rows(data.test.images)
    assert len(train) == 1500 - 120 and len(val) == 120 and len(test) == 300  # all distinct
    assert not train & val and not val & test and not train & test
    assert data.val.labels.bincount(minlength=10).tolist() == [12] * 10
    whole = load_data(synthetic(holdout_per_class=None, **labels))  # the same images without a holdout
    assert _rows(whole.train.images) == train | val and _rows(whole.val.images) == test


def test_in_a_few_label_regime_the_holdout_comes_from_the_labelled_images(fmnist_available: Path) -> None:
    cfg = DataConfig(train_limit=3000, val_limit=500, labels_per_class=30, holdout_per_class=10, augment=False)
    data = load_data(cfg)
    labels = data.train.labels.numpy()
    assert np.bincount(labels[labels >= 0], minlength=10).tolist() == [20] * 10  # 30 labelled, 10 held out
    assert (labels == UNLABELED).sum() == 3000 - 300 and data.train.num_samples == 2900
    assert data.val.labels.bincount(minlength=10).tolist() == [10] * 10
    assert data.test is not None and data.test.num_samples == 500
    # the held-out images are among the 30 labelled per class the same label_seed gives without a holdout
    labelled = load_data(DataConfig(train_limit=3000, val_limit=500, labels_per_class=30, augment=False)).train
    known = labelled.images[labelled.labels >= 0]
    assert _rows(data.val.images) <= _rows(known)
    assert _rows(data.train.images[data.train.labels >= 0]) == _rows(known) - _rows(data.val.images)


def test_the_holdout_is_the_same_on_every_rank(fmnist_available: Path) -> None:
    cfg = DataConfig(train_limit=2000, val_limit=200, labels_per_class=25, holdout_per_class=5, augment=False)
    whole = load_data(cfg)
    for rank in (0, 1):
        part = load_data(cfg, rank=rank, world_size=2)
        assert torch.equal(part.val.images, whole.val.images) and torch.equal(part.val.labels, whole.val.labels)
        assert torch.equal(part.train.images, whole.train.images)
        assert torch.equal(part.train.labels, whole.train.labels)
        assert part.test is not None and whole.test is not None and torch.equal(part.test.images, whole.test.images)


def test_the_holdout_depends_on_the_labels_and_label_seed_alone() -> None:
    labels = np.random.default_rng(1).integers(0, 5, 400)
    held = holdout_subset(labels, 5, 6, seed=2)
    assert np.bincount(labels[held], minlength=5).tolist() == [6] * 5
    assert np.array_equal(held, holdout_subset(labels.copy(), 5, 6, seed=2))
    assert not np.array_equal(held, holdout_subset(labels, 5, 6, seed=3))
    pool = np.flatnonzero(np.arange(400) % 2 == 0)
    assert set(holdout_subset(labels, 5, 6, seed=2, pool=pool)) <= set(pool)


def test_without_a_holdout_the_validation_split_is_the_test_split_as_before(fmnist_available: Path) -> None:
    data = load_data(DataConfig(train_limit=1000, val_limit=300, augment=False))
    assert data.test is None and data.final is data.val
    assert data.train.num_samples == 1000 and data.val.num_samples == 300


@pytest.mark.parametrize("kwargs, message", [
    ({"holdout_per_class": 0}, "--holdout-per-class must be at least 1"),
    ({"holdout_per_class": 150}, r"--holdout-per-class 150 leaves no training images of class \d to train on \(it has 1\d\d\)"),
    ({"holdout_per_class": 40, "labels_per_class": 40},
     r"--holdout-per-class 40 leaves no labelled images of class 0 to train on \(it has 40\): lower it or raise --labels-per-class"),
])
def test_a_holdout_larger_than_a_class_is_refused_in_one_line(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_data(synthetic(**kwargs))


def test_image_folders_refuse_a_holdout_in_one_line() -> None:
    with pytest.raises(ConfigError, match="--holdout-per-class is for built-in datasets: an image folder's val/"):
        DataConfig(name="imagefolder", data_dir="/nowhere", holdout_per_class=5).validate()


def test_the_data_record_names_a_holdout_and_a_shift_only_when_set() -> None:
    from compress.workflows import data_record

    plain = data_record(DataConfig())
    assert not {"holdout_per_class", "shift", "shift_seed", "label_seed"} & set(plain)
    record = data_record(DataConfig(holdout_per_class=20, label_seed=4, shift="camera", shift_seed=2))
    assert (record["holdout_per_class"], record["label_seed"], record["shift"], record["shift_seed"]) == (20, 4, "camera", 2)
