"""Static INT8 quantization with ONNX Runtime, calibrated on real training images.

Why the defaults are what they are (measured on the 2-core AVX-512 VNNI x86 box, see
``benchmarks/results/latency_cpu.md``):
- QDQ format, so the same file feeds ONNX Runtime (which fuses DQ->op->Q into QLinear kernels at
  load time) and TensorRT (which needs explicit Q/DQ).
- uint8 activations x int8 weights (U8S8). ORT's x86 integer GEMM/conv kernels are built around
  ``vpmaddubsw``/VNNI ``vpdpbusd``, which multiply *unsigned* by *signed* bytes; ONNX Runtime's
  default S8S8 has to shift activations first, which is what made the naive model slower than fp32.
- per-channel weights: depthwise and 1x1 layers of mobilenet-style nets have channel ranges that
  differ by orders of magnitude; one scale per tensor destroys the small channels.
- ``reduce_range`` off: it exists for pre-VNNI CPUs where ``vpmaddubsw`` can saturate; with VNNI it
  only costs accuracy.
- ``quant_pre_process`` first (symbolic shape inference + ORT graph optimisation: BatchNorm folded
  into Conv, Conv+Relu fused) so calibration sees the graph that will run, and no Q/DQ pair is
  placed between a conv and a BatchNorm that would prevent fusion.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Protocol, Sequence

import numpy as np

from compress.artifacts import atomic_path, sha256_file, write_sidecar
from compress.errors import ConfigError, ExportError, MissingDependency
from compress.export.memory import EVAL_BATCH
from compress.export.onnx import INPUT_NAME, OUTPUT_NAME, load_onnx, ort_session, set_metadata
from compress.logs import get_logger

logger = get_logger(__name__)

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")


@dataclass(frozen=True)
class QuantConfig:
    method: str = "minmax"
    per_channel: bool = True
    activation_type: str = "uint8"  # "uint8" | "int8"
    weight_type: str = "int8"  # "int8" | "uint8"
    reduce_range: bool = False
    quant_format: str = "qdq"  # "qdq" | "qoperator"
    preprocess: bool = True
    symmetric: bool = False  # zero-point 0 for activations and weights (what TensorRT requires)
    batch_size: int = 32  # calibration batch

    @classmethod
    def for_tensorrt(cls, method: str = "minmax") -> "QuantConfig":
        """TensorRT's explicit quantization takes only signed, symmetric int8 Q/DQ pairs."""
        return cls(method=method, activation_type="int8", weight_type="int8", symmetric=True)

    def validate(self) -> None:
        if self.method not in CALIBRATION_METHODS:
            raise ConfigError(f"method must be one of {', '.join(CALIBRATION_METHODS)} "
                              f"(unknown calibration method '{self.method}')")
        for name, value in (("activation_type", self.activation_type), ("weight_type", self.weight_type)):
            if value not in ("int8", "uint8"):
                raise ConfigError(f"{name} must be int8 or uint8, got '{value}'")
        if self.quant_format not in ("qdq", "qoperator"):
            raise ConfigError(f"quant format must be qdq or qoperator, got '{self.quant_format}'")


def _require_quantization() -> Any:
    try:
        from onnxruntime import quantization
    except ImportError:
        raise MissingDependency("onnxruntime", "onnx", "INT8 quantization") from None
    return quantization


class ImageBatches(Protocol):
    """Calibration images as a re-iterable stream of float32 N x C x H x W batches: every ``iter()`` starts
    from the first batch again, ``len()`` is the number of batches and ``count`` the number of images.
    Calibration holds one batch at a time."""

    count: int

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[np.ndarray]: ...


