"""Shared fixtures: real Fashion-MNIST images and a tiny CNN trained on them for a few seconds."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from compress.data import DataConfig, load_data
from compress.data.preprocessing import Preprocessing

OUTLIER_SCALE = 1000.0


class TinyCNN(nn.Module):
    """~20k parameters: ~80 % on Fashion-MNIST after one pass over 6000 images (seconds on 2 cores)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 16, 3, 1, 1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, 1, 1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 32, 3, 1, 1, groups=32), nn.BatchNorm2d(32), nn.ReLU(),  # depthwise, as in mobilenets
            nn.Flatten(1), nn.Linear(32 * 7 * 7, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def architecture(self) -> dict[str, Any]:
        return {"type": "test-tiny-cnn"}


@pytest.fixture(scope="session")
def fmnist() -> Any:
    return load_data(DataConfig(train_limit=6000, val_limit=1000, batch_size=64, eval_batch_size=500, augment=False))


@pytest.fixture(scope="session")
def val_images(fmnist: Any) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = zip(*list(fmnist.val))
    return torch.cat(xs), torch.cat(ys)


@pytest.fixture(scope="session")
def calib_images(fmnist: Any) -> np.ndarray:
    return torch.cat([x for x, _ in list(fmnist.train)[:4]]).numpy()


@pytest.fixture(scope="session")
def preprocessing(fmnist: Any) -> Preprocessing:
    return fmnist.preprocessing


@pytest.fixture(scope="session")
def trained_tiny(fmnist: Any) -> nn.Module:
    torch.manual_seed(0)
    model = TinyCNN()
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    model.train()
    for _ in range(1):  # 93 steps of 64 images
        for x, y in fmnist.train:
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


def _calibrate_bn(model: nn.Module, images: torch.Tensor) -> nn.Module:
    """Random-init zoo models give ~1e-10 logits; real BatchNorm statistics make them O(1), so a
    parity test compares meaningful numbers instead of rounding noise."""
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(images)
        model.eval()
        # some heads (mobilenet_v3) still give ~1e-5 logits: rescale the last linear layer to unit std
        last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
        std = float(model(images).std())
        last.weight /= std
        last.bias /= std
    return model


@pytest.fixture(scope="session")
def calibrate_bn() -> Any:
    return _calibrate_bn


@pytest.fixture(scope="session")
def outlier_onnx(tmp_path_factory, trained_tiny, preprocessing) -> Path:
    """The trained tiny CNN with its first conv's channel 0 scaled up 1000x after the ReLU and the next
    conv's matching input weights scaled down 1000x: the same function in float (ReLU and max-pool
    commute with a positive scale), but channel 0 now sets the whole tensor's INT8 range, so every
    other channel rounds to zero (the outlier-channel failure of per-tensor activation quantization)."""
    from compress.export.onnx import export_onnx

    model = copy.deepcopy(trained_tiny)
    bn, conv2 = model.net[1], model.net[4]
    with torch.no_grad():
        bn.weight[0] *= OUTLIER_SCALE
        bn.bias[0] *= OUTLIER_SCALE
        conv2.weight[:, 0] /= OUTLIER_SCALE
    return export_onnx(model, preprocessing, tmp_path_factory.mktemp("outlier") / "model.onnx")


@pytest.fixture(scope="session")
def trained_checkpoint(tmp_path_factory, fmnist, preprocessing) -> Path:
    """A deployable resnet8 after one pass over 6000 images (~50 % top-1, ~10 s on one core): a model whose
    predictions mean something, for exports that compare accuracies."""
    from compress.deployable import save_deployable
    from compress.models import create_model

    torch.manual_seed(0)
    model = create_model("resnet8", num_classes=10, in_channels=1, image_size=28)
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    model.train()
    for x, y in fmnist.train:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    path = tmp_path_factory.mktemp("trained") / "model.safetensors"
    save_deployable(path, model.eval(), preprocessing, meta={"data": {"name": "fashion-mnist"}})
    return path
