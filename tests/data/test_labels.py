"""Partly labelled data: which images keep labels, how batches mix them, and that hidden labels stay hidden."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from compress.data import DataConfig, load_data, sources
from compress.data.labels import UNLABELED, epoch_batches, labeled_ce, labeled_subset
from compress.errors import ConfigError


def partly(**kw: object) -> DataConfig:
    base: dict = dict(batch_size=64, train_limit=3000, val_limit=500, labels_per_class=20)
    return DataConfig(**{**base, **kw})


def test_labeled_subset_is_class_balanced_and_reproducible_from_its_seed() -> None:
    labels = np.random.default_rng(5).integers(0, 10, 5000)
    keep = labeled_subset(labels, 10, per_class=7, seed=3)
    assert np.bincount(labels[keep], minlength=10).tolist() == [7] * 10
    assert np.array_equal(keep, labeled_subset(labels, 10, per_class=7, seed=3))
    assert not np.array_equal(keep, labeled_subset(labels, 10, per_class=7, seed=4))
    by_fraction = labeled_subset(labels, 10, fraction=0.1, seed=0)
    counts = np.bincount(labels, minlength=10)
    assert np.bincount(labels[by_fraction], minlength=10).tolist() == [round(0.1 * c) for c in counts]
    with pytest.raises(ConfigError, match="more than class 0 has"):
        labeled_subset(labels, 10, per_class=10_000)


def test_batches_mix_a_fixed_share_of_labelled_images_and_labels_only_batches_are_all_labelled(
        fmnist_available: Path) -> None:
    data = load_data(partly(labeled_share=0.25))
    train = data.train
    assert (train.labels >= 0).sum() == 200 and len(train) == 3000 // 64
    for images, labels in train:
        assert images.shape == (64, 1, 28, 28)
        assert (labels[:16] >= 0).all() and (labels[16:] == UNLABELED).all()
    only = data.train_for(uses_unlabeled=False)
    assert len(only) == len(train)  # the same steps for the student alone
    seen = torch.cat([labels for _, labels in only])
    assert (seen >= 0).all() and len(seen) == len(train) * 64
    assert data.train_for(uses_unlabeled=True) is train


def test_epoch_batches_cycle_through_the_labelled_pool_before_repeating() -> None:
    labeled, unlabeled = torch.arange(10), torch.arange(10, 100)
    g = torch.Generator().manual_seed(0)
    batches = list(epoch_batches(labeled, unlabeled, 8, steps=10, per_batch=2, use_unlabeled=True, generator=g))
    drawn = torch.cat([b[:2] for b in batches])
    assert sorted(drawn[:10].tolist()) == list(range(10)) and sorted(drawn[10:].tolist()) == list(range(10))
    rest = torch.cat([b[2:] for b in batches])
    assert len(set(rest.tolist())) == 60 and rest.min() >= 10  # no unlabelled image twice within one pass


def test_the_labelled_subset_is_the_same_on_every_rank_and_ranks_split_each_batch(fmnist_available: Path) -> None:
    whole = load_data(partly())
    ranks = [load_data(partly(), rank=r, world_size=2) for r in (0, 1)]
    assert torch.equal(ranks[0].train.labels, whole.train.labels) and torch.equal(ranks[1].train.labels, whole.train.labels)
    for (x, y), (x0, y0), (x1, y1) in zip(whole.train, ranks[0].train, ranks[1].train):
        assert torch.equal(x0, x[0::2]) and torch.equal(x1, x[1::2])
        assert torch.equal(y0, y[0::2]) and torch.equal(y1, y[1::2])


def test_a_hidden_label_is_never_read(fmnist_available: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Replace every label the data hides with an invalid class (999): batches and training are unchanged."""
    from compress.distill import DistillConfig, build_method
    from compress.models import create_model
    from compress.step import make_optimizer, train_step

    def run(data: object) -> list[torch.Tensor]:
        torch.manual_seed(0)
        teacher, student = create_model("resnet8", 10, 1), create_model("resnet8", 10, 1)
        method = build_method(DistillConfig(method="kd"), student, [teacher])
        opt = make_optimizer(method, lr=0.05, momentum=0.9, weight_decay=5e-4)
        batches = []
        for step, (x, y) in enumerate(data.train):  # type: ignore[attr-defined]
            batches += [x, y]
            train_step(method, opt, x, y, 0.05)
            if step == 2:
                break
        return batches + [p.detach().clone() for p in method.parameters()]

    honest = run(load_data(partly()))
    real = sources.load_fashion_mnist
    poisoned_count = []

    def poisoned(data_dir: str | None, download: bool) -> dict:
        splits = real(data_dir, download)
        train = splits["train"]
        # load_data's train_limit keeps these 3000 images (a fixed permutation), then hides all but 20 per class
        chosen = np.sort(np.random.default_rng(0).permutation(len(train.labels))[:3000])
        hidden = np.ones(3000, dtype=bool)
        hidden[labeled_subset(train.labels[chosen], 10, per_class=20, seed=0)] = False
        labels = train.labels.copy()
        labels[chosen[hidden]] = 999
        poisoned_count.append(int(hidden.sum()))
        return {**splits, "train": sources.ArraySplit(train.images, labels)}

    monkeypatch.setattr(sources, "load_fashion_mnist", poisoned)
    again = run(load_data(partly()))
    assert poisoned_count == [2800]
    assert all(torch.equal(a, b) for a, b in zip(honest, again))


def test_labeled_ce_averages_over_labelled_images_whatever_the_hidden_labels_hold() -> None:
    torch.manual_seed(0)
    logits = torch.randn(6, 4, requires_grad=True)
    labels = torch.tensor([1, UNLABELED, 3, UNLABELED, 0, 2])
    expected = F.cross_entropy(logits[[0, 2, 4, 5]], labels[[0, 2, 4, 5]])
    assert torch.allclose(labeled_ce(logits, labels), expected)
    assert torch.equal(labeled_ce(logits, labels), labeled_ce(logits, torch.tensor([1, -7, 3, -100, 0, 2])))
    smoothed = F.cross_entropy(logits[[0, 2, 4, 5]], labels[[0, 2, 4, 5]], label_smoothing=0.1)
    assert torch.allclose(labeled_ce(logits, labels, 0.1), smoothed)
    none = labeled_ce(logits, torch.full((6,), UNLABELED))
    none.backward()
    assert none.item() == 0.0 and torch.equal(logits.grad, torch.zeros_like(logits))


@pytest.mark.parametrize("kwargs, message", [
    ({"labels_per_class": 5, "label_fraction": 0.1}, "not both"),
    ({"labels_per_class": 0}, "at least 1"),
    ({"label_fraction": 1.5}, r"in \(0, 1\]"),
    ({"labeled_share": 1.0}, r"labeled-share"),
    ({"unlabeled_dir": "/tmp"}, "for imagefolder data"),
])
def test_bad_label_settings_are_refused_in_one_line(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        DataConfig(**kwargs).validate()
