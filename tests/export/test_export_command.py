from __future__ import annotations

import sys

import pytest
import torch

from compress.artifacts import read_sidecar
from compress.deployable import save_deployable
from compress.errors import ConfigError, MissingDependency
from compress.export.command import export_command
from compress.export.onnx import OnnxOptions
from compress.export.int8 import Int8Options
from compress.export.tensorrt import TensorRTOptions
from compress.models import create_model


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, preprocessing, val_images, calibrate_bn):
    torch.manual_seed(0)
    model = calibrate_bn(create_model("resnet8", num_classes=10, in_channels=1, image_size=28), val_images[0][:64])
    path = tmp_path_factory.mktemp("ckpt") / "student.safetensors"
    save_deployable(path, model, preprocessing, meta={"data": {"name": "fashion-mnist"}})
    return path


def test_export_onnx_and_int8(checkpoint, tmp_path):
    out = tmp_path / "out"
    summary = export_command(checkpoint, out, ["onnx", "int8"], {"onnx": OnnxOptions(parity_images=32),
                             "int8": Int8Options(calibration=64, eval_images=200)}, progress=False)
    assert summary["dataset"] == "fashion-mnist"
    assert summary["parity"]["ok"] and summary["parity"]["n"] == 32
    assert summary["int8"]["n"] == 200 and summary["int8"]["agreement"] >= 0.9
    assert sorted(p.name for p in out.iterdir()) == ["model.int8.onnx", "model.int8.onnx.json", "model.onnx",
                                                      "model.onnx.json"]
    assert read_sidecar(out / "model.onnx")["inputs"]["checkpoint"] == read_sidecar(checkpoint)["sha256"]
    assert read_sidecar(out / "model.int8.onnx")["inputs"]["onnx"] == read_sidecar(out / "model.onnx")["sha256"]


def test_missing_tensorrt_fails_before_any_work(checkpoint, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    out = tmp_path / "out"
    with pytest.raises(MissingDependency, match=r"pip install 'compress-edge\[trt\]'"):
        export_command(checkpoint, out, ["onnx", "tensorrt"], {"onnx": OnnxOptions(parity_images=8)}, progress=False)
    assert not out.exists()


def test_only_what_was_asked_for_is_shipped(checkpoint, tmp_path):
    """INT8 alone: the ONNX model it is built from is made and checked, but not shipped."""
    out = tmp_path / "out"
    summary = export_command(checkpoint, out, ["int8"], {"onnx": OnnxOptions(parity_images=8),
                             "int8": Int8Options(calibration=16, eval_images=32)}, progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["model.int8.onnx", "model.int8.onnx.json"]
    assert summary["parity"]["n"] == 8 and summary["int8"]["n"] == 32


def test_failure_leaves_nothing_half_written(checkpoint, tmp_path, monkeypatch):
    from dataclasses import replace

    from compress.export import tensorrt
    from compress.errors import ExportError
    from compress.export.backends import BACKENDS

    def failing_build(*args, **kwargs):
        raise ExportError("engine build failed")

    monkeypatch.setitem(BACKENDS, "tensorrt", replace(BACKENDS["tensorrt"], preflight=None))  # "installed"
    monkeypatch.setattr(tensorrt, "build_engine", failing_build)
    out = tmp_path / "out"
    with pytest.raises(ExportError, match="engine build failed"):
        export_command(checkpoint, out, ["onnx", "tensorrt"], {"onnx": OnnxOptions(parity_images=8)}, progress=False)
    assert not out.exists()  # model.onnx was exported and checked, but not shipped alone; the folder it made is gone


@pytest.mark.parametrize("build, options, message", [
    ([], {}, "nothing to export: pass --onnx, --int8, --openvino, --openvino-int8 and/or --trt"),
    (["tensorrt"], {"tensorrt": TensorRTOptions(batch=(32, 8, 1))}, "min <= opt <= max"),
    (["int8"], {"int8": Int8Options(method="kl")}, "unknown calibration method 'kl'"),
    (["onnx"], {"onnx": OnnxOptions(exporter="jit")}, "unknown exporter 'jit'"),
    (["int8"], {"int8": Int8Options(calibration=0)}, "calibration must be at least 1 image, got 0"),
    (["tflite"], {}, "unknown export backend 'tflite': choose from onnx, int8, openvino, openvino_int8, tensorrt"),
])
def test_bad_options_fail_before_any_work(checkpoint, tmp_path, build, options, message):
    with pytest.raises(ConfigError, match=message):
        export_command(checkpoint, tmp_path / "out", build, options, progress=False)
    assert not (tmp_path / "out").exists()


def test_cli_openvino_ships_the_ir_with_its_weights(checkpoint, tmp_path, capsys):
    """`--openvino --no-onnx`: the IR is built from an ONNX model that is checked but not shipped."""
    pytest.importorskip("openvino")
    import json

    import deploy
    from compress.cli import main

    out = tmp_path / "out"
    main(["export", str(checkpoint), "--no-onnx", "--openvino", "--out", str(out)])
    assert json.loads(capsys.readouterr().out) == {"model.xml": str(out / "model.xml")}
    assert sorted(p.name for p in out.iterdir()) == ["model.bin", "model.xml", "model.xml.json"]
    record = read_sidecar(out / "model.xml")
    assert record["parity"]["ok"] and record["parity"]["n"] == 256
    x = torch.zeros(2, 1, 28, 28).numpy()
    assert deploy.load(out / "model.xml").predict_logits(x).shape == (2, 10)


def test_export_refuses_images_that_would_not_fit_before_any_work(checkpoint, tmp_path, monkeypatch):
    """Issue 22: a run that would not fit the machine is refused in one line naming what bounds it."""
    from compress.export import memory

    monkeypatch.setattr(memory, "available_bytes", lambda: 550 * 2**20)
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match=r"holding 5000 validation and 9000 calibration images at 28 px needs "
                                          r"about 0\.6 GB of memory but only 0\.5 GB is available: lower "
                                          r"--calibration"):
        export_command(checkpoint, out, ["int8"], {"int8": Int8Options(calibration=9000, eval_images=5000)},
                       progress=False)
    assert not out.exists()


def test_int8_refuses_a_calibration_batch_that_would_not_fit(checkpoint, tmp_path, monkeypatch):
    from compress.export import memory

    out = tmp_path / "out"
    real = memory.available_bytes
    # enough for the images (checked first), not for 32 images' activations held three times
    monkeypatch.setattr(memory, "available_bytes", lambda: memory.MARGIN + 2**20)
    from compress.export import command

    monkeypatch.setattr(command, "images_bytes", lambda *args: 0)
    with pytest.raises(ConfigError, match=r"INT8 calibration \(entropy; \d+ MB of activations per image, batches "
                                          r"of 32\) needs about 0\.\d GB .* calibrate with --calib-method minmax"):
        export_command(checkpoint, out, ["int8"], {"int8": Int8Options(calibration=16, eval_images=32,
                                                                       method="entropy")}, progress=False)
    assert not out.exists() and real() is not None
