"""INT8 that keeps its accuracy (ONNX Runtime): calibration method by measurement, float fallback by sensitivity.

1. Quantize with every calibration method asked for (minmax, entropy, percentile) and keep the one with
   the best top-1 on a held-out split (ties: the earlier method in the list, minmax being the cheapest).
2. If the top-1 drop against fp32 still exceeds the gate, measure each quantized layer's sensitivity
   and keep the costliest layers in float (``quantize_static(nodes_to_exclude=...)``), one more at a
   time, until the drop is within the gate.

Sensitivity is measured with *only that layer quantized* (all others float), not by leaving one
layer out of a fully quantized model. Both cost the same: one graph rewrite and one pass over the
held-out images per layer, with calibration run once per method and reused from its cache. Only
"one layer only" stays informative when two layers share the damaged tensor: a conv whose output
has an outlier channel and the conv that reads it both quantize that tensor, so excluding either
alone recovers nothing (leave-one-out sees no effect anywhere), while quantizing either alone
collapses accuracy, which ranks both first. Ties in accuracy are broken by the logit error.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from compress.artifacts import read_json, sidecar_path, write_json
from compress.errors import ConfigError
from compress.export.base import within_gate
from compress.export.onnx import load_onnx, ort_session
from compress.export.quantize import CALIBRATION_METHODS, ImageBatches, QuantConfig, onnx_predict, quantize_int8

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


@dataclass(frozen=True)
class FallbackOptions:
    max_drop_points: float = 1.0  # the gate: top-1 drop vs fp32 on the held-out split, in points
    methods: tuple[str, ...] = CALIBRATION_METHODS  # calibration methods to try, in order of preference
    max_float_layers: int = 8  # give up (and report it) after keeping this many layers in float
    threads: int | None = None  # ONNX Runtime threads for the evaluations

    def validate(self) -> None:
        if not self.methods:
            raise ConfigError("no calibration method to try: pass at least one of " + ", ".join(CALIBRATION_METHODS))
        unknown = [m for m in self.methods if m not in CALIBRATION_METHODS]
        if unknown:
            raise ConfigError(f"unknown calibration method '{unknown[0]}': choose {', '.join(CALIBRATION_METHODS)}")
        if not 0 <= self.max_drop_points < 100:
            raise ConfigError(f"max_drop_points must be in [0, 100) points, got {self.max_drop_points}")
        if self.max_float_layers < 0:
            raise ConfigError(f"max_float_layers must be 0 or more, got {self.max_float_layers}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads must be at least 1, got {self.threads}")


@dataclass(frozen=True)
class LayerSensitivity:
    node: str  # node name in the pre-processed graph (what nodes_to_exclude takes)
    op_type: str
    weight: str | None  # the weight initializer's name, which names the PyTorch layer (e.g. "net.4.weight")
    accuracy: float  # held-out top-1 with only this layer quantized
    logit_error: float  # mean squared logit error vs fp32 over the mean square of the fp32 logits


@dataclass(frozen=True)
class FallbackStep:
    float_layers: tuple[str, ...]
    accuracy: float
    drop_points: float


@dataclass(frozen=True)
class Int8Fallback:
    path: Path
    method: str  # the calibration method chosen
    fp32_accuracy: float
    method_accuracy: dict[str, float]  # plain INT8 top-1 per calibration method tried
    sensitivity: tuple[LayerSensitivity, ...]  # costliest first; empty when plain INT8 passed
    steps: tuple[FallbackStep, ...]  # plain INT8 first, then one more float layer per step
    max_drop_points: float
    chosen: int  # index into steps of the model written to path

    @property
    def float_layers(self) -> tuple[str, ...]:
        return self.steps[self.chosen].float_layers

    @property
    def accuracy(self) -> float:
        return self.steps[self.chosen].accuracy

    @property
    def drop_points(self) -> float:
        return self.steps[self.chosen].drop_points

    @property
    def passed(self) -> bool:
        return within_gate(self.drop_points, self.max_drop_points)

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "method": self.method, "fp32_accuracy": self.fp32_accuracy,
                "method_accuracy": self.method_accuracy, "sensitivity": [asdict(s) for s in self.sensitivity],
                "steps": [{**asdict(s), "drop_points": round(s.drop_points, 3)} for s in self.steps],
                "max_drop_points": self.max_drop_points,
                "float_layers": list(self.float_layers), "accuracy": self.accuracy,
                "drop_points": round(self.drop_points, 3), "passed": self.passed}


def quantized_layers(int8_path: str | os.PathLike[str]) -> list[tuple[str, str, str | None]]:
    """(node, op type, weight name) of every node that reads a dequantized tensor in a QDQ model."""
    graph = load_onnx(int8_path).graph
    dequantized = {out: node for node in graph.node if node.op_type == "DequantizeLinear" for out in node.output}
    initializers = {t.name for t in graph.initializer}
    layers = []
    for node in graph.node:
        if node.op_type in QDQ_OPS or not any(i in dequantized for i in node.input):
            continue
        weight = None
        for name in node.input[1:2]:  # Conv/Gemm/MatMul weight slot; its DQ reads "<weight>_quantized"
            source = dequantized.get(name)
            if source is not None and source.input[0] in initializers:
                weight = source.input[0].removesuffix("_quantized")
        layers.append((node.name, node.op_type, weight))
    return layers


class _Evaluator:
    """Top-1 of candidate INT8 models on the held-out split, and their logit error against fp32. A candidate is
    scored batch by batch (``onnx_predict``) and dropped before the next is built: what the search holds is the
    held-out images, their fp32 logits and one session, however many candidates it tries."""

    def __init__(self, fp32_path: Path, images: np.ndarray, labels: np.ndarray | None, threads: int | None):
        self.images, self.threads = images, threads
        self.reference = onnx_predict(ort_session(fp32_path, threads), images)
        self.labels = self.reference.argmax(1) if labels is None else labels
        self.fp32_accuracy = self.top1(self.reference)
        self.scale = float(np.mean(self.reference ** 2)) or 1.0

    def top1(self, logits: np.ndarray) -> float:
        return float((logits.argmax(1) == self.labels).mean())

    def __call__(self, path: Path) -> tuple[float, float]:
        logits = onnx_predict(ort_session(path, self.threads), self.images)
        return self.top1(logits), float(np.mean((logits - self.reference) ** 2)) / self.scale

    def drop(self, accuracy: float) -> float:
        return 100.0 * (self.fp32_accuracy - accuracy)


def _check_inputs(calibration: np.ndarray | ImageBatches, held_out: np.ndarray, labels: np.ndarray | None) -> None:
    arrays = (("calibration", calibration), ("held-out", held_out)) if isinstance(calibration, np.ndarray) else \
        (("held-out", held_out),)
    for name, array in arrays:
        if array.ndim != 4 or len(array) == 0:
            raise ConfigError(f"{name} images must be a non-empty N x C x H x W array, got shape {array.shape}")
    if labels is not None and labels.shape != (len(held_out),):
        raise ConfigError(f"labels must hold one class per held-out image ({len(held_out)}), got shape {labels.shape}")


def _choose_method(onnx_path: Path, work: Path, calibration: np.ndarray | ImageBatches, config: QuantConfig,
                   options: FallbackOptions, evaluate: _Evaluator) -> tuple[str, dict[str, float]]:
    accuracy = {}
    for method in options.methods:
        candidate = quantize_int8(onnx_path, work / f"{method}.onnx", calibration, replace(config, method=method),
                                  calibration_cache=work / f"{method}.calibration.json")
        accuracy[method] = evaluate(candidate)[0]
    best = max(options.methods, key=lambda m: accuracy[m])  # max keeps the first of equal values
    return best, accuracy


def _measure_sensitivity(onnx_path: Path, work: Path, calibration: np.ndarray | ImageBatches, config: QuantConfig,
                         evaluate: _Evaluator) -> list[LayerSensitivity]:
    cache = work / f"{config.method}.calibration.json"
    layers = quantized_layers(work / f"{config.method}.onnx")
    names = [node for node, _, _ in layers]
    measured = []
    for node, op_type, weight in layers:
        probe = quantize_int8(onnx_path, work / "probe.onnx", calibration, config,
                              nodes_to_exclude=[n for n in names if n != node], calibration_cache=cache)
        accuracy, error = evaluate(probe)
        measured.append(LayerSensitivity(node, op_type, weight, accuracy, error))
    return sorted(measured, key=lambda s: (s.accuracy, -s.logit_error))


def quantize_with_fallback(
    onnx_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    calibration: np.ndarray | ImageBatches,
    held_out: np.ndarray,
    labels: np.ndarray | None = None,
    options: FallbackOptions = FallbackOptions(),
    config: QuantConfig = QuantConfig(),
) -> Int8Fallback:
    """Write the INT8 model that stays within ``options.max_drop_points`` of fp32 with the fewest float layers.

    ``held_out`` (preprocessed float32 NCHW, not the calibration images) with ``labels`` measures top-1;
    without labels the fp32 model's own predictions are the labels, so the drop is the disagreement. If no
    step passes within ``max_float_layers`` the most accurate step is written and ``passed`` is False: the
    caller decides whether to ship it. The sidecar records the whole search under ``accuracy_fallback``.
    """
    options.validate()
    config.validate()
    held_out = np.ascontiguousarray(held_out, dtype=np.float32)
    labels = None if labels is None else np.asarray(labels)
    _check_inputs(calibration, held_out, labels)
    onnx_path, out_path = Path(onnx_path), Path(out_path)
    evaluate = _Evaluator(onnx_path, held_out, labels, options.threads)
    with tempfile.TemporaryDirectory(prefix="compress-int8-fallback-") as tmp:
        work = Path(tmp)
        method, method_accuracy = _choose_method(onnx_path, work, calibration, config, options, evaluate)
        config = replace(config, method=method)
        steps = [FallbackStep((), method_accuracy[method], evaluate.drop(method_accuracy[method]))]
        sensitivity: list[LayerSensitivity] = []
        if not within_gate(steps[0].drop_points, options.max_drop_points) and options.max_float_layers > 0:
            sensitivity = _measure_sensitivity(onnx_path, work, calibration, config, evaluate)
            for layer in sensitivity[:options.max_float_layers]:
                keep = (*steps[-1].float_layers, layer.node)
                candidate = quantize_int8(onnx_path, work / "step.onnx", calibration, config, nodes_to_exclude=keep,
                                          calibration_cache=work / f"{method}.calibration.json")
                accuracy = evaluate(candidate)[0]
                steps.append(FallbackStep(keep, accuracy, evaluate.drop(accuracy)))
                if within_gate(steps[-1].drop_points, options.max_drop_points):
                    break
        passing = [i for i, s in enumerate(steps) if within_gate(s.drop_points, options.max_drop_points)]
        chosen = passing[0] if passing else max(range(len(steps)), key=lambda i: steps[i].accuracy)
        quantize_int8(onnx_path, out_path, calibration, config, nodes_to_exclude=steps[chosen].float_layers,
                      calibration_cache=work / f"{method}.calibration.json")
    result = Int8Fallback(out_path, method, evaluate.fp32_accuracy, method_accuracy, tuple(sensitivity),
                          tuple(steps), options.max_drop_points, chosen)
    record = read_json(sidecar_path(out_path))
    write_json(sidecar_path(out_path), {**record, "accuracy_fallback": result.to_dict()})
    return result


def float_layers_latency(onnx_path: str | os.PathLike[str], result: Int8Fallback,
                         calibration: np.ndarray | ImageBatches,
                         images: np.ndarray, config: QuantConfig = QuantConfig(), *, threads: int = 2,
                         batch_sizes: tuple[int, ...] = (1, 32), rounds: int = 6) -> dict[str, dict[str, float]]:
    """What keeping ``result.float_layers`` in float costs: the chosen model against the all-INT8 one (same
    calibration method), timed in interleaved blocks at each batch size. Recorded in the model's sidecar
    under ``accuracy_fallback.latency_cost``; ``{}`` when no layer stayed in float."""
    from compress.export.onnx import INPUT_NAME
    from compress.export.timing import interleaved, ratio

    if not result.float_layers:
        return {}
    config = replace(config, method=result.method)
    cost: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="compress-int8-cost-") as tmp:
        plain = quantize_int8(onnx_path, Path(tmp) / "all-int8.onnx", calibration, config)
        sessions = {"all_int8": ort_session(plain, threads), "float_layers": ort_session(result.path, threads)}
        for batch in batch_sizes:
            feeds = {INPUT_NAME: np.ascontiguousarray(np.resize(images, (batch, *images.shape[1:])), np.float32)}
            stats, rounds_p50 = interleaved({name: (lambda s=s: s.run(None, feeds)) for name, s in sessions.items()},
                                            batch, rounds=rounds, block_s=0.2, threads=threads)
            cost[str(batch)] = {"all_int8_p50_ms": round(stats["all_int8"].p50_ms, 4),
                                "float_layers_p50_ms": round(stats["float_layers"].p50_ms, 4),
                                "ratio": round(ratio(rounds_p50, "float_layers", "all_int8"), 4)}
    record = read_json(sidecar_path(result.path))
    record["accuracy_fallback"] = {**record.get("accuracy_fallback", {}), "latency_cost": cost}
    write_json(sidecar_path(result.path), record)
    return cost
