"""Issue 17, items 11 and 12: every number the CLI takes is bounded; usage errors are one line, exit 2."""

from __future__ import annotations

import json
import os
import re

import pytest
from hostile import FASHION, assert_error, pooled_onnx, run_cli
from PIL import Image

from deploy.cli import main


def call(argv: list[str], capsys) -> tuple[int, str, str]:
    """``main(argv)`` in this process: (exit status, stdout, stderr); argparse's exits included."""
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return int(code), out.out, out.err


def assert_usage_error(code: int, err: str, pattern: str) -> None:
    assert code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and "Traceback" not in err, err
    assert pattern in err, err


@pytest.fixture()
def image(tmp_path, raw_images):
    path = tmp_path / "img.png"
    Image.fromarray(raw_images[0]).save(path)
    return str(path)


@pytest.mark.parametrize("top, message", [
    ("0", "argument --top: must be an integer from 1 to 100000, got '0'"),
    ("-1", "argument --top: must be an integer from 1 to 100000, got '-1'"),
    ("x", "argument --top: must be an integer from 1 to 100000, got 'x'"),
    ("11", "--top 11 is more than the model's 10 classes; use --top 1 to 10"),
    ("100000", "--top 100000 is more than the model's 10 classes"),
])
def test_top_outside_the_model_classes_is_a_usage_error(onnx_model, image, capsys, top, message):
    code, out, err = call(["classify", str(onnx_model[0]), image, "--top", top], capsys)
    assert_usage_error(code, err, message)
    assert out == ""


@pytest.mark.parametrize("top", [1, 10])
def test_top_prints_exactly_that_many_classes(onnx_model, image, capsys, top):
    code, out, err = call(["classify", str(onnx_model[0]), image, "--top", str(top)], capsys)
    assert code == 0 and err == ""
    shown = out.strip().split(": ", 1)[1].split(", ")
    probs = [float(item.rsplit(" ", 1)[1]) for item in shown]
    assert len(shown) == top and probs == sorted(probs, reverse=True)


@pytest.mark.parametrize("args, message", [
    (["--batch", "-1"], "argument --batch: must be an integer from 1 to 1024, got '-1'"),
    (["--batch", "0"], "argument --batch: must be an integer from 1 to 1024, got '0'"),
    (["--batch", "200000"], "argument --batch: must be an integer from 1 to 1024, got '200000'"),
    (["--batch", "1,,4"], "argument --batch: must be an integer from 1 to 1024, got ''"),
    (["--batch", "1e3"], "got '1e3'"),
    (["--batch", ",".join(["1"] * 17)], "argument --batch: at most 16 batch sizes, got 17"),
    (["--seconds", "0"], "argument --seconds: must be a number of seconds above 0 and at most 3600, got '0'"),
    (["--seconds", "-1"], "argument --seconds: must be a number of seconds above 0"),
    (["--seconds", "nan"], "argument --seconds: must be a number of seconds above 0"),
    (["--seconds", "inf"], "argument --seconds: must be a number of seconds above 0"),
    (["--seconds", "1e9"], "argument --seconds: must be a number of seconds above 0"),
    (["--threads", "0"], "argument --threads: must be an integer from 1 to"),
    (["--threads", "-4"], "argument --threads: must be an integer from 1 to"),
    (["--threads", "9" * 5000], "argument --threads: must be an integer from 1 to"),
    (["--provider", "npu"], "argument --provider: invalid choice: 'npu'"),
])
def test_bench_numbers_are_bounded(onnx_model, args, message):
    """In a capped process: without the bounds these run for ever (--seconds inf) or exhaust memory."""
    run = run_cli("bench", onnx_model[0], *args, timeout=30)
    assert_error(run, 2, re.escape(message))
    assert run.stdout == ""


def test_a_batch_too_large_for_the_model_input_is_a_usage_error(tmp_path, capsys):
    """4096 x 4096 RGB is 192 MiB per image: a batch of 4 would be 768 MiB of random input."""
    path = pooled_onnx(tmp_path / "big.onnx", channels=3,
                       preprocessing={**FASHION, "image_size": 4096, "channels": 3, "mean": [0.5] * 3,
                                      "std": [0.25] * 3})
    code, out, err = call(["bench", str(path), "--batch", "1,4", "--seconds", "0.01"], capsys)
    assert_usage_error(code, err, "batch size 4 does not fit: use 1 to 2 for this model's 3 x 4096 x 4096 input")


def test_bench_times_a_dynamic_model_at_its_preprocessing_size(tmp_path, capsys):
    from deploy import load
    from deploy.bench import input_shape

    path = pooled_onnx(tmp_path / "small.onnx", preprocessing={**FASHION, "image_size": 20})
    assert input_shape(load(path)) == (1, 20, 20)  # not 224 x 224 for the dynamic sides
    code, out, err = call(["bench", str(path), "--batch", "2", "--seconds", "0.01", "--json"], capsys)
    assert code == 0 and err == ""
    rows = json.loads(out)
    assert [r["batch"] for r in rows] == [2] and rows[0]["n"] >= 3


@pytest.mark.parametrize("argv", [[], ["classify"], ["classify", "model.onnx"], ["bench"], ["serve", "x"],
                                  ["classify", "m.onnx", "a.png", "--nope"]])
def test_usage_errors_are_one_line_with_exit_2(capsys, argv):
    code, out, err = call(argv, capsys)
    assert_usage_error(code, err, "(see 'compress-deploy")


def test_usage_error_from_a_real_process_is_one_line(onnx_model, image):
    assert_error(run_cli("classify", onnx_model[0], image, "--top", "-1"), 2, "argument --top")


def test_a_file_name_that_is_not_utf8_is_printed_not_a_crash(onnx_model, raw_images, tmp_path):
    name = os.fsdecode(bytes(tmp_path) + b"/\xff\xfe.png")
    Image.fromarray(raw_images[0]).save(name)
    run = run_cli("classify", onnx_model[0], name)
    assert run.returncode == 0 and run.stderr == "", run.stderr
    assert "\\udcff\\udcfe.png: " in run.stdout

