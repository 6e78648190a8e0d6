"""The table of export backends: what ``compress export`` can build and the pipeline's export stages.

Stage names, recipe keys under ``export:``, ``compress export`` flags, the file suffixes ``compress
validate`` recognises and the runtime that runs each artifact all come from here. A new backend is
one file in ``compress/export/`` (its typed options and its step function) and one entry below.
Order matters: a backend comes after the backends it is built from.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from compress.artifacts import sha256_file, sidecar_path
from compress.errors import ConfigError
from compress.export.int8 import Int8Options, int8_step
from compress.export.onnx import OnnxOptions, onnx_step
from compress.export.openvino import OpenVinoIrOptions, openvino_step, require_openvino
from compress.export.openvino_int8 import OpenVinoInt8Options, openvino_int8_step, require_int8_libraries
from compress.export.tensorrt import TensorRTOptions, machine, require_tensorrt, tensorrt_step
from compress.export.base import ExportBackend

BACKENDS: dict[str, ExportBackend] = {backend.name: backend for backend in (
    ExportBackend("onnx", stage="export-onnx", artifact="model.onnx", suffixes=(".onnx",), engine="onnxruntime",
                  flag="onnx", help="Write model.onnx (fp32), checked against PyTorch.",
                  options=OnnxOptions, step=onnx_step, default=True),
    ExportBackend("int8", stage="int8", artifact="model.int8.onnx", suffixes=(".int8.onnx",), engine="onnxruntime",
                  flag="int8", help="Also write model.int8.onnx (ONNX Runtime static INT8, QDQ).",
                  options=Int8Options, step=int8_step, built_from=("onnx",)),
    ExportBackend("openvino", stage="openvino", artifact="model.xml", suffixes=(".xml",), engine="openvino",
                  flag="openvino", help="Also write OpenVINO IR model.xml + model.bin (fp32), checked against PyTorch.",
                  options=OpenVinoIrOptions, step=openvino_step, built_from=("onnx",),
                  preflight=require_openvino, companions=(".bin",)),
    ExportBackend("openvino_int8", stage="openvino-int8", artifact="model.int8.xml",
                  suffixes=(".int8.xml", ".int8-nncf.xml", ".int8-qdq.xml"),
                  engine="openvino", flag="openvino-int8",
                  help="Also write OpenVINO INT8 model.int8.xml: NNCF and our QDQ model both measured, the better "
                       "one kept.",
                  options=OpenVinoInt8Options, step=openvino_int8_step,
                  built_from=("onnx", "int8"), preflight=require_int8_libraries, companions=(".bin",)),
    ExportBackend("tensorrt", stage="tensorrt", artifact="model.plan", suffixes=(".plan", ".engine", ".trt"),
                  engine="tensorrt", flag="trt",
                  help="Also build a TensorRT engine model.plan (needs an NVIDIA GPU + TensorRT).",
                  options=TensorRTOptions, step=tensorrt_step, built_from=("onnx",),
                  cpu_threads=False, preflight=require_tensorrt, machine=machine),
)}


def backend_for_file(path: str | Path) -> ExportBackend | None:
    """The backend whose artifact ``path`` is, by its name's ending (the longest match: ``.int8.onnx`` is
    INT8, not ONNX), or None."""
    name = Path(path).name
    matches = [(len(suffix), backend) for backend in BACKENDS.values() for suffix in backend.suffixes
               if name.endswith(suffix)]
    return max(matches, key=lambda match: match[0])[1] if matches else None


def artifact_files(path: str | Path) -> list[Path]:
    """The files that make up an artifact, in the order to move them: its companions (an IR's .bin), the
    artifact, then its sidecar, so a sidecar never points at a file that is not there yet."""
    path = Path(path)
    backend = backend_for_file(path)
    companions = [path.with_suffix(suffix) for suffix in backend.companions] if backend is not None else []
    return [*companions, path, sidecar_path(path)]


def artifact_sha256(path: str | Path) -> str:
    """The artifact's SHA-256; with companions, the SHA-256 of all their hashes (an IR's .xml stays the same
    when only its weights in the .bin change)."""
    files = artifact_files(path)[:-1]
    if len(files) == 1:
        return sha256_file(files[0])
    return hashlib.sha256(" ".join(sha256_file(f) for f in files).encode()).hexdigest()


def all_suffixes() -> tuple[str, ...]:
    return tuple(suffix for backend in BACKENDS.values() for suffix in backend.suffixes)


def with_sources(names: list[str]) -> list[str]:
    """``names`` and every backend they are built from, in table order (the order they are built in)."""
    unknown = [name for name in names if name not in BACKENDS]
    if unknown:
        raise ConfigError(f"unknown export backend '{unknown[0]}': choose from {', '.join(BACKENDS)}")
    needed = set(names)
    for backend in reversed(list(BACKENDS.values())):  # a backend's sources come before it in the table
        if backend.name in needed:
            needed.update(backend.built_from)
    return [name for name in BACKENDS if name in needed]


def built_from_message(missing: str) -> str:
    """Why a backend cannot be built without ``missing``, naming every backend built from it."""
    dependents = [backend.name for backend in BACKENDS.values() if missing in backend.built_from]
    names = " and ".join([", ".join(dependents[:-1]), dependents[-1]] if len(dependents) > 1 else dependents)
    verb = "are" if len(dependents) > 1 else "is"
    return f"{names} {verb} built from the {missing.upper()} model: add {missing}: {{}}"


__all__ = ["BACKENDS", "all_suffixes", "artifact_files", "artifact_sha256", "backend_for_file", "built_from_message",
           "with_sources"]
