"""The design card's line works: `compress distill --teacher T --student S` with a default --out, the data
said, an ImageNet teacher refused on the default data, and messages that say what is needed."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from cli_helpers import run_cli
from compress.errors import MissingDependency, UsageError
from compress.export.timing import speed_words
from compress.workflows import DEFAULT_DATA, default_data, default_out


def test_default_out_names_student_and_teacher() -> None:
    assert default_out("mobilenetv2", ["resnet50"]) == Path("runs/mobilenetv2-from-resnet50")
    assert default_out("resnet8", ["fashion-mnist-resnet20"]) == Path("runs/resnet8-from-fashion-mnist-resnet20")
    assert default_out("resnet8", ["runs/teacher/model.safetensors", "w/best.safetensors"]) == \
        Path("runs/resnet8-from-teacher+best")
    assert default_out("resnet8", ["runs/teacher"]) == Path("runs/resnet8-from-teacher")
    assert default_out("timm:resnet18", []) == Path("runs/timm-resnet18-alone")


@pytest.mark.parametrize("teachers, weights", [(["resnet50"], []), (["resnet18"], ["imagenet"]),
                                               (["torchvision:mobilenet_v2"], []),
                                               (["fashion-mnist-resnet20", "resnet50"], ["", "pretrained"])])
def test_an_imagenet_teacher_needs_data(teachers: list[str], weights: list[str]) -> None:
    with pytest.raises(UsageError, match=r"is an ImageNet model but no --data was given .* pass your images, e\.g\. "
                                         r"--data imagefolder --data-dir DIR"):
        default_data(teachers, weights)


def test_fashion_mnist_teachers_keep_the_default() -> None:
    assert default_data(["fashion-mnist-resnet20"], []) == DEFAULT_DATA
    assert default_data(["resnet20"], ["weights.safetensors"]) == DEFAULT_DATA  # a CIFAR-style zoo model
    assert default_data([], []) == DEFAULT_DATA


def test_the_card_line_is_a_one_line_usage_error(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, err = run_cli(["distill", "--teacher", "resnet50", "--student", "mobilenetv2"], capsys)
    assert code == 2
    assert err.strip().count("\n") == 0 and "--data imagefolder --data-dir DIR" in err
    assert "--teacher-weights imagenet or FILE" in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()


def test_distill_without_out_writes_the_default_folder_and_says_the_data(capsys: pytest.CaptureFixture[str],
                                                                         tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, err = run_cli(["distill", "--teacher", "fashion-mnist-resnet20", "--student", "resnet8", "--method", "kd",
                         "--epochs", "1", "--batch-size", "32", "--train-limit", "64", "--val-limit", "32",
                         "--no-progress", "--device", "cpu"], capsys)
    assert code == 0, err
    out = Path("runs/resnet8-from-fashion-mnist-resnet20")
    assert f"output folder: {out} (pass --out to choose)" in err
    assert "data: fashion-mnist, 64 training and 32 validation images, 10 classes, 28 px, 1 channel(s)" in err
    assert (tmp_path / out / "model.safetensors").is_file()


def test_missing_tensorrt_says_a_gpu_is_needed_too(monkeypatch: pytest.MonkeyPatch) -> None:
    from compress.export.tensorrt import require_tensorrt

    monkeypatch.setitem(sys.modules, "tensorrt", None)  # `import tensorrt` raises ImportError
    with pytest.raises(MissingDependency, match=r"^'tensorrt' is not installed \(needed for building TensorRT "
                                                r"engines, which also needs an NVIDIA GPU\): pip install "
                                                r"'compress-edge\[trt\]'$"):
        require_tensorrt()


def test_a_latency_ratio_says_which_way_it_divides() -> None:
    assert speed_words(0.67, "INT8", "fp32") == "INT8 is 1.49x faster than fp32 (latency INT8/fp32 0.67)"
    assert speed_words(1.25, "INT8", "fp32") == "INT8 is 1.25x slower than fp32 (latency INT8/fp32 1.25)"
    assert speed_words(1.0, "INT8", "fp32") == "INT8 is as fast as fp32 (latency INT8/fp32 1.00)"
    assert speed_words(float("nan"), "INT8", "fp32") == "latency INT8/fp32 not measured"
