"""Issue 23, items 6 and 8: the remaining tracebacks and misleading messages, each now one true line."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

import compress
from compress.cli import main
from compress.errors import ConfigError, DataError, UnknownNameError

ROOT = Path(__file__).resolve().parents[1]
TEACHER = "pipelines/weights/fashion-mnist-resnet20.safetensors"


def _exit_code(args: list[str]) -> int:
    try:
        main(args)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
@pytest.mark.parametrize("args", [["schema"], ["schema", "--markdown"], ["list", "models"]])
def test_results_to_a_full_device_are_one_line(args: list[str], capsys, monkeypatch) -> None:
    with open("/dev/full", "w") as full:
        monkeypatch.setattr(sys, "stdout", full)
        code = _exit_code(args)
    assert code == 1
    assert capsys.readouterr().err.splitlines() == [
        "error: cannot write the output (No space left on device): no space left on the device written to: free "
        "some space or write elsewhere"]


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
def test_a_log_file_that_fills_up_warns_once(capsys) -> None:
    from compress import logs

    try:
        assert _exit_code(["--log-file", "/dev/full", "-v", "list", "methods"]) == 0
    finally:
        logs.configure()  # closes the handler of /dev/full: no second warning
    out, err = capsys.readouterr()
    assert "atsc" in out
    assert [line for line in err.splitlines() if not line.startswith("debug: ")] == [
        "warning: cannot write the log file '/dev/full' (No space left on device); logging to it stopped"]


@pytest.mark.parametrize("key", ["batch_size", "threads"])
def test_an_infinite_gate_point_in_a_recipe_is_one_line(key: str, tmp_path: Path, capsys, monkeypatch) -> None:
    recipe = (ROOT / "pipelines" / "fashion_mnist_ci.yaml").read_text()
    assert "      min_top1: 78.0\n" in recipe
    path = tmp_path / "recipe.yaml"
    path.write_text(recipe.replace("      min_top1: 78.0\n", f"      min_top1: 78.0\n      {key}: .inf\n"))
    monkeypatch.chdir(ROOT)
    with pytest.raises(SystemExit) as exit_info:
        main(["run", str(path), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 1 and "Traceback" not in err
    assert err.strip().splitlines() == [f"error: {path}: validate.gates.student: gate values must be finite numbers "
                                        "(cannot convert float infinity to integer)"]
    assert not (tmp_path / "run").exists()


def test_unlabeled_dir_that_is_a_file_says_so(tmp_path: Path) -> None:
    from compress.data.sources import UnlabeledFolder

    image = tmp_path / "some.png"
    image.write_bytes(b"\x89PNG")
    with pytest.raises(DataError, match=r"--unlabeled-dir '.*some.png' is a file, not a folder"):
        UnlabeledFolder(image, None)
    with pytest.raises(DataError, match="does not exist"):
        UnlabeledFolder(tmp_path / "missing", None)


@pytest.mark.parametrize("name", ["timm:os.system", "timm:resnet18.system", "timm:builtins.eval.x"])
def test_dotted_names_that_are_not_pretrained_tags(name: str) -> None:
    pytest.importorskip("timm")
    from compress.models.timm_zoo import canonical_timm_name

    with pytest.raises(UnknownNameError, match=r"is not a timm model name") as refused:
        canonical_timm_name(name)
    assert "--teacher-weights" not in str(refused.value)


def test_a_real_pretrained_tag_is_still_explained() -> None:
    pytest.importorskip("timm")
    from compress.models.timm_zoo import canonical_timm_name

    with pytest.raises(ConfigError, match=r"\(timm:resnet18\) .* \(--teacher-weights a1_in1k\)"):
        canonical_timm_name("timm:resnet18.a1_in1k")


@pytest.mark.parametrize("call, message", [
    (lambda: compress.distill("resnet8", None), "teachers must be a list of model names, checkpoint paths or "
                                                "nn.Modules, got None"),
    (lambda: compress.distill("resnet8", [None]), r"teachers\[0\] must be a model name, a checkpoint path or an "
                                                  r"nn.Module, got None"),
    (lambda: compress.distill(None, [TEACHER]), "student must be a model name"),
    (lambda: compress.distill("resnet8", TEACHER), "teachers must be a list of .* got str 'pipelines/weights"),
    (lambda: compress.distill("resnet8", [TEACHER], epochs="1"), "epochs must be an int, got str '1'"),
    (lambda: compress.distill("resnet8", [TEACHER], epochs=True), "epochs must be an int, got bool True"),
    (lambda: compress.distill("resnet8", [TEACHER], lr="0.1"), "lr must be a number, got str '0.1'"),
    (lambda: compress.distill("resnet8", [TEACHER], train_limit=2.5), "train_limit must be an int or None, got "
                                                                      "float 2.5"),
    (lambda: compress.distill("resnet8", [TEACHER], method=None), "method must be a str"),
    (lambda: compress.distill("resnet8", [TEACHER], out=3), r"out must be a path \(str or pathlib.Path\), got int 3"),
    (lambda: compress.export(None), "checkpoint must be a path"),
    (lambda: compress.export("x", build="onnx"), "build must be a list of backend names"),
    (lambda: compress.export("x", options=[1]), "options must be a dict"),
    (lambda: compress.validate(None), "artifacts must be a dict of stage name -> path, got None"),
    (lambda: compress.validate(["a.onnx"]), "artifacts must be a dict"),
    (lambda: compress.validate({"a": None}), r"artifacts\['a'\] must be a path"),
    (lambda: compress.validate({"a": "a.onnx"}, threads=2), "threads must be a list of ints, got int 2"),
    (lambda: compress.validate({"a": "a.onnx"}, batch_sizes=["1"]), r"batch_sizes\[0\] must be an int, got str"),
    (lambda: compress.validate({"a": "a.onnx"}, duration_s="2"), "duration_s must be a number, got str '2'"),
])
def test_python_api_names_the_argument_and_its_type(call: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        call()
