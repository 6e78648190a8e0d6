"""Backends: one small interface over PyTorch eager, ONNX Runtime, OpenVINO and TensorRT.

Validation only ever calls ``predict_logits`` (preprocessed float32 NCHW batch -> logits as numpy) and
``set_threads``. ONNX models, OpenVINO IRs and TensorRT engines run through ``deploy.load`` (the torch-free
runtime that ships to the edge box), so what we validate is exactly what is deployed; no second runtime
lives here. ``open_backend`` picks the backend from the file type.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, runtime_checkable

import numpy as np
import torch

from compress.artifacts import MAX_SIDECAR_BYTES, read_json, sidecar_path
from compress.errors import CheckpointError, CompressError, ConfigError, DeviceError, MissingDependency
from compress.export.backends import all_suffixes, artifact_files, backend_for_file
from compress.record import resolve_checkpoint
from deploy.errors import DeployError  # deploy's one-line errors (no heavy imports: the runtimes load lazily)

TORCH_SUFFIXES = (".safetensors",)
PROVIDERS = ("cpu", "cuda", "tensorrt")
# deploy's messages for a runtime this machine lacks (a GPU stage is then skipped, not failed)
_UNAVAILABLE = ("is not installed", "has no ", "no CUDA GPU")


class StageSkipped(Exception):
    """A stage cannot run on this machine (no GPU, no TensorRT). Reported as ``skipped: <reason>``."""


@runtime_checkable
class Backend(Protocol):
    name: str  # the stage name, e.g. "student", "onnx_int8"
    engine: str  # "pytorch", or the export backend's engine: "onnxruntime" | "openvino" | "tensorrt"
    uses_threads: bool  # False for GPU backends: thread counts do not apply
    max_batch: int | None  # largest batch one call takes (TensorRT profiles), None = any
    min_batch: int | None  # smallest batch the backend accepts, None = 1

    def predict_logits(self, x: np.ndarray | torch.Tensor) -> np.ndarray: ...

    def set_threads(self, threads: int | None) -> None: ...


def as_numpy(x: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.ascontiguousarray(x, dtype=np.float32)


class TorchBackend:
    """PyTorch eager on CPU (or the module's device). ``set_threads`` sets torch's global intra-op pool."""

    engine = "pytorch"
    max_batch: int | None = None
    min_batch: int | None = None

    def __init__(self, name: str, module: torch.nn.Module, device: str | torch.device = "cpu") -> None:
        self.name = name
        self.device = torch.device(device)
        self.module = module.to(self.device).eval()
        self.uses_threads = self.device.type == "cpu"

    def set_threads(self, threads: int | None) -> None:
        if threads is not None and self.uses_threads:
            torch.set_num_threads(threads)

    @torch.inference_mode()
    def predict_logits(self, x: np.ndarray | torch.Tensor) -> np.ndarray:
        tensor = torch.from_numpy(as_numpy(x)) if isinstance(x, np.ndarray) else x
        out = self.module(tensor.to(self.device, dtype=torch.float32))
        if self.device.type == "cuda":
            torch.cuda.synchronize()  # time the work, not the launch
        return out.float().cpu().numpy()


RunnerFactory = Callable[..., Any]  # (path, *, provider, threads, trust) -> Runner with predict_logits


def deploy_load(path: str | os.PathLike[str], *, provider: str = "cpu", threads: int | None = None,
                trust: bool = False) -> Any:
    """The production runtime: ``deploy.load``. Imported lazily (it pulls onnxruntime/tensorrt)."""
    try:
        import deploy
    except ImportError as exc:  # pragma: no cover - deploy ships with compress
        raise MissingDependency("deploy", "onnx", "running ONNX models and TensorRT engines") from exc
    return deploy.load(path, provider=provider, threads=threads, trust=trust)


class RuntimeBackend:
    """An ONNX model (ONNX Runtime, any provider), OpenVINO IR or TensorRT engine, through ``deploy.load``.

    ONNX Runtime and OpenVINO fix their thread count when the session (compiled model) is created, so one runner per thread
    count is opened lazily and kept.
    """

    def __init__(self, name: str, path: Path, *, engine: str, provider: str, trust: bool = False,
                 load: RunnerFactory = deploy_load, cpu_threads: bool = True) -> None:
        self.name, self.path, self.engine, self.provider, self.trust = name, path, engine, provider, trust
        self._load = load
        self.uses_threads = cpu_threads and provider == "cpu"  # a GPU engine, or ONNX Runtime on a GPU: no pool
        self._runners: dict[int | None, Any] = {}
        self._threads: int | None = None
        self.runner = self._runner(None)  # open now: a bad file fails before any timing starts
        self.max_batch = getattr(self.runner, "max_batch", None)
        self.min_batch = getattr(self.runner, "min_batch", None)
        self.preprocessing: dict[str, Any] | None = getattr(self.runner, "preprocessing", None)

    def _runner(self, threads: int | None) -> Any:
        if threads not in self._runners:
            self._runners[threads] = self._load(self.path, provider=self.provider, threads=threads, trust=self.trust)
        return self._runners[threads]

    def set_threads(self, threads: int | None) -> None:
        self._threads = threads if self.uses_threads else None
        self._runner(self._threads)  # open the session now, not inside a timed run

    def predict_logits(self, x: np.ndarray | torch.Tensor) -> np.ndarray:
        try:
            logits = self._runner(self._threads).predict_logits(as_numpy(x))
        except DeployError as exc:  # NaN logits, an output that is not N x classes, a failed run: the file's fault
            raise CheckpointError(f"stage '{self.name}' ({self.path}): {exc}") from None
        return np.asarray(logits, dtype=np.float32)


@dataclass
class ArtifactInfo:
    """What a report says about the file itself."""

    path: str
    kind: str  # "checkpoint", or the engine that runs it ("onnxruntime", "openvino", "tensorrt"): see artifact_kind
    size_bytes: int
    parameters: int | None
    sidecar: dict[str, Any] = field(default_factory=dict)


def artifact_kind(path: Path) -> str:
    """"checkpoint" for PyTorch, else the engine that runs the exported file (its backend's, by suffix)."""
    if path.is_dir() or path.suffix in TORCH_SUFFIXES:
        return "checkpoint"
    backend = backend_for_file(path)
    if backend is None:
        raise ConfigError(f"cannot validate '{path}': expected a .safetensors checkpoint (or its folder) or an "
                          f"exported model ({', '.join(all_suffixes())})")
    return backend.engine


def _read_sidecar_quietly(path: Path) -> dict[str, Any]:
    """The sidecar for metadata only (hash checks belong to the loaders, which honour --trust)."""
    side = sidecar_path(path)
    try:
        record = read_json(side, MAX_SIDECAR_BYTES) if side.exists() else {}
    except CompressError:
        return {}
    return record if isinstance(record, dict) else {}


def _onnx_size_and_parameters(path: Path) -> tuple[int, int | None]:
    """File bytes (model + external data files) and the number of stored weight values."""
    size = path.stat().st_size
    try:
        import onnx
    except ImportError:
        return size, None
    model = onnx.load(str(path), load_external_data=False)
    external = {entry.value for init in model.graph.initializer for entry in init.external_data
                if entry.key == "location"}
    size += sum((path.parent / name).stat().st_size for name in external if (path.parent / name).exists())
    # quantized models store scales and zero points as initializers too; they are counted as stored values
    params = sum(int(np.prod(init.dims)) if len(init.dims) else 1 for init in model.graph.initializer)
    return size, params


def describe_artifact(path: Path, kind: str, module: torch.nn.Module | None = None) -> ArtifactInfo:
    sidecar = _read_sidecar_quietly(path)
    if kind == "checkpoint":
        from compress.models import count_parameters

        params = count_parameters(module) if module is not None else sidecar.get("parameters")
        return ArtifactInfo(str(path), kind, path.stat().st_size, params, sidecar)
    if kind == "onnxruntime":
        size, params = _onnx_size_and_parameters(path)
        return ArtifactInfo(str(path), kind, size, sidecar.get("parameters", params), sidecar)
    # an OpenVINO IR's size is its .xml and the weights .bin beside it (the table's companions)
    size = sum(part.stat().st_size for part in artifact_files(path)[:-1] if part.is_file())
    return ArtifactInfo(str(path), kind, size, sidecar.get("parameters"), sidecar)


def _check_gpu_runtime(what: str) -> None:
    """ONNX Runtime's GPU execution providers need a GPU (whether this build of it has them, deploy says)."""
    if not torch.cuda.is_available():
        raise StageSkipped(f"{what} needs an NVIDIA GPU and none is visible here")


def open_backend(name: str, path: str | os.PathLike[str], *, provider: str = "cpu", trust: bool = False,
                 device: str = "cpu", load: RunnerFactory = deploy_load) -> tuple[Backend, ArtifactInfo, Any]:
    """Open ``path`` as a backend. Returns (backend, artifact info, preprocessing record).

    Raises ``StageSkipped`` when the machine cannot run it (TensorRT or CUDA without a GPU).
    """
    path = Path(path)
    if provider not in PROVIDERS:
        raise ConfigError(f"unknown execution provider '{provider}': choose one of {', '.join(PROVIDERS)}")
    if not path.exists():
        raise CheckpointError(f"'{path}' does not exist: check the path")
    kind = artifact_kind(path)
    if kind == "checkpoint":
        from compress.deployable import load_deployable

        if device != "cpu" and not torch.cuda.is_available():
            raise StageSkipped(f"PyTorch on '{device}' needs a GPU and none is visible here")
        module, preprocessing, _ = load_deployable(path, trust=trust)
        path = resolve_checkpoint(path)  # a run folder stands for its model.safetensors
        return TorchBackend(name, module, device), describe_artifact(path, kind, module), preprocessing.to_dict()
    exported = backend_for_file(path)
    assert exported is not None  # artifact_kind accepted it
    machine = exported.machine() if exported.machine is not None else None
    if machine is not None and machine.missing:  # a TensorRT engine without a GPU: skipped, not failed
        raise StageSkipped(machine.missing)
    if not exported.cpu_threads:  # a GPU engine runs on its own runtime, not on an ONNX Runtime provider
        provider = exported.engine
    elif provider in ("cuda", "tensorrt"):
        _check_gpu_runtime("TensorRT execution provider" if provider == "tensorrt" else "CUDA execution provider")
    on_gpu = not exported.cpu_threads or provider != "cpu"
    try:
        backend = RuntimeBackend(name, path, engine=exported.engine, provider=provider, trust=trust, load=load,
                                 cpu_threads=exported.cpu_threads)
    except (DeviceError, MissingDependency) as exc:
        if not on_gpu:
            raise  # a CPU ONNX stage that cannot run is a broken install, not a skip
        raise StageSkipped(str(exc)) from None
    except Exception as exc:
        if type(exc).__name__ != "DeployError":  # deploy's own error type (it cannot import compress)
            raise
        if on_gpu and any(text in str(exc) for text in _UNAVAILABLE):
            raise StageSkipped(str(exc)) from None
        raise CheckpointError(f"stage '{name}': {exc}") from None
    return backend, describe_artifact(path, kind), backend.preprocessing
