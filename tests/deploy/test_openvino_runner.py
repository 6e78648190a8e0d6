"""The torch-free OpenVINO runner: same answers as ONNX Runtime, integrity of .xml + .bin, threads."""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import deploy
from deploy.errors import DeployError
from deploy.openvino_runner import OpenVinoRunner

pytest.importorskip("openvino", reason="the openvino extra is not installed: pip install 'compress-edge[openvino]'")
from test_deploy_torch_free import labels_without_torch  # noqa: E402  (tests/deploy is on sys.path, as distill_helpers)


@pytest.fixture(scope="module")
def ir_model(onnx_model, tmp_path_factory) -> Path:
    from compress.export.openvino import export_openvino

    return export_openvino(onnx_model[0], tmp_path_factory.mktemp("ir")).files["fp32"]


@pytest.fixture()
def ir_copy(ir_model, tmp_path) -> Path:
    for name in (ir_model.name, ir_model.with_suffix(".bin").name, ir_model.name + ".json"):
        shutil.copy(ir_model.with_name(name), tmp_path / name)
    return tmp_path / ir_model.name


def test_predictions_equal_onnx_runtime(ir_model, onnx_model, raw_images):
    runner = deploy.load(ir_model)
    assert isinstance(runner, OpenVinoRunner)
    assert runner.input_shape == (1, 28, 28)
    assert runner.preprocessing == deploy.load(onnx_model[0]).preprocessing
    assert runner.class_names and runner.class_names[0] == "T-shirt/top"
    logits, labels = runner.predict(raw_images)
    ort_logits, ort_labels = deploy.load(onnx_model[0]).predict(raw_images)
    np.testing.assert_allclose(logits, ort_logits, atol=1e-4, rtol=1e-4)
    assert (labels == ort_labels).all()
    assert logits.dtype == np.float32 and logits.shape == (64, 10)
    for batch in (1, 3, 17):  # the dynamic batch axis
        np.testing.assert_allclose(runner.predict(raw_images[:batch])[0], ort_logits[:batch], atol=1e-4, rtol=1e-4)


def test_threads_option_and_concurrent_callers(ir_model, raw_images):
    runner = OpenVinoRunner(ir_model, deploy.integrity.read_sidecar(ir_model, False), threads=1)
    assert runner.compiled.get_property("INFERENCE_NUM_THREADS") == 1
    batches = [raw_images[i:i + 8] for i in range(0, 64, 8)]
    sequential = [runner.predict(b)[0] for b in batches]
    with ThreadPoolExecutor(max_workers=4) as pool:  # 4 threads x 2 calls each, all at once
        concurrent = list(pool.map(lambda b: runner.predict(b)[0], batches))
    for want, got in zip(sequential, concurrent):
        np.testing.assert_array_equal(got, want)


def test_bf16_is_opt_in_and_close(ir_model, raw_images):
    f32 = deploy.load(ir_model).predict(raw_images)
    bf16 = OpenVinoRunner(ir_model, trust=True, precision="bf16").predict(raw_images)
    np.testing.assert_allclose(bf16[0], f32[0], atol=0.25)  # bf16 keeps 8 significant bits
    assert (bf16[1] == f32[1]).mean() >= 0.9
    with pytest.raises(DeployError, match="unknown OpenVINO precision 'int8'"):
        OpenVinoRunner(ir_model, trust=True, precision="int8")


def test_modified_weights_are_refused_unless_trusted(ir_copy, raw_images):
    bin_path = ir_copy.with_suffix(".bin")
    data = bytearray(bin_path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bin_path.write_bytes(bytes(data))
    with pytest.raises(DeployError, match=r"model.bin' does not match the SHA-256 in 'model.xml.json'"):
        deploy.load(ir_copy)
    assert deploy.load(ir_copy, trust=True).predict(raw_images[:2])[0].shape == (2, 10)


def test_missing_weights_and_sidecar_without_weights_hash(ir_copy):
    record = deploy.integrity.read_sidecar(ir_copy, False)
    with pytest.raises(DeployError, match="records no hash for its weights"):
        OpenVinoRunner(ir_copy, {k: v for k, v in record.items() if k != "weights"})
    ir_copy.with_suffix(".bin").unlink()
    with pytest.raises(DeployError, match=r"weights file '.*model.bin' of 'model.xml' does not exist"):
        deploy.load(ir_copy)
    with pytest.raises(DeployError, match="cannot load OpenVINO model"):
        deploy.load(ir_copy, trust=True)


def test_input_checks_and_provider(ir_model):
    runner = deploy.load(ir_model)
    with pytest.raises(DeployError, match=r"model expects 1 channels \(input N x 1 x 28 x 28\)"):
        runner.predict_logits(np.zeros((2, 3, 28, 28), np.float32))
    with pytest.raises(DeployError, match="wants float32"):
        runner.predict_logits(np.zeros((2, 1, 28, 28), np.float64))
    with pytest.raises(DeployError, match="provider 'cuda' applies to ONNX models"):
        deploy.load(ir_model, provider="cuda")


def test_runner_works_where_torch_cannot_import(ir_model, tmp_path, raw_images):
    labels = labels_without_torch(ir_model, raw_images[:5], tmp_path, threads=1)
    assert labels == ",".join(map(str, deploy.load(ir_model).predict(raw_images[:5])[1]))
