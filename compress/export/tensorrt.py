"""ONNX -> serialized TensorRT engine, for TensorRT 10.x and 11.x.

Precision is where the two versions differ:
- TensorRT 10 (weakly typed): an fp32 ONNX plus the ``FP16`` builder flag lets the builder pick
  fp16 kernels; INT8 comes from explicit Q/DQ nodes in the ONNX plus the ``INT8`` flag.
- TensorRT 11 removed those flags; every network is strongly typed, so the *graph* carries the
  precision: fp16 from an fp16 ONNX that we produce (``compress.export.fp16``), INT8 from Q/DQ nodes.
  The ``STRONGLY_TYPED`` creation flag is required for that on 10.x and accepted on 11.x.

Written against the documented TensorRT 10.x / 11.x Python APIs; no GPU with TensorRT is available to
this project's tests, so the build and inference tests carry the ``tensorrt`` marker.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from compress.artifacts import atomic_path, sha256_file, write_sidecar, writing
from compress.bounds import MAX_BATCH, MAX_IMAGES, MAX_WORKSPACE_MB, check_range
from compress.errors import ConfigError, DeviceError, ExportError, MissingDependency
from compress.export.base import ExportSource, Machine, StepResult
from compress.export.onnx import INPUT_NAME, input_channels, load_onnx, read_metadata, require_onnx

PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class Profile:
    """Batch sizes of the optimisation profile: TensorRT tunes kernels for ``opt``, accepts [min, max]."""

    min: int
    opt: int
    max: int

    def validate(self) -> "Profile":
        if self.min < 1:
            raise ConfigError(f"--batch min must be at least 1, got {self.min}")
        if not self.min <= self.opt <= self.max:
            raise ConfigError(f"--batch must satisfy min <= opt <= max, got {self.min},{self.opt},{self.max}")
        check_range("--batch max", self.max, 1, MAX_BATCH)
        return self


def parse_batch(text: str | tuple[int, int, int] | Profile) -> Profile:
    """``"1,8,32"`` (or a tuple) -> validated Profile."""
    if isinstance(text, Profile):
        return text.validate()
    if isinstance(text, str):
        parts = [p.strip() for p in text.split(",")]
        try:
            values = [int(p) for p in parts]
        except ValueError:
            raise ConfigError(f"--batch must be three integers min,opt,max (e.g. 1,8,32), got '{text}'") from None
    else:
        values = list(text)
    if len(values) != 3:
        raise ConfigError(f"--batch must be three integers min,opt,max (e.g. 1,8,32), got '{text}'")
    return Profile(*values).validate()


@dataclass
class TensorRTOptions:
    """The TensorRT backend's options: ``export: {tensorrt: ...}`` in a recipe, ``--precision``/``--batch``/
    ``--workspace-mb``/``--calibration`` on the command line."""

    precision: str = "fp16"  # fp32 | fp16 | int8
    batch: tuple[int, int, int] = (1, 8, 32)  # optimisation profile min, opt, max
    workspace_mb: int = 1024
    calibration: int = 512  # training images, for precision int8

    def validate(self) -> None:
        if self.precision not in PRECISIONS:
            raise ConfigError(f"unknown precision '{self.precision}': choose one of {', '.join(PRECISIONS)}")
        parse_batch(self.batch)
        check_range("workspace_mb", self.workspace_mb, 16, MAX_WORKSPACE_MB)
        if self.calibration < 1:
            raise ConfigError(f"calibration must be at least 1 image, got {self.calibration}")
        check_range("calibration images", self.calibration, 1, MAX_IMAGES)

    def images_needed(self) -> tuple[int, int]:
        return 0, self.calibration if self.precision == "int8" else 0


def tensorrt_step(source: ExportSource, options: TensorRTOptions, folder: Path) -> StepResult:
    """``model.onnx`` -> ``model.plan`` for this machine's GPU (INT8: through a TensorRT-style Q/DQ model)."""
    onnx_path = source.upstream("onnx")
    artifacts: list[Path] = []
    engine_input = onnx_path
    if options.precision == "int8":
        from compress.export.quantize import QuantConfig, quantize_int8

        # TensorRT takes only symmetric signed Q/DQ: a quantization of its own, not the ONNX Runtime one,
        # calibrated the way the int8 backend is (minmax when it is not built)
        images = source.images(0, options.calibration, input_channels(onnx_path))
        int8 = source.options.get("int8")
        method = int8.method if int8 is not None else "minmax"
        engine_input = quantize_int8(onnx_path, folder / "model.trt-int8.onnx", images.calibration,
                                     QuantConfig.for_tensorrt(method))
        artifacts.append(engine_input)
    profile = parse_batch(options.batch)
    source.log(f"building TensorRT engine ({options.precision}, batch {profile.min},{profile.opt},{profile.max}) ...")
    engine = build_engine(engine_input, folder / "model.plan", precision=options.precision, batch=profile,
                          workspace_mb=options.workspace_mb, timing_cache_path=source.cache_dir / "timing.cache")
    return StepResult(artifacts + [engine], {}, f"model.plan ({options.precision}, batch "
                      f"{','.join(map(str, options.batch))})")


