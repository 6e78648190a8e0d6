"""The Python API with a user-defined nn.Module end to end: distil -> export -> validate -> deploy classify."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import compress
from compress.errors import CheckpointError, ConfigError
from compress.models.user import reference_of

ROOT = Path(__file__).resolve().parents[1]
TEACHER = ROOT / "pipelines" / "weights" / "fashion-mnist-resnet20.safetensors"
SMALL = {"epochs": 1, "train_limit": 256, "val_limit": 128, "batch_size": 64, "device": "cpu"}


class Net(nn.Module):
    """A user network whose head has a hidden layer: the split must fall before the pooling."""

    def __init__(self, num_classes: int = 10, width: int = 8) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, width, 3, 2, 1), nn.BatchNorm2d(width), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.hidden = nn.Linear(width, 16)
        self.out = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.hidden(torch.flatten(self.pool(self.body(x)), 1))))


def make_net(width: int = 8) -> Net:
    return Net(width=width)


def test_user_module_end_to_end(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from PIL import Image

    student = compress.model(make_net, width=12)
    assert student.spec.name == "python:" + reference_of(make_net) and student.spec.kwargs == {"width": 12}
    result = compress.distill(student, [str(TEACHER)], "fashion-mnist", method="simkd", out=tmp_path / "s", **SMALL)
    checkpoint = result.out_dir / "model.safetensors"
    assert checkpoint.exists() and 0 <= result.last_top1 <= 100

    with pytest.raises(CheckpointError, match=r"comes from user code '.*make_net'.*--model-factory"):
        compress.export(checkpoint, tmp_path / "nope")  # never imported from the file on its own
    summary = compress.export(checkpoint, tmp_path / "export", model_factory=make_net)
    onnx_path = Path(summary["files"]["model.onnx"])
    assert summary["parity"]["ok"] and summary["parity"]["n"] > 0 and onnx_path.exists()

    report = compress.validate({"student": checkpoint, "onnx": onnx_path}, "fashion-mnist", val_limit=64,
                               measure_latency=False, model_factory=make_net)
    assert report.reference == "student" and report.stages["onnx"].accuracy.agreement >= 98.0

    image = tmp_path / "shirt.png"
    Image.fromarray(np.full((28, 28), 200, dtype=np.uint8)).save(image)
    out = subprocess.run([sys.executable, "-m", "deploy", "classify", str(onnx_path), str(image)],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert "shirt.png" in out.stdout


def test_bare_module_teaches_but_cannot_be_saved_as_student(tmp_path: Path) -> None:
    teacher = Net()  # a plain module: cut automatically, used with its own (random) weights
    with pytest.raises(ConfigError, match=r"cannot be saved as a checkpoint: it was passed as a module; build it "
                                          r"with compress.model"):
        compress.distill(Net(), [teacher], "fashion-mnist", method="kd", out=tmp_path / "a", **SMALL)
    result = compress.distill(compress.model(make_net), [teacher], "fashion-mnist", method="kd",
                              out=tmp_path / "b", **SMALL)
    assert (result.out_dir / "model.safetensors").exists()
    assert not (tmp_path / "a" / "model.safetensors").exists()


def test_cli_export_imports_the_factory_only_when_given(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    result = compress.distill(compress.model("tests.test_api:make_net"), [str(TEACHER)], "fashion-mnist",
                              method="none", out=tmp_path / "s", **SMALL)
    run = [sys.executable, "-m", "compress", "export", str(result.out_dir)]
    refused = subprocess.run(run, capture_output=True, text=True, cwd=ROOT)
    assert refused.returncode == 1 and "pass --model-factory tests.test_api:make_net" in refused.stderr
    done = subprocess.run(run + ["--model-factory", "tests.test_api:make_net"], capture_output=True, text=True,
                          cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert (result.out_dir / "export" / "model.onnx").exists()


def test_unknown_setting_is_refused() -> None:
    with pytest.raises(ConfigError, match="no_such_setting"):
        compress.distill("resnet8", [], "fashion-mnist", method="none", out="unused", no_such_setting=1)
