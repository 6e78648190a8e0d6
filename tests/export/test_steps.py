"""The backends' step functions on a source of our own: what compress export and the pipeline both call."""

from __future__ import annotations

from pathlib import Path

import pytest

from compress.artifacts import read_sidecar
from compress.errors import ConfigError
from compress.export.base import ExportImages, ExportSource
from compress.export.onnx import OnnxOptions, onnx_step
from compress.export.int8 import Int8Options, int8_step


@pytest.fixture
def asked() -> list[tuple[int, int, int]]:
    """The (validation, calibration, channels) images each step asked the source for."""
    return []


@pytest.fixture
def source(trained_tiny, preprocessing, val_images, calib_images, tmp_path, asked) -> ExportSource:

    def images(val: int, calibration: int, channels: int) -> ExportImages:
        asked.append((val, calibration, channels))
        return ExportImages(val_images[0][:val].numpy(), val_images[1][:val].numpy(), calib_images[:calibration])

    return ExportSource(student=lambda: (trained_tiny, preprocessing), student_sha256="f" * 64, images=images,
                        built={}, options={}, cache_dir=tmp_path, full_checks=False)


def test_onnx_then_int8_steps(source: ExportSource, asked: list[tuple[int, int, int]], tmp_path: Path) -> None:
    onnx = onnx_step(source, OnnxOptions(exporter="torchscript", parity_images=16), tmp_path)
    assert onnx.artifacts == [tmp_path / "model.onnx"]
    assert onnx.checks["parity"]["n"] == 16 and onnx.checks["parity"]["ok"]
    assert onnx.summary.startswith("model.onnx, parity: max |Δlogit| ")
    assert read_sidecar(tmp_path / "model.onnx")["inputs"] == {"checkpoint": "f" * 64}

    source.built = {"onnx": onnx.artifacts[0]}
    int8 = int8_step(source, Int8Options(calibration=32, eval_images=64), tmp_path)
    assert int8.artifacts == [tmp_path / "model.int8.onnx"]
    report = int8.checks["int8"]
    assert report["n"] == 64 and report["agreement"] >= 0.9
    assert list(report["latency"]) == ["1"]  # full_checks off: the quick latency look, batch 1 only
    assert int8.summary == (f"model.int8.onnx, top-1 {report['int8_accuracy']:.2%} vs fp32 "
                            f"{report['fp32_accuracy']:.2%} on 64 images")
    # each step asked for the images its options name, at the model's channel count
    assert asked == [(16, 0, 1), (64, 32, 1)]


def test_a_step_without_what_it_is_built_from_says_so(source: ExportSource, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="built from the onnx model, which was not built"):
        int8_step(source, Int8Options(), tmp_path)