class ArrayBatches:
    """An in-memory N x C x H x W array as ``ImageBatches``."""

    def __init__(self, images: np.ndarray, batch_size: int) -> None:
        if batch_size < 1:
            raise ConfigError(f"calibration batch size must be at least 1, got {batch_size}")
        self.images, self.batch_size = images, batch_size
        self.count = len(images)

    def __len__(self) -> int:
        return -(-len(self.images) // self.batch_size)

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(0, len(self.images), self.batch_size):
            yield np.ascontiguousarray(self.images[i:i + self.batch_size], np.float32)


def as_batches(calibration: "np.ndarray | ImageBatches", batch_size: int) -> ImageBatches:
    return ArrayBatches(calibration, batch_size) if isinstance(calibration, np.ndarray) else calibration


class _BatchReader:
    """ONNX Runtime ``CalibrationDataReader`` that hands the calibrator one batch per ``collect_data`` call.

    ``quantize_static`` with ``extra_options={"CalibStridedMinMax": 1}`` asks ``len(reader)`` for the number
    of items, then for every stride calls ``set_range(start, end)`` and ``collect_data``. Every calibrator
    (despite the option's name) folds each call into running statistics: MinMax merges the min/max (the same
    ranges as one call over everything), Entropy and Percentile merge histograms. Without it, ONNX Runtime
    keeps every intermediate tensor of every calibration image before building a single histogram (and
    copies them all once more): 21 GB for 512 images on a 224 px mobilenet_v2. Here it holds one batch's.
    """

    def __init__(self, batches: ImageBatches) -> None:
        self.batches = batches
        self._source: Iterator[np.ndarray] | None = None
        self._position = 0  # index of the batch the source yields next
        self._pending: list[np.ndarray] = []

    def __len__(self) -> int:
        return len(self.batches)

    def set_range(self, start_index: int, end_index: int) -> None:
        if self._source is None or start_index < self._position:  # a new pass: start over
            self._source, self._position = iter(self.batches), 0
        while self._position < start_index:
            next(self._source)
            self._position += 1
        self._pending = []
        while self._position < end_index:
            batch = next(self._source, None)
            if batch is None:
                break
            self._pending.append(batch)
            self._position += 1
        self._pending.reverse()

    def get_next(self) -> dict[str, np.ndarray] | None:
        if not self._pending:
            return None
        return {INPUT_NAME: np.ascontiguousarray(self._pending.pop(), np.float32)}


def _optional_arguments(q: Any, nodes_to_exclude: Sequence[str], cache: Any) -> dict[str, Any]:
    """Only the arguments that were asked for, so a default call is exactly the call it always was."""
    extra: dict[str, Any] = {}
    if nodes_to_exclude:
        extra["nodes_to_exclude"] = list(nodes_to_exclude)
    # older onnxruntime releases have no calibration cache: they then simply calibrate on every call
    if cache is not None and "calibration_cache_path" in inspect.signature(q.quantize_static).parameters:
        extra["calibration_cache_path"] = str(cache)
    return extra


def quantize_int8(
    onnx_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    calibration: np.ndarray | ImageBatches,
    config: QuantConfig = QuantConfig(),
    *,
    nodes_to_exclude: Sequence[str] = (),
    calibration_cache: str | os.PathLike[str] | None = None,
) -> Path:
    """Write a static-INT8 copy of ``onnx_path`` calibrated on ``calibration`` (preprocessed float32 images:
    an array, cut into ``config.batch_size`` batches, or a stream of batches). Memory grows with the batch,
    not with the number of images: each batch is folded into running ranges/histograms before the next.

    ``nodes_to_exclude``: nodes of the pre-processed graph kept in float. ``calibration_cache``: a JSON
    file of tensor ranges, written by the first call and read by later ones (calibrate once, quantize often).
    """
    config.validate()
    q = _require_quantization()
    if isinstance(calibration, np.ndarray) and (calibration.ndim != 4 or len(calibration) == 0):
        raise ConfigError(f"calibration images must be a non-empty N x C x H x W array, got {calibration.shape}")
    batches = as_batches(calibration, config.batch_size)
    if len(batches) == 0:
        raise ConfigError("no calibration images: pass at least one batch")
    onnx_path, out_path = Path(onnx_path), Path(out_path)
    source = load_onnx(onnx_path)
    metadata = {p.key: p.value for p in source.metadata_props}
    qtype = {"int8": q.QuantType.QInt8, "uint8": q.QuantType.QUInt8}
    method = {"minmax": q.CalibrationMethod.MinMax, "entropy": q.CalibrationMethod.Entropy,
              "percentile": q.CalibrationMethod.Percentile}[config.method]
    with tempfile.TemporaryDirectory(prefix="compress-int8-") as work, atomic_path(out_path) as tmp:
        model_in = onnx_path
        if config.preprocess:
            model_in = Path(work) / "pre.onnx"
            try:
                q.quant_pre_process(str(onnx_path), str(model_in), skip_symbolic_shape=False)
            except Exception as exc:  # symbolic shape inference fails on a few exotic graphs; plain works too
                model_in = onnx_path
                logger.info(f"note: quantization pre-processing skipped ({str(exc).splitlines()[0][:120]})")
        try:
            # the entropy and percentile calibrators print their progress; an export command needs none of it
            with contextlib.redirect_stdout(io.StringIO()):
                q.quantize_static(
                    str(model_in), str(tmp), _BatchReader(batches),
                    quant_format=q.QuantFormat.QDQ if config.quant_format == "qdq" else q.QuantFormat.QOperator,
                    per_channel=config.per_channel, reduce_range=config.reduce_range,
                    activation_type=qtype[config.activation_type], weight_type=qtype[config.weight_type],
                    calibrate_method=method,
                    calibration_providers=["CPUExecutionProvider"],
                    # signed weights default to symmetric already; activations only when asked (TensorRT)
                    # one batch per collect_data call: running statistics, not every activation kept
                    extra_options={"CalibStridedMinMax": 1, "ActivationSymmetric": config.symmetric,
                                   **({"WeightSymmetric": True} if config.symmetric else {})},
                    **_optional_arguments(q, nodes_to_exclude, calibration_cache),
                )
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ExportError(f"INT8 quantization of '{onnx_path.name}' failed: {first[:200]}") from exc
        model = load_onnx(tmp)
        float_nodes = {"compress.float_nodes": ",".join(nodes_to_exclude)} if nodes_to_exclude else {}
        set_metadata(model, {**metadata, "compress.quantization": str(asdict(config)), **float_nodes})
        import onnx

        onnx.save(model, str(tmp))
    meta = {"quantization": asdict(config), "calibration_images": batches.count,
            **({"float_nodes": list(nodes_to_exclude)} if nodes_to_exclude else {})}
    write_sidecar(out_path, "onnx-int8", meta, {"onnx": sha256_file(onnx_path)})
    return out_path


def onnx_predict(session: Any, images: np.ndarray, batch_size: int = EVAL_BATCH) -> np.ndarray:
    """Logits for preprocessed float32 images through an ONNX Runtime session."""
    outs = [session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(images[i:i + batch_size], np.float32)})[0]
            for i in range(0, len(images), batch_size)]
    return np.concatenate(outs)


