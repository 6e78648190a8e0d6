"""Fixtures for validation tests: hand-made results, and a tiny real checkpoint + ONNX exports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from compress.validate.accuracy import AccuracyResult
from compress.validate.latency import LatencyStats
from compress.validate.results import StageResult, ValidationResult


def lat(batch: int, threads: int | None, p50: float, p90: float) -> LatencyStats:
    return LatencyStats(batch, threads, 20, p50, p50, p90, p90 * 1.1, p50 * 0.9, p90 * 1.2, batch / (p50 / 1000))


@pytest.fixture
def fixed_result() -> ValidationResult:
    """A student (reference), a good ONNX, an INT8 that lost accuracy, and a skipped TensorRT engine."""
    stages = {
        "student": StageResult("student", "student.safetensors", "pytorch", accuracy=AccuracyResult(1000, 90.0, 99.5, 100.0, 0.0),
                               latency=[lat(1, 2, 4.0, 5.0), lat(32, 2, 40.0, 44.0)], size_bytes=400_000, parameters=98_000),
        "onnx": StageResult("onnx", "model.onnx", "onnxruntime", accuracy=AccuracyResult(1000, 89.9, 99.5, 99.95, 3e-5),
                            latency=[lat(1, 2, 2.0, 2.5), lat(32, 2, 16.0, 18.0)], size_bytes=390_000, parameters=98_000),
        "int8": StageResult("int8", "model.int8.onnx", "onnxruntime", accuracy=AccuracyResult(1000, 88.5, 99.0, 97.0, 0.8),
                            latency=[lat(1, 2, 5.0, 6.0), lat(32, 2, 20.0, 22.0)], size_bytes=110_000, parameters=98_500),
        "trt": StageResult("trt", "model.engine", "", status="skipped",
                           reason="TensorRT engine needs an NVIDIA GPU and none is visible here"),
    }
    for name in ("onnx", "int8"):
        ref = stages["student"].latency
        stages[name].speedups = [{"batch_size": s.batch_size, "threads": s.threads, "reference_threads": s.threads,
                                  "speedup": r.p50_ms / s.p50_ms} for s, r in zip(stages[name].latency, ref)]
    return ValidationResult("student", stages, environment={"cpu": "Test CPU", "cpu_count": 2, "gpu": None,
                                                            "versions": {"torch": "2.x", "compress": "0.1.0"}},
                            data={"name": "fashion-mnist", "samples": 1000})


class OrtRunner:
    """Stand-in for ``deploy.load`` until/unless it exists: ONNX Runtime on CPU, nothing else."""

    def __init__(self, path: Path, threads: int | None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        meta = self.session.get_modelmeta().custom_metadata_map
        self.preprocessing = json.loads(meta["compress.preprocessing"]) if "compress.preprocessing" in meta else None

    def predict_logits(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.session.get_inputs()[0].name: x})[0]


def runtime_load(path: Any, *, provider: str = "cpu", threads: int | None = None, trust: bool = False) -> Any:
    """Use the real ``deploy.load`` when the deploy package provides it, else ``OrtRunner``."""
    try:
        import deploy

        if hasattr(deploy, "load"):
            return deploy.load(path, provider=provider, threads=threads, trust=trust)
    except ImportError:
        pass
    return OrtRunner(Path(path), threads)


def export_onnx_file(module: torch.nn.Module, path: Path, preprocessing: dict, perturb: float = 0.0) -> Path:
    """Export with the TorchScript exporter (fast), optionally add noise to the classifier weights."""
    import onnx
    from onnx import numpy_helper

    from compress.artifacts import write_sidecar

    example = torch.zeros(2, preprocessing["channels"], preprocessing["image_size"], preprocessing["image_size"])
    torch.onnx.export(module, example, str(path), input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, opset_version=18, dynamo=False)
    model = onnx.load(str(path))
    if perturb:
        # the broken export: the classifier's weight matrix gets noise (a wrong-weights export bug)
        rng = np.random.default_rng(0)
        init = next(i for i in model.graph.initializer if i.name.endswith("weight") and len(i.dims) == 2)
        w = numpy_helper.to_array(init)
        init.CopyFrom(numpy_helper.from_array(
            (w + perturb * w.std() * rng.standard_normal(w.shape)).astype(np.float32), init.name))
    entry = model.metadata_props.add()
    entry.key, entry.value = "compress.preprocessing", json.dumps(preprocessing)
    onnx.save(model, str(path))
    write_sidecar(path, "onnx")
    return path


@pytest.fixture(scope="session")
def tiny_artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A small Fashion-MNIST resnet8 (one quick epoch on 2k real images, ~50% top-1: an untrained net
    predicts one class for everything and would make agreement meaningless), a faithful ONNX export
    and a perturbed one."""
    from compress.data import DataConfig, load_data
    from compress.deployable import save_deployable
    from compress.models import create_model

    out = tmp_path_factory.mktemp("artifacts")
    torch.manual_seed(0)
    bundle = load_data(DataConfig("fashion-mnist", train_limit=2048, val_limit=64, batch_size=128, augment=False))
    pre = bundle.preprocessing
    model = create_model("resnet8", 10, in_channels=1, image_size=28)
    optimizer = torch.optim.Adam(model.parameters(), 3e-3)
    for images, labels in bundle.train:
        loss = torch.nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    ckpt = out / "student.safetensors"
    save_deployable(ckpt, model, pre)
    return {
        "student": ckpt,
        "onnx": export_onnx_file(model, out / "model.onnx", pre.to_dict()),
        "broken": export_onnx_file(model, out / "broken.onnx", pre.to_dict(), perturb=1.0),
    }
