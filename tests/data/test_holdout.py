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


def _paths(dataset: torch.utils.data.Dataset) -> list[str]:
    """The files behind a (Subset of an) image folder, or of its labelled part (HiddenLabels in a ConcatDataset)."""
    while not hasattr(dataset, "samples"):
        indices = getattr(dataset, "indices", None)
        inner = getattr(dataset, "dataset", None) or dataset.datasets[0]  # type: ignore[attr-defined]
        if indices is not None:
            return [_paths(inner)[i] for i in indices]
        dataset = inner
    return [path for path, _ in dataset.samples]  # type: ignore[attr-defined]


def test_an_image_folder_holds_out_training_files_read_like_val(tmp_path: Path) -> None:
    from tests.data.test_image_folder import make_folder

    root = make_folder(tmp_path / "data", per_class=6)
    cfg = DataConfig(name="imagefolder", data_dir=str(root), image_size=16, batch_size=4, workers=0,
                     labels_per_class=4, holdout_per_class=1)
    data = load_data(cfg)
    assert data.test is not None
    held = _paths(data.val.loader.dataset)  # type: ignore[attr-defined]
    train = _paths(data.train.loader.dataset)  # type: ignore[attr-defined]
    test = _paths(data.test.loader.dataset)  # type: ignore[attr-defined]
    assert len(held) == 3 and len(train) == 15 and len(test) == 18
    assert all("/train/" in p for p in held + train) and all("/val/" in p for p in test)
    assert not set(held) & set(train)
    dataset = data.train.loader.dataset  # type: ignore[attr-defined]
    labels = [dataset[i][1] for i in range(len(dataset))]
    assert sorted(label for label in labels if label >= 0) == [0, 0, 0, 1, 1, 1, 2, 2, 2]  # 4 labelled, 1 held out
    first = torch.cat([x for x, _ in data.val])
    assert torch.equal(first, torch.cat([x for x, _ in data.val]))  # un-augmented: the same pixels every pass
    whole = load_data(DataConfig(name="imagefolder", data_dir=str(root), image_size=16, batch_size=4, workers=0,
                                 labels_per_class=4))
    every = whole.train.loader.dataset  # type: ignore[attr-defined]
    labelled = {path for i, path in enumerate(_paths(every)) if every[i][1] >= 0}
    assert len(labelled) == 12 and set(held) <= labelled  # held out of the labels the same label_seed gives


def test_a_shift_of_an_image_folder_is_refused_in_one_line() -> None:
    with pytest.raises(ConfigError, match="--shift is for built-in datasets"):
        DataConfig(name="imagefolder", data_dir="/nowhere", shift="camera").validate()


def test_the_data_record_names_a_holdout_and_a_shift_only_when_set() -> None:
    from compress.workflows import data_record

    plain = data_record(DataConfig())
    assert not {"holdout_per_class", "shift", "shift_seed", "label_seed"} & set(plain)
    record = data_record(DataConfig(holdout_per_class=20, label_seed=4, shift="camera", shift_seed=2))
    assert (record["holdout_per_class"], record["label_seed"], record["shift"], record["shift_seed"]) == (20, 4, "camera", 2)


@pytest.mark.parametrize("given", [{"holdout_per_class": 2}, {"shift": "camera"}])
def test_data_from_python_refuses_a_holdout_and_a_shift_in_one_line(given: dict) -> None:
    from compress.data.user import UserData

    with pytest.raises(ConfigError, match="holdout_per_class and shift are for named datasets; with data from Python"):
        UserData(train=[(torch.zeros(1, 8, 8, dtype=torch.uint8), 0)], **given).validate()
