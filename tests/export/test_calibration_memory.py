"""Calibration holds one batch of activations, not every calibration image's (issue 22, item 1).

ONNX Runtime's entropy and percentile calibrators keep every intermediate tensor of every image before they
build a histogram; that is what took a 224 px mobilenet_v2 export to 21 GB. The arrays those calibrators
get back from ONNX Runtime are numpy arrays, which ``tracemalloc`` sees, so the peak here measures them.
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import torch
from torch import nn

from compress.export.onnx import export_onnx
from compress.export.quantize import QuantConfig, quantize_int8
from compress.data.preprocessing import Preprocessing

SIZE = 16  # 16 x 16 RGB: each image carries ~20 KB of float activations through the little net below


class _Wide(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
                                 nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(16, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def architecture(self) -> dict[str, str]:
        return {"type": "test-wide"}


@pytest.fixture(scope="module")
def wide_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = _Wide().eval()
    path = tmp_path_factory.mktemp("wide") / "model.onnx"
    export_onnx(model, Preprocessing(image_size=SIZE, channels=3, source_channels=3, mean=(0.5,) * 3, std=(0.25,) * 3), path)
    return path


def _peak_bytes(model: Path, out: Path, images: np.ndarray, method: str) -> int:
    tracemalloc.start()
    try:
        quantize_int8(model, out, images, QuantConfig(method=method, batch_size=32))
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("method", ["minmax", "entropy", "percentile"])
def test_calibration_peak_does_not_grow_with_the_number_of_images(wide_model, tmp_path, method):
    rng = np.random.default_rng(0)
    few = rng.standard_normal((256, 3, SIZE, SIZE), dtype=np.float32)
    many = rng.standard_normal((2048, 3, SIZE, SIZE), dtype=np.float32)  # made before tracing: the input
    small = _peak_bytes(wide_model, tmp_path / "few.onnx", few, method)
    large = _peak_bytes(wide_model, tmp_path / "many.onnx", many, method)
    # 2048 images' activations are ~40 MB (all kept: 8x the 256-image peak); one batch's are ~0.7 MB
    assert large < 1.5 * small + 2_000_000, (method, small, large)


class _Generated:
    """Batches made on demand: the whole calibration set never exists at once."""

    def __init__(self, batches: int, batch: int = 32) -> None:
        self.batches, self.batch, self.count = batches, batch, batches * batch
        self.passes = 0

    def __len__(self) -> int:
        return self.batches

    def __iter__(self) -> Iterator[np.ndarray]:
        self.passes += 1
        rng = np.random.default_rng(1)
        for _ in range(self.batches):
            yield rng.standard_normal((self.batch, 3, SIZE, SIZE), dtype=np.float32)


def test_streamed_calibration_matches_the_same_images_in_one_array(wide_model, tmp_path):
    import onnx
    from onnx import numpy_helper

    stream = _Generated(batches=5)
    quantize_int8(wide_model, tmp_path / "stream.onnx", stream, QuantConfig(method="minmax"))
    array = np.concatenate(list(_Generated(batches=5)))
    quantize_int8(wide_model, tmp_path / "array.onnx", array, QuantConfig(method="minmax"))

    def scales(path: Path) -> dict[str, np.ndarray]:
        return {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer
                if t.name.endswith("_scale")}

    streamed, whole = scales(tmp_path / "stream.onnx"), scales(tmp_path / "array.onnx")
    assert streamed.keys() == whole.keys() and len(whole) > 2
    for name in whole:  # min/max merged batch by batch are the min/max over all images
        np.testing.assert_array_equal(streamed[name], whole[name])
    assert stream.passes == 1  # one pass over the stream, one batch at a time


def test_available_memory_is_read_from_meminfo(tmp_path):
    from compress.export.memory import available_bytes

    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24000000 kB\nMemFree:         1000 kB\nMemAvailable:   23168944 kB\n")
    assert available_bytes(meminfo) == 23168944 * 1024
    meminfo.write_text("MemTotal: 1 kB\n")
    assert available_bytes(meminfo) is None
    assert available_bytes(tmp_path / "missing") is None


def test_activation_bytes_count_every_float_tensor_of_one_image(wide_model):
    from compress.export.memory import activation_bytes

    # two convs and two ReLUs of 16 x 16 x 16 floats, then pooled (16), flattened (16) and the logits (4)
    assert activation_bytes(wide_model) == 4 * (4 * 16 * 16 * 16 + 16 + 16 + 4)


def test_check_fits_refuses_in_one_line():
    from compress.errors import ConfigError
    from compress.export.memory import GIB, check_fits

    check_fits(2 * GIB, "x", "y", available=3 * GIB)
    with pytest.raises(ConfigError, match=r"^calibration needs about 5\.0 GB of memory but only 3\.0 GB is "
                                          r"available: lower --calibration$"):
        check_fits(5 * GIB, "calibration", "lower --calibration", available=3 * GIB)


def test_calibration_batch_keeps_a_batch_of_activations_within_the_budget():
    from compress.export.memory import CALIBRATION_BUDGET, calibration_batch

    mobilenet_224 = 50 * 2**20  # bytes of activations per image (measured on the exported graph)
    assert calibration_batch(mobilenet_224, ("minmax",)) == 20
    assert calibration_batch(mobilenet_224, ("minmax", "entropy", "percentile")) == 10  # histograms: 2 copies
    assert 2 * 10 * mobilenet_224 <= CALIBRATION_BUDGET
    assert calibration_batch(20_000, ("entropy",)) == 32  # a small model: the usual batch
    assert calibration_batch(4 * CALIBRATION_BUDGET, ("minmax",)) == 1  # never less than one image
