"""ATSC under the project's training loop on real data (a Fashion-MNIST subset, one short epoch)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from compress.deployable import load_deployable
from compress.distill import DistillConfig, SharedHeadStudent, build_method
from compress.errors import DataError
from compress.models import create_model
from compress.train import TrainConfig, fit


def _tiny_fashion_mnist() -> Any:
    """128 training and 64 validation images of Fashion-MNIST (the test is skipped without the package)."""
    from compress.data import DataConfig, load_data

    try:
        return load_data(DataConfig(name="fashion-mnist", train_limit=128, val_limit=64, batch_size=32,
                                    eval_batch_size=64))
    except DataError as exc:
        pytest.skip(f"Fashion-MNIST not installed: {exc}")


def test_atsc_fits_logs_the_teacher_and_saves_student_and_teacher(tmp_path: Path) -> None:
    data = _tiny_fashion_mnist()
    torch.manual_seed(0)
    student = create_model("resnet8", 10, 1, data.image_size)
    teacher = create_model("resnet8", 10, 1, data.image_size)
    method = build_method(DistillConfig(), student, [teacher], image_size=data.image_size)
    result = fit(method, data, TrainConfig(epochs=1, lr=0.05, device="cpu"), tmp_path, progress=False, log=lambda m: None)
    row = result.history[-1]
    for key in ("teacher_top1", "teacher_top1_start", "teacher_kept", "teacher_drift", "feature_mse",
                "loss_mse", "loss_anchor", "loss_teacher_ce", "loss_bias_ce"):
        assert key in row, key
    assert row["teacher_drift"] > 0
    student_module, _, record = load_deployable(tmp_path / "model.safetensors")
    assert isinstance(student_module, SharedHeadStudent) and record.architecture["type"] == "shared_head"
    teacher_module, _, _ = load_deployable(tmp_path / "teacher.safetensors")
    x = torch.randn(4, 1, data.image_size, data.image_size)
    method.eval()
    with torch.no_grad():
        torch.testing.assert_close(student_module(x), method.deployable()(x))
        torch.testing.assert_close(teacher_module(x), method.teachers[0](x))


@pytest.mark.parametrize("settings, saves_teacher", [({"teacher_adapt": "none"}, False), ({"teacher_adapt": "bn"}, True),
                                                     ({"teacher_every": 3}, True)])
def test_adaptation_variants_fit_and_monitor_the_teacher(tmp_path: Path, settings: dict, saves_teacher: bool) -> None:
    data = _tiny_fashion_mnist()
    torch.manual_seed(0)
    student, teacher = (create_model("resnet8", 10, 1, data.image_size) for _ in range(2))
    method = build_method(DistillConfig(**settings), student, [teacher], image_size=data.image_size)
    result = fit(method, data, TrainConfig(epochs=1, lr=0.05, device="cpu"), tmp_path, progress=False, log=lambda m: None)
    row = result.history[-1]
    assert (row["teacher_drift"] > 0) == ("teacher_every" in settings)  # weights move only where they adapt
    if settings == {"teacher_adapt": "none"}:
        assert row["teacher_top1"] == row["teacher_top1_start"]  # the teacher as loaded
    assert ("loss_teacher_ce" in row) == ("teacher_every" in settings) and row["loss_mse"] > 0
    assert (tmp_path / "teacher.safetensors").exists() == saves_teacher
