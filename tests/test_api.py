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
TEACHER = ROOT / "compress" / "weights" / "fashion-mnist-resnet20.safetensors"
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


class Halves(torch.utils.data.Dataset):
    """A user's own tiny dataset: 16x16 grey uint8 images, bright on the left (class 0) or the right (1)."""

    def __init__(self, n: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.labels = rng.integers(0, 2, n)
        self.images = rng.integers(0, 60, (n, 16, 16)).astype(np.uint8)
        for image, label in zip(self.images, self.labels):
            image[:, 8:] += 150 if label else 0
            image[:, :8] += 0 if label else 150

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        return self.images[i], int(self.labels[i])


def test_own_datasets_through_distill_export_and_validate(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    train, val = Halves(128, 0), Halves(48, 1)
    result = compress.distill(compress.model(make_net), [], (train, val), method="none", out=tmp_path / "s",
                              epochs=1, batch_size=32, num_classes=10, device="cpu")
    from compress.record import CheckpointRecord

    record = CheckpointRecord.read(result.out_dir / "model.safetensors")
    pixels = train.images / 255
    assert record.preprocessing.mean == pytest.approx((pixels.mean(),), abs=1e-4)  # measured on the training set
    assert record.preprocessing.std == pytest.approx((pixels.std(),), abs=1e-4)
    assert (record.preprocessing.image_size, record.run.data["name"]) == (16, "custom")

    with pytest.raises(ConfigError, match=r"trained on data given from Python \('custom'\).*pass calibration="):
        compress.export(result.out_dir, tmp_path / "nope", model_factory=make_net)
    summary = compress.export(result.out_dir, tmp_path / "export", ("onnx", "int8"), model_factory=make_net,
                              calibration=val)  # one dataset: parity and calibration images
    assert summary["dataset"] == "custom" and summary["parity"]["ok"] and summary["parity"]["n"] == 48
    assert summary["int8"]["n"] == 48 and summary["int8"]["agreement"] >= 0.9

    loader = torch.utils.data.DataLoader(val, batch_size=16)  # a DataLoader; normalised as the checkpoint records
    report = compress.validate({"student": result.out_dir, "onnx": summary["files"]["model.onnx"]}, loader,
                               measure_latency=False, model_factory=make_net)
    assert report.data["samples"] == 48 and report.data["preprocessing"]["mean"] == list(record.preprocessing.mean)
    assert report.stages["onnx"].accuracy.agreement == 100.0
    assert report.stages["student"].accuracy.top1 == pytest.approx(result.last_top1)


def test_normalised_float_data_records_the_given_preprocessing(tmp_path: Path) -> None:
    class Normalised(Halves):
        def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:  # a transform that already normalised
            return (torch.from_numpy(self.images[i]).float() / 255 - 0.4) / 0.3, int(self.labels[i])

    data = (Normalised(64, 0), Normalised(32, 1))
    with pytest.raises(ConfigError, match="float images are used as given"):
        compress.distill(compress.model(make_net), [], data, method="none", out=tmp_path / "a", epochs=1,
                         num_classes=10, device="cpu")
    result = compress.distill(compress.model(make_net), [], data, method="none", out=tmp_path / "b", epochs=1,
                              batch_size=32, num_classes=10, device="cpu",
                              preprocessing={"mean": [0.4], "std": [0.3]})
    from compress.record import CheckpointRecord

    pre = CheckpointRecord.read(result.out_dir / "model.safetensors").preprocessing
    assert (pre.mean, pre.std, pre.image_size, pre.channels) == ((0.4,), (0.3,), 16, 1)
