"""A loader told to start after k batches yields what an uninterrupted pass yields from batch k + 1 on,
augmentation included (issue 22: a run resumed in the middle of an epoch sees the same batches)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from compress.data import DataConfig, load_data
from compress.data.labels import UNLABELED
from compress.data.loaders import Augment, TensorLoader
from compress.data.preprocessing import Preprocessing
from tests.data.test_image_folder import make_folder

PRE = Preprocessing(mean=(0.5,), std=(0.25,), image_size=8, channels=1, source_channels=1)


def _tensor_loader(**kwargs: object) -> TensorLoader:
    images = torch.randint(0, 256, (50, 1, 8, 8), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    labels = torch.arange(50) % 5
    if kwargs:  # partly labelled: every other image unlabelled
        labels[1::2] = UNLABELED
    return TensorLoader(images, labels, 8, PRE, shuffle=True, augment=Augment(pad=2, flip=True), seed=4,
                        **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("kwargs", [{}, {"labeled_share": 0.5}])
def test_tensor_loader_starts_mid_epoch_with_the_same_batches(kwargs: dict) -> None:
    loader = _tensor_loader(**kwargs)
    loader.set_epoch(2)
    whole = list(loader)
    loader.start_at(3)
    rest = list(loader)
    assert len(rest) == len(whole) - 3 and len(rest) > 0
    for (a, y), (b, z) in zip(whole[3:], rest):
        assert torch.equal(a, b) and torch.equal(y, z)
    assert len(list(loader)) == len(whole)  # start_at holds for one pass only


def test_folder_loader_starts_mid_epoch_with_the_same_batches(tmp_path: Path) -> None:
    root = make_folder(tmp_path, per_class=6)
    for workers in (0, 2):
        cfg = DataConfig(name="imagefolder", data_dir=str(root), image_size=16, batch_size=4, workers=workers, seed=3)
        data = load_data(cfg)
        data.train.set_epoch(1)
        torch.manual_seed(11)  # without workers the transforms draw from the global RNG
        whole = list(data.train)
        saved_rng = _rng_after_batches(cfg, 2)
        fresh = load_data(cfg)  # a resumed process: a new loader, the RNG restored from the saved state
        fresh.train.set_epoch(1)
        torch.set_rng_state(saved_rng)
        fresh.train.start_at(2)
        rest = list(fresh.train)
        assert len(rest) == len(whole) - 2, workers
        for (a, y), (b, z) in zip(whole[2:], rest):
            assert torch.equal(a, b) and torch.equal(y, z), workers


def _rng_after_batches(cfg: DataConfig, batches: int) -> torch.Tensor:
    """The global RNG as a run saves it after ``batches`` steps of epoch 2 (no training draws here)."""
    data = load_data(cfg)
    data.train.set_epoch(1)
    torch.manual_seed(11)
    loader = iter(data.train)
    for _ in range(batches):
        next(loader)
    return torch.get_rng_state()
