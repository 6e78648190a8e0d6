"""Issue 17, items 3 and 9: the runtime checks a model's metadata, sidecar, signature and outputs."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from hostile import FASHION, assert_error, pooled_onnx, run_cli, with_metadata, write_sidecar
from onnx import TensorProto
from PIL import Image

import deploy
from deploy import DeployError
from deploy.runners import MAX_THREADS, checked_logits


@pytest.fixture()
def image(tmp_path, raw_images):
    path = tmp_path / "img.png"
    Image.fromarray(raw_images[0]).save(path)
    return path


def fashion(**changes) -> str:
    return json.dumps({**FASHION, **changes})


@pytest.mark.parametrize("text, message", [
    (fashion(image_size=100000), r"'image_size' must be an integer from 1 to 4096, got 100000"),
    (fashion(image_size=0), "'image_size' must be an integer from 1"),
    (fashion(image_size="28"), "'image_size' must be an integer"),
    (fashion(image_size=28.0), "'image_size' must be an integer"),
    (fashion(image_size=True), "'image_size' must be an integer"),
    (fashion(image_size=32), "says 32 height but the model's input has 28"),
    (fashion(channels=3, mean=[0.5] * 3, std=[0.5] * 3), "says 3 channels but the model's input has 1"),
    (fashion(channels=2), "'channels' must be 1 or 3, got 2"),
    (fashion(channels=None), "'channels' must be 1 or 3"),
    (fashion(source_channels=4), "'source_channels' must be 1 or 3, got 4"),
    (fashion(resize_size=10), "'resize_size' must be an integer from 28 to 8192"),
    (fashion(resize_size=10**9), "'resize_size' must be an integer from 28"),
    (fashion(mean=[float("nan")]), r"is not valid JSON \(NaN is not a finite number\)"),
    ('{"image_size": 28, "image_size": 4096}', r"is not valid JSON \(the key 'image_size' appears twice\)"),
    (fashion(mean=[1e300]), "'mean' must be a list of 1 numbers from -1000 to 1000"),
    (fashion(mean=[0.1, 0.2]), "'mean' must be a list of 1"),
    (fashion(mean="0.286"), "'mean' must be a list"),
    (fashion(std=[0.0]), "'std' must be a list of 1 numbers from 1e-06 to 1000"),
    (fashion(std=[-1.0]), "'std' must be a list of 1 numbers from 1e-06"),
    (fashion(std=[1e-30]), "'std' must be a list of 1 numbers from 1e-06"),
    (fashion(std=[float("inf")]), r"is not valid JSON \(Infinity is not a finite number\)"),
    (fashion(std=[True]), "'std' must be a list of 1 numbers"),
    (fashion(class_names="T-shirt"), "'class_names' must be a list of printable names"),
    (fashion(class_names=[1, 2]), "'class_names' must be a list of printable names"),
    (fashion(class_names=["a\nb"] * 10), "'class_names' must be a list of printable names"),
    (fashion(class_names=["a", "b", "c"]), "names 3 classes but the model outputs 10"),
    ("[1, 2]", "must be a JSON object, got list"),
    ('"fashion"', "must be a JSON object, got str"),
    ("null", "must be a JSON object, got NoneType"),
    ('{"mean": [0.2', "is not valid JSON"),
    ("[" * 100_000 + "]" * 100_000, "is not valid JSON"),
    ("{" + " " * (1 << 20) + "}", "more than the 1048576"),
])
def test_bad_preprocessing_metadata_is_refused_at_load(onnx_model, tmp_path, text, message):
    path = with_metadata(onnx_model[0], tmp_path / "model.onnx", text)
    with pytest.raises(DeployError, match=message):
        deploy.load(path)


def test_metadata_image_size_100000_is_one_line_not_37_gib(onnx_model, tmp_path, image):
    path = with_metadata(onnx_model[0], tmp_path / "model.onnx", fashion(image_size=100000))
    assert_error(run_cli("classify", path, image), 1, r"compress\.preprocessing metadata .*'image_size'")


def test_a_dynamic_size_model_is_bounded_by_the_metadata_check(tmp_path, image):
    """No input shape to compare with: the record's own bounds stop a 100000-pixel resize."""
    path = pooled_onnx(tmp_path / "pooled.onnx", preprocessing={**FASHION, "image_size": 100000})
    assert_error(run_cli("classify", path, image), 1, "'image_size' must be an integer from 1 to 4096")
    ok = pooled_onnx(tmp_path / "ok.onnx", preprocessing=FASHION)
    run = run_cli("classify", ok, image)
    assert run.returncode == 0 and run.stdout.startswith(f"{image}: class ") and run.stderr == "", run.stderr


@pytest.mark.parametrize("content, message", [
    ("[1, 2, 3]", "holds a JSON list, not the object compress writes"),
    ('"0123abcd"', "holds a JSON str, not the object"),
    ("{not json", "is not valid JSON"),
    ("[" * 100_000, "is not valid JSON"),
    (b"\xff\xfe{}", "is not UTF-8 text"),
    ("{}" + " " * (2 << 20), "far more than a sidecar holds"),
])
def test_bad_sidecars_are_one_line_errors_and_trust_skips_them(onnx_model, tmp_path, content, message, image):
    path = tmp_path / "model.onnx"
    shutil.copy(onnx_model[0], path)
    side = tmp_path / "model.onnx.json"
    side.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(DeployError, match=message):
        deploy.load(path)
    assert deploy.load(path, trust=True).predict(np.zeros((28, 28), np.uint8))[0].shape == (1, 10)
    assert_error(run_cli("classify", path, image), 1, message)


