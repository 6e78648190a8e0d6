"""Shared fixtures: real Fashion-MNIST from the Debian package, small and deterministic."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

FMNIST_DIR = Path("/usr/share/datasets/fashion-mnist")

# Two cores: let each test process use both. COMPRESS_TEST_THREADS=1 when several suites share the
# machine (oversubscribed thread pools slow everything down far more than they gain).
torch.set_num_threads(int(os.environ.get("COMPRESS_TEST_THREADS", min(2, os.cpu_count() or 1))))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    has_cuda = torch.cuda.is_available()
    try:
        import tensorrt  # noqa: F401

        has_trt = has_cuda
    except Exception:
        has_trt = False
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(pytest.mark.skip(reason="needs an NVIDIA GPU with CUDA; none on this machine"))
        if "tensorrt" in item.keywords and not has_trt:
            item.add_marker(pytest.mark.skip(reason="needs TensorRT and an NVIDIA GPU (install from NVIDIA); not available here"))


@pytest.fixture(scope="session")
def fmnist_available() -> Path:
    if not (FMNIST_DIR / "train-images-idx3-ubyte.gz").exists():
        pytest.fail("Fashion-MNIST is missing: apt-get install dataset-fashion-mnist (CI installs it)")
    return FMNIST_DIR