def machine() -> Machine:
    """A TensorRT engine is built, and runs, on an NVIDIA GPU with the tensorrt package."""
    import torch

    cuda = bool(torch.cuda.is_available())
    installed = importlib.util.find_spec("tensorrt") is not None
    missing = ("TensorRT needs an NVIDIA GPU and none is visible here" if not cuda else
               "" if installed else "TensorRT is not installed (pip install 'compress-edge[trt]')")
    return Machine({"cuda": cuda, "tensorrt": installed}, missing)


def require_tensorrt() -> Any:
    try:
        import tensorrt
    except ImportError:
        # the package alone is not enough: an engine is built on, and for, the NVIDIA GPU it will run on
        raise MissingDependency("tensorrt", "trt", "building TensorRT engines, which also needs an NVIDIA GPU") from None
    return tensorrt


def tensorrt_major(trt: Any) -> int:
    return int(str(trt.__version__).split(".")[0])


def gpu_name() -> str:
    """Name of CUDA device 0, or DeviceError: TensorRT builds for the GPU it runs on."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart  # cuda-python < 12.6 layout
        except ImportError:
            raise MissingDependency("cuda-python", "trt", "talking to the GPU") from None
    err, count = cudart.cudaGetDeviceCount()
    if int(err) != 0 or count < 1:
        raise DeviceError("no CUDA GPU is visible: TensorRT engines must be built on the GPU they will run on")
    err, props = cudart.cudaGetDeviceProperties(0)
    name = props.name
    return name.decode(errors="replace").rstrip("\x00") if isinstance(name, bytes) else str(name)


def has_qdq(model: Any) -> bool:
    return any(node.op_type in ("QuantizeLinear", "DequantizeLinear") for node in model.graph.node)


def _prepare_onnx(onnx_path: Path, precision: str, major: int, work: Path) -> tuple[Path, bool]:
    """The ONNX file to parse and whether the network is strongly typed."""
    onnx = require_onnx()
    model = load_onnx(onnx_path, onnx)
    if precision == "int8" and not has_qdq(model):
        raise ConfigError(f"--precision int8 needs an ONNX with Q/DQ nodes and '{onnx_path.name}' has none; "
                          "quantize it first (compress export --int8)")
    if precision == "fp16" and major >= 11:
        from compress.export.fp16 import convert_to_fp16

        path = work / "model.fp16.onnx"
        with writing(path):  # a scratch file: a full disk or a bad folder is one line like any artifact's
            onnx.save(convert_to_fp16(model), str(path))
        return path, True
    # TensorRT 11 is always strongly typed; on 10.x fp32 and Q/DQ graphs build either way, and the
    # weakly typed path lets the FP16/INT8 flags act.
    return onnx_path, major >= 11


def build_engine(
    onnx_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    precision: str = "fp16",
    batch: str | tuple[int, int, int] | Profile = (1, 8, 32),
    workspace_mb: int = 1024,
    timing_cache_path: str | os.PathLike[str] | None = None,
) -> Path:
    """Build and write a serialized engine (atomically) with a JSON sidecar; returns its path."""
    profile = parse_batch(batch)
    sizes = (profile.min, profile.opt, profile.max)
    TensorRTOptions(precision=precision, batch=sizes, workspace_mb=workspace_mb).validate()
    onnx_path, out_path = Path(onnx_path), Path(out_path)
    metadata = read_metadata(onnx_path)  # also fails early, with a clear line, on a corrupt ONNX
    trt = require_tensorrt()
    gpu = gpu_name()
    major = tensorrt_major(trt)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    with tempfile.TemporaryDirectory(prefix="compress-trt-") as work:
        parse_path, strongly_typed = _prepare_onnx(onnx_path, precision, major, Path(work))
        flags = 0
        if strongly_typed:
            flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(parse_path)):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise ExportError(f"TensorRT cannot parse '{onnx_path.name}': {errors[:300]}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
        if not strongly_typed and precision == "fp16":
            config.set_flag(trt.BuilderFlag.FP16)
        if not strongly_typed and precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)  # with Q/DQ in the graph this is explicit quantization
            config.set_flag(trt.BuilderFlag.FP16)  # layers outside Q/DQ pairs may still use fp16
        channels_hw = tuple(network.get_input(0).shape)[1:]
        opt_profile = builder.create_optimization_profile()
        opt_profile.set_shape(INPUT_NAME, (profile.min, *channels_hw), (profile.opt, *channels_hw),
                              (profile.max, *channels_hw))
        config.add_optimization_profile(opt_profile)
        # The timing cache keeps kernel measurements between builds: a rebuild takes seconds, not minutes.
        cache_path = Path(timing_cache_path) if timing_cache_path else None
        cache_bytes = cache_path.read_bytes() if cache_path and cache_path.exists() else b""
        cache = config.create_timing_cache(cache_bytes)
        config.set_timing_cache(cache, ignore_mismatch=False)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise ExportError(f"TensorRT could not build an engine from '{onnx_path.name}' "
                              f"(precision {precision}, batch {profile.min},{profile.opt},{profile.max}); "
                              "see the TensorRT log above")
        with atomic_path(out_path) as tmp:
            tmp.write_bytes(bytes(serialized))
        if cache_path:
            with atomic_path(cache_path) as tmp:
                tmp.write_bytes(bytes(config.get_timing_cache().serialize()))
    write_engine_sidecar(out_path, onnx_path, tensorrt_version=str(trt.__version__), gpu=gpu, precision=precision,
                         profile=profile, strongly_typed=strongly_typed, metadata=metadata)
    return out_path


def write_engine_sidecar(engine_path: Path, onnx_path: Path, *, tensorrt_version: str, gpu: str, precision: str,
                         profile: Profile, strongly_typed: bool, metadata: dict[str, Any]) -> dict[str, Any]:
    """``model.plan.json``: what built the engine, for which GPU, from which ONNX (hashes), and the
    preprocessing the torch-free runner needs (an engine file has no metadata of its own)."""
    return write_sidecar(engine_path, "tensorrt-engine", {
        "tensorrt": tensorrt_version,
        "gpu": gpu,
        "precision": precision,
        "strongly_typed": strongly_typed,
        "profile": asdict(profile),
        "input": INPUT_NAME,
        "preprocessing": metadata.get("compress.preprocessing"),
        "architecture": metadata.get("compress.architecture"),
    }, {"onnx": sha256_file(onnx_path)})