def test_a_fifo_sidecar_or_model_does_not_hang(onnx_model, tmp_path, image):
    path = tmp_path / "model.onnx"
    shutil.copy(onnx_model[0], path)
    os.mkfifo(tmp_path / "model.onnx.json")
    assert_error(run_cli("classify", path, image, timeout=30), 1, "is not a regular file")
    os.mkfifo(tmp_path / "fifo.onnx")
    assert_error(run_cli("classify", tmp_path / "fifo.onnx", image, "--trust", timeout=30), 1,
                 "model file .*fifo.onnx' is not a regular file")


@pytest.mark.parametrize("input_type, name", [(TensorProto.FLOAT16, "float16"), (TensorProto.DOUBLE, "double"),
                                              (TensorProto.UINT8, "uint8")])
def test_an_input_of_another_dtype_is_refused_at_load(tmp_path, image, input_type, name):
    path = pooled_onnx(tmp_path / "model.onnx", input_type=input_type, preprocessing=FASHION)
    with pytest.raises(DeployError, match=rf"takes tensor\({name}\) input, but deploy feeds float32"):
        deploy.load(path)
    assert_error(run_cli("classify", path, image), 1, rf"tensor\({name}\)")


def test_a_rank_0_output_is_refused_at_load(tmp_path, image):
    path = pooled_onnx(tmp_path / "model.onnx", scalar_output=True, preprocessing=FASHION)
    with pytest.raises(DeployError, match=r"returns \[\], not N x classes logits"):
        deploy.load(path)
    assert_error(run_cli("classify", path, image), 1, "not N x classes logits")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_logits_are_refused_not_printed(tmp_path, raw_images, bad):
    weight = np.ones((1, 10), np.float32)
    weight[0, 3] = bad
    path = pooled_onnx(tmp_path / "model.onnx", weight=weight, preprocessing=FASHION)
    runner = deploy.load(path)
    with pytest.raises(DeployError, match=r"non-finite logits \(NaN or inf\)"):
        runner.predict(raw_images[:2])
    files = []
    for i in range(2):
        files.append(tmp_path / f"img{i}.png")
        Image.fromarray(raw_images[i]).save(files[-1])
    run = run_cli("classify", path, *files)
    assert run.stdout == "" and "nan" not in run.stdout
    assert_error(run, 1, r"cannot classify .*img0.png': the model returned non-finite logits", lines=2)


@pytest.mark.parametrize("out, message", [
    (np.float32(1.0), r"shape \(\) for a batch of 2"),
    (np.zeros(2, np.float32), r"shape \(2,\) for a batch of 2"),
    (np.zeros((3, 10), np.float32), r"shape \(3, 10\) for a batch of 2"),
    (np.zeros((2, 0), np.float32), r"shape \(2, 0\)"),
    (np.zeros((2, 10), np.int64), "int64 values, not float logits"),
    (np.array([[0.0, np.nan]] * 2, np.float32), "non-finite logits"),
])
def test_checked_logits_refuses_what_is_not_a_logit_matrix(out, message):
    with pytest.raises(DeployError, match=message):
        checked_logits(out, 2)
    got = checked_logits(np.array([[1, 2]] * 2, np.float16), 2)
    assert got.dtype == np.float32 and got.tolist() == [[1.0, 2.0]] * 2


@pytest.mark.parametrize("threads", [0, -1, MAX_THREADS + 1, 2.0, True])  # 10**6: in a process of its own below
def test_thread_counts_are_bounded_in_the_library(onnx_model, threads):
    with pytest.raises(DeployError, match=f"threads must be an integer from 1 to {MAX_THREADS}"):
        deploy.load(onnx_model[0], threads=threads)
    assert deploy.load(onnx_model[0], threads=1).predict_logits(np.zeros((1, 1, 28, 28), np.float32)).shape == (1, 10)


def test_a_million_threads_is_a_usage_error_not_a_crash(onnx_model):
    run = run_cli("bench", onnx_model[0], "--threads", 10**6, "--seconds", "0.1", timeout=60)
    assert_error(run, 2, f"argument --threads: must be an integer from 1 to {MAX_THREADS}, got '1000000'")


def test_valid_sidecar_written_here_still_verifies(onnx_model, tmp_path):
    """The helpers' minimal sidecar is what the checks above rely on being accepted."""
    path = tmp_path / "model.onnx"
    shutil.copy(onnx_model[0], path)
    write_sidecar(path)
    assert deploy.load(path).preprocessing["image_size"] == 28


def test_the_checked_record_is_the_exported_one(onnx_model):
    """compress compares it with the checkpoint's record: every field survives the check unchanged."""
    exported = json.loads(Path(f"{onnx_model[0]}.json").read_text())["preprocessing"]
    assert deploy.load(onnx_model[0]).preprocessing == exported
