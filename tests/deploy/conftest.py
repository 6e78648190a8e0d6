"""An exported Fashion-MNIST model (ONNX + sidecar) and real images for the torch-free runtime."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from compress.data import DataConfig, load_data
from compress.data import sources
from compress.export.onnx import export_onnx
from compress.models import create_model


@pytest.fixture(scope="session")
def deploy_data() -> Any:
    return load_data(DataConfig(val_limit=64, train_limit=64, augment=False))


@pytest.fixture(scope="session")
def raw_images() -> np.ndarray:
    """The first 64 uint8 validation images, 64 x 28 x 28 (what a camera/file would give)."""
    return sources.load_fashion_mnist(None, False)["val"].images[:64, 0]


@pytest.fixture(scope="session")
def onnx_model(tmp_path_factory, deploy_data) -> Any:
    torch.manual_seed(0)
    model = create_model("resnet8", num_classes=10, in_channels=1, image_size=28)
    images = next(iter(deploy_data.val))[0]
    model.train()
    with torch.no_grad():
        model(images)  # BatchNorm statistics from real images: O(1) logits
    model.eval()
    path = export_onnx(model, deploy_data.preprocessing, tmp_path_factory.mktemp("deploy") / "model.onnx")
    return path, model
