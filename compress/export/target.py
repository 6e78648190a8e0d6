"""``--target cpu``: build every backend this CPU can run, measure them side by side, ship the fastest that keeps
its accuracy.

Three parts, each on its own:
- ``target_backends``: the candidates, every CPU backend of the table whose libraries are installed.
- ``measure``: each candidate's top-1 on validation images and its latency at each batch size, every
  candidate timed in interleaved blocks in the same run (``compress.export.timing``), through the
  runners that ship (``deploy.load``), so a ratio between two rows is measured seconds apart.
- ``select``: a pure function of that table. At each batch size, among the candidates within
  ``max_top1_drop`` points of the PyTorch student's top-1, the lowest per-round latency ratio against
  the ONNX fp32 model wins. Batch 1 (latency) and a large batch (throughput) may pick different winners:
  each is shipped, and the table says which is for which.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from compress.bounds import MAX_BATCH, MAX_DURATION_S, MAX_IMAGES, MAX_THREADS, check_range
from compress.errors import ConfigError, ExportError, MissingDependency
from compress.export.backends import BACKENDS
from compress.export.base import within_gate
from compress.export.memory import EVAL_BATCH

TARGETS = ("cpu",)
BASELINE = "onnx"  # latency ratios are against the ONNX fp32 model, which every candidate is built from
GATED = ("int8", "openvino_int8")  # backends with an accuracy gate of their own (``max_top1_drop``)


@dataclass(frozen=True)
class TargetOptions:
    """``--target cpu`` / ``export: {target: {...}}``: what the fastest deployable is chosen for."""

    device: str = "cpu"
    batch_sizes: tuple[int, ...] = (1, 32)  # a winner for each; batch 1 is latency, larger ones throughput
    threads: int = 2  # the CPU threads the model gets when deployed
    max_top1_drop: float = 1.0  # points of top-1 a candidate may lose against the PyTorch student
    eval_images: int = 2000  # validation images for the top-1 of every candidate
    rounds: int = 6  # interleaved rounds per batch size
    block_s: float = 0.2  # seconds each candidate runs per round

    def validate(self) -> None:
        if self.device not in TARGETS:
            raise ConfigError(f"unknown target '{self.device}': choose {' or '.join(TARGETS)}")
        if not self.batch_sizes or len(set(self.batch_sizes)) != len(self.batch_sizes):
            raise ConfigError(f"target batch sizes must be distinct numbers >= 1, got {list(self.batch_sizes)}")
        for size in self.batch_sizes:
            check_range("target batch sizes", size, 1, MAX_BATCH)
        check_range("target threads", self.threads, 1, MAX_THREADS)
        check_range("target eval_images", self.eval_images, 1, MAX_IMAGES)
        check_range("target rounds", self.rounds, 1, 1000)
        check_range("target max_top1_drop", self.max_top1_drop, 0, 100, below=True, hint=" points")
        check_range("target block_s", self.block_s, 0, MAX_DURATION_S, above=True, hint=" s")

    def images_needed(self) -> tuple[int, int]:
        return self.eval_images, 0


def target_backends(options: TargetOptions) -> tuple[list[str], dict[str, str]]:
    """(candidates in table order, unavailable backend -> why): every backend that runs on CPU threads and
    whose libraries are installed here."""
    candidates, unavailable = [], {}
    for name, backend in BACKENDS.items():
        if not backend.cpu_threads:
            continue
        try:
            if backend.preflight is not None:
                backend.preflight()
        except MissingDependency as exc:
            unavailable[name] = str(exc)
            continue
        candidates.append(name)
    return candidates, unavailable


def gated_options(options: Mapping[str, Any], target: TargetOptions) -> dict[str, Any]:
    """Every backend's options, the INT8 backends' own accuracy gates made at most the target's: ONNX INT8
    then searches calibration methods and keeps sensitive layers in float to stay within it, and OpenVINO
    INT8 picks its route within it. An INT8 model the target would reject anyway is not worth shipping."""
    out = dict(options)
    for name in GATED:
        current = out.get(name) or BACKENDS[name].options()
        gate = current.max_top1_drop
        out[name] = replace(current, max_top1_drop=target.max_top1_drop if gate is None else
                            min(gate, target.max_top1_drop))
    return out


@dataclass(frozen=True)
class Measured:
    """One row of the table: a candidate's accuracy and its latency at each batch size."""

    name: str  # the backend
    file: str  # its artifact
    engine: str
    top1: float
    drop_points: float  # the PyTorch student's top-1 minus this one's, in points
    p50_ms: dict[int, float]
    throughput: dict[int, float]  # images per second, from the mean latency
    ratio: dict[int, float]  # per-round median p50 ratio against the baseline (< 1: faster)


