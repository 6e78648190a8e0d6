"""Opening artifacts: file types, clear errors, and stages that cannot run here are skipped."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from compress.artifacts import write_sidecar
from compress.errors import CheckpointError, ConfigError
from compress.validate.backends import RuntimeBackend, StageSkipped, TorchBackend, artifact_kind, open_backend


def test_artifact_kinds(tmp_path):
    assert artifact_kind(tmp_path / "a.safetensors") == "checkpoint"
    assert artifact_kind(tmp_path / "a.onnx") == "onnxruntime"
    assert artifact_kind(tmp_path / "a.int8.onnx") == "onnxruntime"
    assert artifact_kind(tmp_path / "a.plan") == "tensorrt"
    assert artifact_kind(tmp_path / "a.trt") == "tensorrt"
    assert artifact_kind(tmp_path / "model.xml") == artifact_kind(tmp_path / "model.int8.xml") == "openvino"
    with pytest.raises(ConfigError, match=r"cannot validate '.*a\.pt': expected a \.safetensors"):
        artifact_kind(tmp_path / "a.pt")


def test_open_checkpoint_and_onnx(tiny_artifacts):
    backend, info, pre = open_backend("student", tiny_artifacts["student"])
    assert isinstance(backend, TorchBackend) and info.kind == "checkpoint" and pre["channels"] == 1
    assert info.parameters is not None and info.parameters > 0
    x = np.random.default_rng(0).standard_normal((3, 1, 28, 28)).astype(np.float32)
    onnx_backend, onnx_info, onnx_pre = open_backend("onnx", tiny_artifacts["onnx"])  # the real deploy.load
    assert isinstance(onnx_backend, RuntimeBackend) and onnx_pre == pre
    assert onnx_info.kind == "onnxruntime" and onnx_info.parameters is not None and onnx_info.parameters > 0
    np.testing.assert_allclose(onnx_backend.predict_logits(x), backend.predict_logits(torch.from_numpy(x)), atol=1e-4)
    onnx_backend.set_threads(1)
    assert onnx_backend.predict_logits(x).shape == (3, 10)
    assert set(onnx_backend._runners) == {None, 1}  # one session per thread count


def test_open_openvino_ir_through_deploy(tiny_artifacts, tmp_path):
    """An IR is validated with the runner that deploys it, on CPU threads, and its size counts its weights."""
    pytest.importorskip("openvino")
    from compress.export.openvino import export_openvino

    xml = export_openvino(tiny_artifacts["onnx"], tmp_path).files["fp32"]
    backend, info, pre = open_backend("openvino", xml)
    assert isinstance(backend, RuntimeBackend) and backend.engine == "openvino" and backend.uses_threads
    assert type(backend.runner).__name__ == "OpenVinoRunner" and pre["channels"] == 1
    assert info.kind == "openvino"
    assert info.size_bytes == xml.stat().st_size + xml.with_suffix(".bin").stat().st_size
    onnx_backend = open_backend("onnx", tiny_artifacts["onnx"])[0]
    x = np.random.default_rng(0).standard_normal((3, 1, 28, 28)).astype(np.float32)
    np.testing.assert_allclose(backend.predict_logits(x), onnx_backend.predict_logits(x), atol=1e-4)
    backend.set_threads(1)
    assert backend._runners[1].compiled.get_property("INFERENCE_NUM_THREADS") == 1
    # timed in the same interleaved run as the ONNX model, at each thread count
    from compress.validate.latency import LatencyConfig, benchmark

    timings = benchmark([onnx_backend, backend], (1, 28, 28), LatencyConfig(batch_sizes=(1,), threads=(1,), runs=6,
                                                                            blocks=2, warmup=1, pause_s=0))
    assert [(s.batch_size, s.threads, s.runs) for s in timings["openvino"]] == [(1, 1, 6)]


def test_corrupt_onnx_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"definitely not protobuf")
    write_sidecar(bad, "onnx")
    with pytest.raises(CheckpointError, match=r"^stage 'bad': cannot load ONNX model"):
        open_backend("bad", bad)
    with pytest.raises(CheckpointError, match="does not exist"):
        open_backend("gone", tmp_path / "gone.onnx")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU path")
def test_gpu_stages_are_skipped_without_a_gpu(tiny_artifacts, tmp_path):
    engine = tmp_path / "model.plan"
    engine.write_bytes(b"x")
    with pytest.raises(StageSkipped, match="TensorRT needs an NVIDIA GPU"):
        open_backend("trt", engine)
    with pytest.raises(StageSkipped, match="CUDA execution provider needs an NVIDIA GPU"):
        open_backend("onnx_cuda", tiny_artifacts["onnx"], provider="cuda")


def test_missing_gpu_runtime_skips_but_broken_file_fails(tiny_artifacts, monkeypatch):
    class DeployError(Exception):  # deploy's error type is recognised by name
        pass

    def no_gpu_runtime(*args, **kwargs):
        raise DeployError("ONNX Runtime here has no CUDAExecutionProvider: install onnxruntime-gpu")

    from compress.validate import backends  # compress.validate is the API function; the package is imported

    monkeypatch.setattr(backends, "_check_gpu_runtime", lambda what: None)
    with pytest.raises(StageSkipped, match="has no CUDAExecutionProvider"):
        open_backend("onnx_cuda", tiny_artifacts["onnx"], provider="cuda", load=no_gpu_runtime)
    with pytest.raises(CheckpointError, match="stage 'onnx': ONNX Runtime here has no"):
        open_backend("onnx", tiny_artifacts["onnx"], provider="cpu", load=no_gpu_runtime)  # on CPU it is an error
