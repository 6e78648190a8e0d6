"""Latency and throughput, measured for several backends in the same run.

Absolute milliseconds on a shared 2-core machine drift by tens of percent from minute to minute;
ratios between engines measured side by side do not. So for every (batch size, thread count) the
backends take turns in short interleaved blocks (A B A B ...), with a pause between engines so one
engine's spinning thread pool has gone quiet before the other starts (ONNX Runtime and PyTorch each
keep their own pool, and on 2 cores they fight). Each block starts with a few warm-up runs.
"""

from __future__ import annotations

import math
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from compress.bounds import MAX_BATCH, MAX_DURATION_S, MAX_SEED, MAX_THREADS, check_range, shown, within
from compress.errors import ConfigError
from compress.export.timing import MAX_DRIFT, LatencyStats, block_drift, latency_stats, unreliable  # noqa: F401 (re-exported)

if TYPE_CHECKING:
    from compress.validate.backends import Backend

Timer = Callable[[], float]

MAX_RUNS = 10_000_000  # timed or warm-up runs per block
MAX_BLOCKS = 1000
MAX_PAUSE_S = 60.0
MAX_RETRIES = 100
MAX_INPUT_BYTES = 2 * 2**30  # the random input batch each point is timed on


@dataclass
class LatencyConfig:
    batch_sizes: tuple[int, ...] = (1, 32)
    threads: tuple[int, ...] = (2,)
    duration_s: float = 2.0  # per backend and (batch, threads) point, split over the blocks
    runs: int | None = None  # a fixed number of timed runs instead of a duration
    warmup: int = 3  # untimed runs at the start of each block
    blocks: int = 3  # interleaved blocks per backend
    min_runs: int = 5  # per block, however long a run takes
    pause_s: float = 0.1  # between engines
    seed: int = 0
    # a (batch, threads) point where any engine's block p50s moved more than MAX_DRIFT is timed again, all
    # engines together, up to this many more times; the steadiest attempt is kept, so one disturbed block
    # on a shared machine does not fail a speed-up gate, and a machine that stays disturbed still does
    retries: int = 2

    def validate(self) -> None:
        if not self.batch_sizes or not all(within(b, 1, MAX_BATCH) for b in self.batch_sizes):
            raise ConfigError(f"batch sizes must be at least 1 and at most {MAX_BATCH}, "
                              f"got {shown(list(self.batch_sizes))}")
        if not self.threads or not all(within(t, 1, MAX_THREADS) for t in self.threads):
            raise ConfigError(f"thread counts must be at least 1 and at most {MAX_THREADS}, "
                              f"got {shown(list(self.threads))}")
        if self.runs is None:
            check_range("duration", self.duration_s, 0, MAX_DURATION_S, above=True, hint=" s")
        else:
            check_range("runs", self.runs, 1, MAX_RUNS)
        check_range("latency warmup", self.warmup, 0, MAX_RUNS)
        check_range("latency blocks", self.blocks, 1, MAX_BLOCKS)
        check_range("latency min_runs", self.min_runs, 1, MAX_RUNS)
        check_range("latency pause_s", self.pause_s, 0, MAX_PAUSE_S, hint=" s")
        check_range("latency seed", self.seed, 0, MAX_SEED)
        check_range("latency retries", self.retries, 0, MAX_RETRIES)

    def check_input(self, input_shape: tuple[int, ...]) -> None:
        """The largest batch's random input must fit in memory: refuse it before allocating."""
        per_image = 4 * math.prod(input_shape)  # float32
        largest = max(self.batch_sizes)
        if largest * per_image > MAX_INPUT_BYTES:
            fits = max(MAX_INPUT_BYTES // per_image, 1)
            raise ConfigError(f"batch size {largest} of {'x'.join(map(str, input_shape))} inputs needs "
                              f"{largest * per_image / 2**30:.1f} GiB per batch: choose batch sizes up to {fits}")


def time_runs(fn: Callable[[], object], *, warmup: int, runs: int | None, duration_s: float, min_runs: int = 1,
              timer: Timer = time.perf_counter) -> list[float]:
    """Call ``fn`` ``warmup`` times untimed, then ``runs`` times (or until ``duration_s`` has passed,
    at least ``min_runs`` times); return each run's wall time in seconds."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    start = timer()
    while True:
        t0 = timer()
        fn()
        t1 = timer()
        times.append(t1 - t0)
        if runs is not None:
            if len(times) >= runs:
                break
        elif len(times) >= min_runs and t1 - start >= duration_s:
            break
    return times


def _split(total: int, parts: int) -> list[int]:
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def benchmark(backends: Sequence[Backend], input_shape: tuple[int, ...], cfg: LatencyConfig,
              timer: Timer = time.perf_counter, sleep: Callable[[float], None] = time.sleep) -> dict[str, list[LatencyStats]]:
    """Time every backend at every (batch size, thread count), interleaved. ``input_shape`` is (C, H, W).

    Backends that do not use CPU threads (GPU) are timed once per batch size, with ``threads=None``.
    """
    cfg.validate()
    cfg.check_input(input_shape)
    rng = np.random.default_rng(cfg.seed)
    results: dict[str, list[LatencyStats]] = {b.name: [] for b in backends}
    for batch in cfg.batch_sizes:
        x = rng.standard_normal((batch, *input_shape)).astype(np.float32)
        for t_index, threads in enumerate(cfg.threads):
            # GPU backends once per batch size; an engine whose profile starts above this batch sits it out
            active = [b for b in backends if (b.uses_threads or t_index == 0)
                      and batch >= (getattr(b, "min_batch", None) or 1)]
            if not active:
                continue
            best: tuple[float, dict[str, list[float]], dict[str, list[float]]] | None = None
            for attempt in range(1, cfg.retries + 2):
                times, blocks = _time_point(active, x, threads, cfg, timer, sleep)
                worst = max(block_drift(b) or 1.0 for b in blocks.values())
                if best is None or worst < best[0]:
                    best = (worst, times, blocks)
                if worst <= MAX_DRIFT:
                    break
            assert best is not None  # the loop runs at least once
            _, times, blocks = best
            for backend in active:
                results[backend.name].append(latency_stats(times[backend.name], batch,
                                                           threads if backend.uses_threads else None,
                                                           blocks[backend.name], attempt))
    return results


def _time_point(active: Sequence[Backend], x: np.ndarray, threads: int, cfg: LatencyConfig, timer: Timer,
                sleep: Callable[[float], None]) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """One attempt at a (batch, threads) point: every engine in turn, ``cfg.blocks`` times. Returns each
    engine's run times (s) and each block's p50 (ms)."""
    times: dict[str, list[float]] = {b.name: [] for b in active}
    blocks: dict[str, list[float]] = {b.name: [] for b in active}
    runs = _split(cfg.runs, cfg.blocks) if cfg.runs is not None else [None] * cfg.blocks
    for block in range(cfg.blocks):
        for backend in active:  # the reference is one of them: timed in the same blocks as the others
            backend.set_threads(threads if backend.uses_threads else None)
            n = runs[block]
            if n == 0:
                continue
            timed = time_runs(lambda: backend.predict_logits(x), warmup=cfg.warmup, runs=n,
                              duration_s=cfg.duration_s / cfg.blocks, min_runs=cfg.min_runs, timer=timer)
            times[backend.name] += timed
            blocks[backend.name].append(1000.0 * float(np.median(timed)))
            if cfg.pause_s > 0 and len(active) > 1:
                sleep(cfg.pause_s)
    return times, blocks


def find_stats(stats: Sequence[LatencyStats], batch_size: int, threads: int | None) -> LatencyStats | None:
    """The point at (batch, threads); a GPU backend's single point (threads None) matches any thread count."""
    for s in stats:
        if s.batch_size == batch_size and (s.threads == threads or s.threads is None):
            return s
    return None


def speedups(stats: Sequence[LatencyStats], reference: Sequence[LatencyStats]) -> list[dict]:
    """Reference p50 / this p50 at each point both measured: > 1 means faster than the reference."""
    out = []
    for s in stats:
        if s.threads is not None:
            ref = find_stats(reference, s.batch_size, s.threads)
        else:  # a GPU backend against the reference's best-provisioned CPU point at that batch
            same_batch = [r for r in reference if r.batch_size == s.batch_size]
            ref = max(same_batch, key=lambda r: r.threads or 0) if same_batch else None
        if ref is not None and s.p50_ms > 0:
            out.append({"batch_size": s.batch_size, "threads": s.threads, "reference_threads": ref.threads,
                        "speedup": ref.p50_ms / s.p50_ms})
    return out


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@dataclass
class EnvironmentRecord:
    cpu: str
    cpu_count: int
    gpu: str | None
    versions: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def environment_record() -> EnvironmentRecord:
    import torch

    from compress.artifacts import environment

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    try:  # record what was actually used, not only what happened to be imported already
        import onnxruntime  # noqa: F401
    except ImportError:
        pass
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return EnvironmentRecord(cpu_model(), count, gpu, environment())