def _signed_points(value: float) -> str:
    """``+0.40``, ``-1.25``; a difference that rounds to nothing is ``+0.00``, never ``-0.00``."""
    return f"{round(value, 2) + 0.0:+.2f}"


@dataclass(frozen=True)
class Pick:
    batch: int
    name: str
    why: str


def select(table: Sequence[Measured], batch_sizes: Sequence[int], max_drop: float) -> tuple[Pick, ...]:
    """At each batch size, the candidate with the lowest latency ratio among those within ``max_drop``
    points of the student's top-1 (ties: the earlier row, i.e. the simpler backend)."""
    within = [row for row in table if within_gate(row.drop_points, max_drop)]
    over = [row for row in table if row not in within]
    if not within:
        drops = ", ".join(f"{row.name} {row.drop_points:.2f}" for row in table)
        raise ExportError(f"no candidate stays within {max_drop:g} points of the student's top-1 ({drops}): "
                          "raise the gate (--int8-max-drop / target.max_top1_drop)")
    picks = []
    for batch in batch_sizes:
        ranked = sorted(within, key=lambda row: row.ratio[batch])  # sorted is stable: ties keep table order
        best = ranked[0]
        why = (f"fastest at batch {batch} of {len(within)} candidate(s) within the {max_drop:g}-point top-1 gate: "
               f"{best.ratio[batch]:.2f}x the {BASELINE} p50, top-1 {_signed_points(-best.drop_points)} points vs "
               "the student")
        if len(ranked) > 1:
            why += f"; next {ranked[1].name} at {ranked[1].ratio[batch]:.2f}x"
        if over:
            why += "; over the gate: " + ", ".join(f"{row.name} ({row.drop_points:.2f} points)" for row in over)
        picks.append(Pick(batch, best.name, why))
    return tuple(picks)


@dataclass
class Selection:
    """The measured table, the winner at each batch size and what could not be built."""

    options: TargetOptions
    reference_top1: float  # the PyTorch student's top-1 on the same images
    images: int
    table: list[Measured]
    picks: tuple[Pick, ...]
    not_built: dict[str, str] = field(default_factory=dict)  # backend -> why (missing library, failed gate)

    @property
    def shipped(self) -> list[str]:
        """The winners, each once, in the order of the batch sizes they win."""
        return list(dict.fromkeys(pick.name for pick in self.picks))

    def to_dict(self) -> dict[str, Any]:
        return {"options": {**asdict(self.options), "batch_sizes": list(self.options.batch_sizes)},
                "reference_top1": self.reference_top1, "images": self.images,
                "table": [asdict(row) for row in self.table], "picks": [asdict(pick) for pick in self.picks],
                "shipped": self.shipped, "not_built": self.not_built}

    def to_markdown(self) -> str:
        o = self.options
        batches = list(o.batch_sizes)
        wins = {name: [p.batch for p in self.picks if p.name == name] for name in self.shipped}
        header = ["candidate", "engine", "file", "top-1", "Δ vs student"]
        header += [part for b in batches for part in (f"p50 ms b{b}", f"img/s b{b}", f"× {BASELINE} b{b}")]
        lines = [f"## Fastest deployable for the {o.device.upper()} ({o.threads} threads)", "",
                 f"Top-1 on {self.images} validation images against the PyTorch student's {self.reference_top1:.2%}; "
                 f"gate: a drop of at most {o.max_top1_drop:g} points. Latency: every candidate timed in interleaved "
                 f"blocks, {o.rounds} rounds of {o.block_s:g} s; × = per-round median p50 ratio against "
                 f"{BASELINE} (lower is faster).", "",
                 "| " + " | ".join(header + ["shipped for"]) + " |", "|" + "---|" * (len(header) + 1)]
        for row in self.table:
            cells = [row.name, row.engine, f"`{row.file}`", f"{row.top1:.2%}", _signed_points(-row.drop_points)]
            cells += [part for b in batches for part in (f"{row.p50_ms[b]:.3f}", f"{row.throughput[b]:.0f}",
                                                         f"{row.ratio[b]:.2f}")]
            shipped = ", ".join(f"batch {b}" for b in wins.get(row.name, []))
            lines.append("| " + " | ".join(cells + [f"**{shipped}**" if shipped else "–"]) + " |")
        for name, why in self.not_built.items():
            lines.append("| " + " | ".join([name, "–", f"not built: {why}"] + ["–"] * (len(header) - 2)) + " |")
        lines.append("")
        for pick in self.picks:
            role = "latency" if pick.batch == 1 else "throughput"
            lines.append(f"* batch {pick.batch} ({role}): **{pick.name}** — {pick.why}.")
        return "\n".join(lines) + "\n"


