"""The ``openvino_int8`` backend: OpenVINO INT8 two ways, measured side by side, the better one shipped.

Routes (``compress.export.openvino``): ``nncf``, NNCF post-training quantization of the IR, calibrated on
the same first N training images the ONNX Runtime INT8 uses; ``qdq``, OpenVINO reading our own QDQ
``model.int8.onnx`` (so an INT8 model that keeps sensitive layers in float, ``int8.max_top1_drop``,
keeps them in float here too). Which is better depends on the model and the CPU, so both are built and
measured: top-1 on validation images and latency in interleaved blocks (``compress.export.timing``).
The fastest route within ``max_top1_drop`` points of the fp32 model is shipped as ``model.int8.xml``;
its sidecar records every route's numbers and why it won.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from compress.artifacts import sha256_file
from compress.errors import ConfigError, ExportError
from compress.export.base import ExportSource, StepResult, within_gate
from compress.export.onnx import input_channels, ort_session
from compress.export.openvino import (INT8_ROUTES, OpenVinoOptions, build_int8_irs, compile_ir, convert_onnx,
                                      ir_predict, publish_ir, require_nncf, require_openvino, save_ir,
                                      write_ir_sidecar)
from compress.export.memory import EVAL_BATCH
from compress.export.quantize import onnx_predict

INT8_FILE = "model.int8.xml"


@dataclass(frozen=True)
class OpenVinoInt8Options:
    """The ``openvino_int8`` backend's options: ``export: {openvino_int8: ...}`` (``--openvino-int8``)."""

    routes: tuple[str, ...] = INT8_ROUTES  # built and measured; the better one is shipped
    calibration: int = 512  # training images NNCF calibrates on (the first N, as the ONNX INT8's)
    nncf_preset: str = "mixed"  # "mixed": asymmetric activations (ReLU nets); "performance": symmetric
    fast_bias_correction: bool = True
    eval_images: int = 2000  # validation images the routes' top-1 is measured on
    max_top1_drop: float = 1.0  # points of top-1 a route may lose against fp32 and still be chosen
    threads: int = 2  # CPU threads the routes are timed with

    def validate(self) -> None:
        if not self.routes:
            raise ConfigError(f"no OpenVINO INT8 route to build: name at least one of {', '.join(INT8_ROUTES)}")
        OpenVinoOptions(int8=tuple(self.routes), nncf_preset=self.nncf_preset).validate()
        for name in ("calibration", "eval_images", "threads"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0 <= self.max_top1_drop < 100:
            raise ConfigError(f"max_top1_drop must be in [0, 100) points, got {self.max_top1_drop}")

    def images_needed(self) -> tuple[int, int]:
        return self.eval_images, self.calibration if "nncf" in self.routes else 0


def require_int8_libraries() -> None:
    """OpenVINO, and NNCF for the default routes: both reported missing before any export work."""
    require_openvino()
    require_nncf()


@dataclass(frozen=True)
class RouteMeasure:
    top1: float  # on the validation images
    drop_points: float  # fp32 top-1 minus this, in points
    p50_ms: dict[int, float]  # batch size -> median latency
    ratio: dict[int, float]  # batch size -> per-round median p50 ratio against the first route

    def to_dict(self) -> dict[str, Any]:
        return {"top1": round(self.top1, 5), "drop_points": round(self.drop_points, 3),
                "p50_ms": {str(b): round(v, 4) for b, v in self.p50_ms.items()},
                "ratio": {str(b): round(v, 4) for b, v in self.ratio.items()}}


def choose_route(measured: Mapping[str, RouteMeasure], max_drop: float) -> tuple[str, str]:
    """(route, why): the fastest at the smallest batch timed among the routes within ``max_drop`` points;
    ``ExportError`` when none is."""
    within = [route for route, m in measured.items() if within_gate(m.drop_points, max_drop)]
    if not within:
        drops = ", ".join(f"{route} {m.drop_points:.2f}" for route, m in measured.items())
        raise ExportError(f"OpenVINO INT8 loses more than {max_drop:g} points of top-1 against fp32 ({drops}): "
                          "raise openvino_int8.max_top1_drop, or build the INT8 ONNX with --int8-max-drop so "
                          "the qdq route keeps the sensitive layers in float")
    batch = min(next(iter(measured.values())).ratio)
    best = min(within, key=lambda route: measured[route].ratio[batch])  # min keeps the first of equal values
    others = [r for r in measured if r != best]
    if not others:
        return best, f"the only route built; top-1 drop {measured[best].drop_points:.2f} points"
    lost = "; ".join(f"{r}: {measured[r].drop_points:.2f} points" + (
        f", {measured[r].ratio[batch] / measured[best].ratio[batch]:.2f}x its batch-{batch} latency"
        if r in within else f", over the {max_drop:g}-point gate") for r in others)
    return best, (f"fastest at batch {batch} within the {max_drop:g}-point gate (drop "
                  f"{measured[best].drop_points:.2f} points); {lost}")


def measure_routes(irs: Mapping[str, Path], images: np.ndarray, labels: np.ndarray, fp32_top1: float,
                   batch_sizes: Sequence[int], threads: int, rounds: int) -> dict[str, RouteMeasure]:
    """Top-1 of each IR (f32 inference, as deployed) and its latency, all routes timed interleaved."""
    from compress.export.timing import interleaved, ratio

    compiled = {route: compile_ir(path, "f32", threads) for route, path in irs.items()}
    top1 = {route: float((ir_predict(c, images, EVAL_BATCH).argmax(1) == labels).mean()) for route, c in compiled.items()}
    requests = {route: c.create_infer_request() for route, c in compiled.items()}
    first = next(iter(irs))
    p50: dict[str, dict[int, float]] = {route: {} for route in irs}
    ratios: dict[str, dict[int, float]] = {route: {} for route in irs}
    for batch in batch_sizes:
        x = np.ascontiguousarray(np.resize(images, (batch, *images.shape[1:])), np.float32)
        stats, rounds_p50 = interleaved({route: (lambda r=request: r.infer({0: x})) for route, request in
                                         requests.items()}, batch, rounds=rounds, block_s=0.2, threads=threads)
        for route in irs:
            p50[route][batch] = stats[route].p50_ms
            ratios[route][batch] = ratio(rounds_p50, route, first)
    return {route: RouteMeasure(top1[route], 100.0 * (fp32_top1 - top1[route]), p50[route], ratios[route])
            for route in irs}


def openvino_int8_step(source: ExportSource, options: OpenVinoInt8Options, folder: Path) -> StepResult:
    """``model.onnx`` (+ ``model.int8.onnx``) -> ``model.int8.xml``: every route built, measured, the best kept."""
    require_openvino()
    onnx_path = source.upstream("onnx")
    qdq_onnx = source.upstream("int8") if "qdq" in options.routes else None
    images = source.images(options.eval_images, options.calibration if "nncf" in options.routes else 0,
                           input_channels(onnx_path))
    fp32_top1 = float((onnx_predict(ort_session(onnx_path, options.threads), images.val_x).argmax(1)
                       == images.val_y).mean())
    build = OpenVinoOptions(int8=tuple(options.routes), nncf_preset=options.nncf_preset,
                            fast_bias_correction=options.fast_bias_correction)
    # a quick look in the pipeline (its validate stage times the shipped model properly), batch 1 and 32 here
    batches, rounds = ((1, 32), 6) if source.full_checks else ((1,), 2)
    with tempfile.TemporaryDirectory(prefix=".openvino-int8-", dir=folder) as tmp:
        stage = Path(tmp)
        source.log(f"OpenVINO INT8: building the {' and '.join(options.routes)} route(s) ...")
        irs = build_int8_irs(convert_onnx(onnx_path) if "nncf" in options.routes else None, stage, build,
                             images.calibration if "nncf" in options.routes else None, qdq_onnx,
                             sha256_file(onnx_path))
        measured = measure_routes(irs, images.val_x, images.val_y, fp32_top1, batches, options.threads, rounds)
        route, why = choose_route(measured, options.max_top1_drop)
        source.log(f"openvino_int8: {route} ({why})")
        chosen = save_ir(require_openvino().Core().read_model(str(irs[route])), stage / INT8_FILE, False)
        inputs = {"onnx": sha256_file(onnx_path), **({"onnx-int8": sha256_file(qdq_onnx)} if qdq_onnx else {})}
        check = {"route": route, "why": why, "fp32_top1": round(fp32_top1, 5), "n": len(images.val_y),
                 "max_top1_drop": options.max_top1_drop, "routes": {r: m.to_dict() for r, m in measured.items()}}
        write_ir_sidecar(chosen, "openvino-int8", {**check, "nncf_preset": options.nncf_preset,
                                                   "calibration_images": len(images.calibration)}, inputs)
        path = publish_ir(chosen, folder)
    return StepResult([path], {"openvino_int8": check}, f"{INT8_FILE} ({route}), top-1 "
                      f"{measured[route].top1:.2%} vs fp32 {fp32_top1:.2%} on {len(images.val_y)} images")
