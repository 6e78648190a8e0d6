from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

import deploy
from deploy import DeployError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def runner(onnx_model):
    return deploy.load(onnx_model[0], threads=2)


def reference_logits(model, raw: np.ndarray, pre: dict) -> np.ndarray:
    """What compress computes: u8 / 255, normalised, through PyTorch."""
    x = (raw.astype(np.float32)[:, None] / 255.0 - pre["mean"][0]) / pre["std"][0]
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def test_predict_uint8_matches_pytorch(runner, onnx_model, raw_images):
    logits, labels = runner.predict(raw_images[:20])  # N x H x W grey batch
    assert runner.predict(raw_images[:3])[0].shape == (3, 10)  # 3 x 28 x 28 is three images, not one CHW
    ref = reference_logits(onnx_model[1], raw_images[:20], runner.preprocessing)
    assert np.abs(logits - ref).max() <= 1e-4 * max(1.0, np.abs(ref).max())
    assert (labels == ref.argmax(1)).all()
    assert runner.class_names[0] == "T-shirt/top" and len(runner.class_names) == 10


def test_every_layout_and_dtype_gives_the_same_answer(runner, raw_images):
    img = raw_images[3]
    want, _ = runner.predict(img)  # HW
    for variant in (img[:, :, None], img[None, :, :, None], img[None, None], img.astype(np.float32) / 255,
                    np.repeat(img[:, :, None], 3, axis=2)):  # HWC, NHWC, NCHW, float HW, grey-as-RGB HWC
        got, _ = runner.predict(variant)
        assert got.shape == (1, 10)
        np.testing.assert_allclose(got, want, atol=1e-4)


def test_larger_images_are_resized(runner, raw_images):
    big = np.kron(raw_images[5], np.ones((2, 2), dtype=np.uint8))  # 56 x 56, same picture
    logits, labels = runner.predict(big)
    assert logits.shape == (1, 10) and labels[0] == runner.predict(raw_images[5])[1][0]


@pytest.mark.parametrize("bad, message", [
    (np.zeros((2, 2, 28, 28, 1), np.uint8), "HW, HWC, NHWC or NCHW"),
    (np.zeros((28, 28), np.int64), "uint8 or float"),
    (np.full((28, 28), 200.0, np.float32), r"\[0, 1\]"),
    (np.zeros((1, 5, 7, 28), np.uint8), "cannot find the channel axis"),
])
def test_bad_images_are_clear_errors(runner, bad, message):
    with pytest.raises(DeployError, match=message):
        runner.predict(bad)


@pytest.mark.parametrize("bad, message", [
    (np.zeros((1, 3, 28, 28), np.float32), "expects 1 channels"),
    (np.zeros((1, 1, 32, 28), np.float32), "expects 28 height"),
    (np.zeros((1, 1, 28, 28), np.float64), "float32"),
    (np.zeros((1, 28, 28), np.float32), "N x C x H x W"),
])
def test_bad_model_input_is_a_clear_error(runner, bad, message):
    with pytest.raises(DeployError, match=message):
        runner.predict_logits(bad)


def test_integrity_check(onnx_model, tmp_path):
    copy = tmp_path / "model.onnx"
    shutil.copy(onnx_model[0], copy)
    with pytest.raises(DeployError, match="has no sidecar"):
        deploy.load(copy)
    shutil.copy(str(onnx_model[0]) + ".json", str(copy) + ".json")
    deploy.load(copy)
    side = Path(str(copy) + ".json")
    side.write_text(side.read_text().replace(json.loads(side.read_text())["sha256"], "0" * 64))
    with pytest.raises(DeployError, match="does not match the SHA-256"):
        deploy.load(copy)
    assert deploy.load(copy, trust=True).predict_logits(np.zeros((1, 1, 28, 28), np.float32)).shape == (1, 10)


def test_corrupt_onnx_and_unknown_files(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(DeployError, match="cannot load ONNX model"):
        deploy.load(bad, trust=True)
    with pytest.raises(DeployError, match="does not exist"):
        deploy.load(tmp_path / "missing.onnx")
    other = tmp_path / "model.tflite"
    other.write_bytes(b"x")
    with pytest.raises(DeployError, match="unknown model file type"):
        deploy.load(other, trust=True)


def test_missing_provider_is_a_clear_error(onnx_model):
    import onnxruntime as ort

    if "TensorrtExecutionProvider" in ort.get_available_providers():
        pytest.skip("this ONNX Runtime has the TensorRT provider")
    with pytest.raises(DeployError, match="has no TensorrtExecutionProvider"):
        deploy.load(onnx_model[0], provider="tensorrt")


def test_threads_give_the_same_results_as_sequential(runner, raw_images):
    images = [raw_images[i % 64] for i in range(200)]
    sequential = np.stack([runner.predict(img)[0][0] for img in images])
    results: dict[int, np.ndarray] = {}

    def work(tid: int) -> None:
        results[tid] = np.stack([runner.predict(img)[0][0] for img in images])

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 8
    for out in results.values():
        np.testing.assert_array_equal(out, sequential)


def test_cli_classify_and_bench(onnx_model, raw_images, runner, tmp_path):
    from PIL import Image

    files = []
    for i in range(3):
        files.append(tmp_path / f"img{i}.png")
        Image.fromarray(raw_images[i]).save(files[-1])
    out = subprocess.run([sys.executable, "-m", "deploy", "classify", str(onnx_model[0]), *map(str, files)],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    names = runner.class_names
    expected = runner.predict(raw_images[:3])[1]
    assert [line.split(": ")[1].rsplit(" ", 1)[0] for line in lines] == [names[i] for i in expected]
    out = subprocess.run([sys.executable, "-m", "deploy", "bench", str(onnx_model[0]), "--batch", "1,4",
                          "--seconds", "0.2", "--threads", "2", "--json"], capture_output=True, text=True, cwd=ROOT,
                         timeout=120)
    rows = json.loads(out.stdout)
    assert [r["batch"] for r in rows] == [1, 4]
    assert all(0 < r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"] and r["throughput_img_s"] > 0 for r in rows)
    bad = subprocess.run([sys.executable, "-m", "deploy", "classify", str(tmp_path / "nope.onnx"), str(files[0])],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert bad.returncode == 1 and bad.stderr.startswith("error: model file") and "Traceback" not in bad.stderr