@dataclass(frozen=True)
class Int8Report:
    fp32_accuracy: float
    int8_accuracy: float
    agreement: float  # top-1 agreement int8 vs fp32
    n: int
    latency: dict[str, Any]  # per batch size: fp32/int8 p50 ms and the int8/fp32 ratio

    @property
    def accuracy_drop_points(self) -> float:
        return 100.0 * (self.fp32_accuracy - self.int8_accuracy)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "accuracy_drop_points": round(self.accuracy_drop_points, 3)}


def compare_int8(
    fp32_path: str | os.PathLike[str],
    int8_path: str | os.PathLike[str],
    images: np.ndarray,
    labels: np.ndarray,
    *,
    threads: int = 2,
    batch_sizes: tuple[int, ...] = (1, 32),
    rounds: int = 6,
) -> Int8Report:
    """Accuracy of both models on labelled images, and interleaved latency at each batch size."""
    from compress.export.timing import interleaved, ratio

    fp32, int8 = ort_session(fp32_path, threads), ort_session(int8_path, threads)
    ref, got = onnx_predict(fp32, images).argmax(1), onnx_predict(int8, images).argmax(1)
    latency: dict[str, Any] = {}
    for batch in batch_sizes:
        x = np.ascontiguousarray(np.resize(images, (batch, *images.shape[1:])), np.float32)
        feeds = {INPUT_NAME: x}
        results, rounds_p50 = interleaved({"fp32": lambda: fp32.run(None, feeds), "int8": lambda: int8.run(None, feeds)},
                                          batch, rounds=rounds, block_s=0.2, threads=threads)
        latency[str(batch)] = {"fp32_p50_ms": round(results["fp32"].p50_ms, 3),
                               "int8_p50_ms": round(results["int8"].p50_ms, 3),
                               "int8_over_fp32": round(ratio(rounds_p50, "int8", "fp32"), 3)}
    return Int8Report(float((ref == labels).mean()), float((got == labels).mean()), float((ref == got).mean()),
                      len(labels), latency)