def predict(runner: Any, images: np.ndarray, batch_size: int = EVAL_BATCH) -> np.ndarray:
    return np.concatenate([runner.predict_logits(np.ascontiguousarray(images[i:i + batch_size], np.float32))
                           for i in range(0, len(images), batch_size)])


def measure(runners: Mapping[str, Any], files: Mapping[str, str], engines: Mapping[str, str], images: np.ndarray,
            labels: np.ndarray, reference_top1: float, options: TargetOptions, *,
            timer: Callable[[], float] = time.perf_counter,
            sleep: Callable[[float], None] = time.sleep) -> list[Measured]:
    """Top-1 of every runner on ``images``, then latency at each batch size with all runners interleaved.
    ``runners`` (name -> an object with ``predict_logits``) are in table order, the baseline among them."""
    from compress.export.timing import interleaved, ratio

    if BASELINE not in runners:
        raise ConfigError(f"the target's candidates must include the {BASELINE} model, the latency baseline")
    top1 = {name: float((predict(runner, images).argmax(1) == labels).mean()) for name, runner in runners.items()}
    p50: dict[str, dict[int, float]] = {name: {} for name in runners}
    throughput: dict[str, dict[int, float]] = {name: {} for name in runners}
    ratios: dict[str, dict[int, float]] = {name: {} for name in runners}
    for batch in options.batch_sizes:
        x = np.ascontiguousarray(np.resize(images, (batch, *images.shape[1:])), np.float32)
        calls = {name: (lambda r=runner: r.predict_logits(x)) for name, runner in runners.items()}
        stats, rounds_p50 = interleaved(calls, batch, rounds=options.rounds, block_s=options.block_s,
                                        threads=options.threads, timer=timer, sleep=sleep)
        for name in runners:
            p50[name][batch], throughput[name][batch] = stats[name].p50_ms, stats[name].throughput
            ratios[name][batch] = ratio(rounds_p50, name, BASELINE)
    return [Measured(name, files[name], engines[name], top1[name], 100.0 * (reference_top1 - top1[name]), p50[name],
                     throughput[name], ratios[name]) for name in runners]


def student_top1(module: Any, images: np.ndarray, labels: np.ndarray) -> float:
    """The PyTorch student's top-1: the reference every candidate's drop is measured from."""
    import torch

    module = module.eval().cpu()
    with torch.inference_mode():  # one batch at a time: a 224 px batch of 256 holds gigabytes of activations
        logits = np.concatenate([module(torch.from_numpy(np.ascontiguousarray(images[i:i + EVAL_BATCH], np.float32)))
                                 .numpy() for i in range(0, len(images), EVAL_BATCH)])
    return float((logits.argmax(1) == labels).mean())


def choose_target(files: Mapping[str, Path], module: Any, images: np.ndarray, labels: np.ndarray,
                  options: TargetOptions, not_built: Mapping[str, str]) -> Selection:
    """Open every built candidate with the runner that ships it, measure them together, pick the winners."""
    import deploy

    runners = {name: deploy.load(path, threads=options.threads) for name, path in files.items()}
    reference = student_top1(module, images, labels)
    table = measure(runners, {n: Path(p).name for n, p in files.items()}, {n: BACKENDS[n].engine for n in files},
                    images, labels, reference, options)
    return Selection(options, reference, len(labels), table, select(table, options.batch_sizes, options.max_top1_drop),
                     dict(not_built))
