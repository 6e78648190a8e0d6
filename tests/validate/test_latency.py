"""Latency statistics on known sequences and a fake clock: exact numbers, no real timing."""

from __future__ import annotations

import numpy as np
import pytest

from compress.errors import ConfigError
from compress.validate.latency import LatencyConfig, benchmark, cpu_model, latency_stats, speedups, time_runs


def test_stats_of_a_known_sequence():
    stats = latency_stats([ms / 1000 for ms in range(1, 101)], batch_size=4, threads=2)  # 1..100 ms
    assert stats.runs == 100
    assert stats.mean_ms == pytest.approx(50.5)
    assert stats.p50_ms == pytest.approx(50.5)  # linear interpolation between order statistics
    assert stats.p90_ms == pytest.approx(90.1)
    assert stats.p99_ms == pytest.approx(99.01)
    assert (stats.min_ms, stats.max_ms) == pytest.approx((1.0, 100.0))
    assert stats.throughput == pytest.approx(4 / 0.0505)
    single = latency_stats([0.002], 1, None)
    assert single.p50_ms == single.p99_ms == pytest.approx(2.0)


class FakeClock:
    """Each backend call advances time by its cost; the timer just reads the clock."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_time_runs_counts_warmup_runs_and_duration():
    clock = FakeClock()
    calls = []

    def fn():
        calls.append(clock.now)
        clock.now += 0.010

    times = time_runs(fn, warmup=2, runs=5, duration_s=99, timer=clock)
    assert len(calls) == 7 and times == pytest.approx([0.010] * 5)
    calls.clear()
    times = time_runs(fn, warmup=0, runs=None, duration_s=0.095, min_runs=3, timer=clock)
    assert len(times) == 10  # 10 runs of 10 ms reach 95 ms
    times = time_runs(fn, warmup=0, runs=None, duration_s=0.001, min_runs=3, timer=clock)
    assert len(times) == 3  # but never fewer than min_runs


class FakeBackend:
    def __init__(self, name: str, cost_per_image_s: float, clock: FakeClock, log: list, uses_threads: bool = True):
        self.name, self.cost, self.clock, self.log = name, cost_per_image_s, clock, log
        self.engine, self.uses_threads, self.max_batch = "fake", uses_threads, None
        self.threads = None

    def set_threads(self, threads):
        self.threads = threads
        self.log.append((self.name, "threads", threads))

    def predict_logits(self, x):
        # more threads, proportionally faster: lets the test check which thread count was active
        self.clock.now += self.cost * len(x) / (self.threads or 1)
        return np.zeros((len(x), 10), dtype=np.float32)


def test_benchmark_interleaves_engines_and_pauses_between_them():
    clock, log, pauses = FakeClock(), [], []
    torch_like = FakeBackend("torch", 0.004, clock, log)
    ort_like = FakeBackend("ort", 0.001, clock, log)
    gpu_like = FakeBackend("gpu", 0.0005, clock, log, uses_threads=False)
    cfg = LatencyConfig(batch_sizes=(1, 8), threads=(1, 2), runs=6, blocks=3, warmup=1, pause_s=0.05)
    out = benchmark([torch_like, ort_like, gpu_like], (1, 4, 4), cfg, timer=clock, sleep=pauses.append)
    # blocks alternate engines: torch, ort, gpu, torch, ort, gpu, ... for the first thread count
    order = [name for name, _, _ in log[:6]]
    assert order == ["torch", "ort", "gpu", "torch", "ort", "gpu"]
    assert [s.threads for s in out["torch"]] == [1, 2, 1, 2]
    assert [s.threads for s in out["gpu"]] == [None, None]  # once per batch size
    assert all(s.runs == 6 for s in out["torch"])
    assert out["torch"][0].p50_ms == pytest.approx(4.0)  # batch 1, 1 thread
    assert out["torch"][1].p50_ms == pytest.approx(2.0)  # batch 1, 2 threads
    assert out["ort"][3].p90_ms == pytest.approx(4.0)  # batch 8, 2 threads
    assert out["ort"][3].throughput == pytest.approx(2000.0)
    assert pauses == [0.05] * (3 * 3 + 3 * 2) * 2  # one pause after every engine block
    ratio = speedups(out["ort"], out["torch"])
    assert [r["speedup"] for r in ratio] == pytest.approx([4.0] * 4)
    gpu_ratio = speedups(out["gpu"], out["torch"])
    assert gpu_ratio[0]["reference_threads"] == 2  # a GPU point is compared with the best CPU point
    assert gpu_ratio[0]["speedup"] == pytest.approx(2.0 / 0.5)


def test_engine_profile_minimum_is_respected():
    clock, log = FakeClock(), []
    engine = FakeBackend("trt", 0.001, clock, log, uses_threads=False)
    engine.min_batch = 4
    out = benchmark([engine], (1, 2, 2), LatencyConfig(batch_sizes=(1, 8), runs=2, blocks=1, warmup=0), timer=clock,
                    sleep=lambda s: None)
    assert [s.batch_size for s in out["trt"]] == [8]  # batch 1 is below the profile: not measured


def test_config_is_checked():
    with pytest.raises(ConfigError, match="batch sizes must be at least 1"):
        LatencyConfig(batch_sizes=(0,)).validate()
    with pytest.raises(ConfigError, match="thread counts"):
        LatencyConfig(threads=()).validate()


def test_cpu_model_is_recorded():
    assert isinstance(cpu_model(), str) and cpu_model()
