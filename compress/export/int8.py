"""The ``int8`` backend: ``model.onnx`` -> ``model.int8.onnx`` (ONNX Runtime static INT8, QDQ), checked.

Plain, it is one call of ``compress.export.quantize.quantize_int8`` with the chosen calibration method.
With an accuracy gate (``max_top1_drop``, ``--int8-max-drop``) it is ``compress.export.sensitivity``'s
search: every calibration method compared by top-1, then the most sensitive layers kept in float until
the drop is within the gate, with what those float layers cost in latency recorded beside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compress.bounds import MAX_IMAGES, check_range
from compress.errors import ConfigError, ExportError
from compress.export.base import ExportImages, ExportSource, StepResult
from compress.export.memory import activation_bytes, calibration_batch, calibration_bytes, check_fits
from compress.export.onnx import input_channels
from compress.export.quantize import CALIBRATION_METHODS, QuantConfig, compare_int8, quantize_int8
from compress.export.sensitivity import FallbackOptions, float_layers_latency, quantize_with_fallback
from compress.export.timing import speed_words


@dataclass
class Int8Options:
    """The INT8 backend's options: ``export: {int8: ...}`` in a recipe, ``--calibration``/``--calib-method``."""

    calibration: int = 512  # training images used to calibrate the activation ranges
    method: str = "minmax"  # minmax | entropy | percentile
    eval_images: int = 2000  # validation images for the step's own fp32-vs-int8 check
    # set (points of top-1 against fp32 on the eval images): every calibration method is tried (``method``
    # preferred on ties) and the most sensitive layers are kept in float until the drop is within it
    # (``compress.export.sensitivity``); an export that cannot get there fails
    max_top1_drop: float | None = None  # top-1 points INT8 may lose; set: search methods and float layers
    max_float_layers: int = 8  # the most layers that may stay in float before the search gives up

    def validate(self) -> None:
        if self.calibration < 1:
            raise ConfigError(f"calibration must be at least 1 image, got {self.calibration}")
        check_range("calibration images", self.calibration, 1, MAX_IMAGES)
        check_range("eval_images", self.eval_images, 1, MAX_IMAGES)
        if self.eval_images < 1:
            raise ConfigError(f"eval_images must be at least 1, got {self.eval_images}")
        QuantConfig(method=self.method).validate()
        if self.max_top1_drop is not None and not 0 <= self.max_top1_drop < 100:
            raise ConfigError(f"max_top1_drop must be in [0, 100) points, got {self.max_top1_drop}")
        if self.max_float_layers < 0:
            raise ConfigError(f"max_float_layers must be 0 or more, got {self.max_float_layers}")

    def images_needed(self) -> tuple[int, int]:
        return self.eval_images, self.calibration


def int8_step(source: ExportSource, options: Int8Options, folder: Path) -> StepResult:
    """``model.onnx`` -> ``model.int8.onnx`` (static INT8, QDQ), with its accuracy against the fp32 model."""
    onnx_path = source.upstream("onnx")
    images = source.images(options.eval_images, options.calibration, input_channels(onnx_path))
    # a quick latency look in the pipeline: its validate stage times every artifact properly, interleaved
    timing: dict[str, Any] = {} if source.full_checks else {"batch_sizes": (1,), "rounds": 2}
    path = folder / "model.int8.onnx"
    config = _calibration_config(onnx_path, options)
    if options.max_top1_drop is None:
        source.log(f"quantizing to INT8 ({options.method}, {len(images.calibration)} calibration images) ...")
        quantize_int8(onnx_path, path, images.calibration, config)
        fallback: dict[str, Any] = {}
    else:
        fallback = _quantize_within_gate(onnx_path, path, images, options, source, timing, config)
    report = compare_int8(onnx_path, path, images.val_x, images.val_y, **timing)
    source.log(f"int8: top-1 {report.int8_accuracy:.2%} vs fp32 {report.fp32_accuracy:.2%}; "
               + ", ".join(f"batch {b}: {speed_words(v['int8_over_fp32'], 'INT8', 'fp32')}"
                           for b, v in report.latency.items()))
    floats = f", {len(fallback['float_layers'])} layer(s) kept in float" if fallback.get("float_layers") else ""
    return StepResult([path], {"int8": {**report.to_dict(), **({"fallback": fallback} if fallback else {})}},
                      f"model.int8.onnx, top-1 {report.int8_accuracy:.2%} vs fp32 {report.fp32_accuracy:.2%} on "
                      f"{report.n} images{floats}")


def _calibration_config(onnx_path: Path, options: Int8Options) -> QuantConfig:
    """The calibration batch this model's activations allow (``compress.export.memory``); a model whose
    calibration would not fit this machine even so is refused now rather than killed by the kernel later."""
    methods = (options.method,) if options.max_top1_drop is None else CALIBRATION_METHODS
    per_image = activation_bytes(onnx_path)
    batch = calibration_batch(per_image, methods)
    histogram = [m for m in methods if m != "minmax"]
    check_fits(calibration_bytes(per_image, batch, methods),
               f"INT8 calibration ({', '.join(methods)}; {per_image / 2**20:.0f} MB of activations per image, "
               f"batches of {batch})",
               "calibrate with --calib-method minmax and no --int8-max-drop (entropy and percentile hold 2 copies "
               "of a batch's activations)" if histogram else "free memory or export on a larger machine")
    return QuantConfig(method=options.method, batch_size=batch)


def _quantize_within_gate(onnx_path: Path, path: Path, images: ExportImages, options: Int8Options,
                          source: ExportSource, timing: dict[str, Any], config: QuantConfig) -> dict[str, Any]:
    """INT8 within ``options.max_top1_drop``: calibration method by measurement, sensitive layers in float,
    and what those float layers cost in latency. The search and the step's check use the same validation
    images, so the reported drop is the one the search reached; ``compress validate`` measures on more."""
    assert options.max_top1_drop is not None
    methods = (options.method, *(m for m in CALIBRATION_METHODS if m != options.method))
    source.log(f"quantizing to INT8 within {options.max_top1_drop:g} top-1 points of fp32 (trying "
               f"{', '.join(methods)}, up to {options.max_float_layers} layers in float) ...")
    result = quantize_with_fallback(onnx_path, path, images.calibration, images.val_x, images.val_y,
                                    FallbackOptions(max_drop_points=options.max_top1_drop, methods=methods,
                                                    max_float_layers=options.max_float_layers), config)
    if not result.passed:
        raise ExportError(f"INT8 loses {result.drop_points:.2f} points of top-1 against fp32 even with "
                          f"{len(result.float_layers)} layer(s) in float, over the {options.max_top1_drop:g}-point "
                          "gate: allow more (max_float_layers) or a larger drop (--int8-max-drop)")
    cost = float_layers_latency(onnx_path, result, images.calibration, images.val_x, config, **timing)
    if cost:
        source.log(f"int8: kept {', '.join(result.float_layers)} in float; latency against all-INT8: "
                   + ", ".join(f"batch {b}: {v['ratio']:.2f}x" for b, v in cost.items()))
    return {"method": result.method, "method_accuracy": result.method_accuracy,
            "float_layers": list(result.float_layers), "drop_points": round(result.drop_points, 3),
            "max_top1_drop": options.max_top1_drop, "latency_cost": cost}
