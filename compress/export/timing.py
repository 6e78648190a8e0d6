"""Interleaved latency measurement: compare variants on a noisy, shared CPU fairly.

Timing on this kind of machine drifts by +-20 % over seconds (other tenants, frequency scaling).
Timing variant A for a minute and then B for a minute measures the drift, not A vs B. Instead each
variant runs a short block in turn, round after round, with a small pause between blocks, so drift
hits every variant equally; ratios per round are then robust even when absolute numbers are not.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class LatencyStats:
    batch: int
    n: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    throughput: float  # images per second at the median latency

    def to_dict(self) -> dict[str, float]:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in self.__dict__.items()}


def stats(batch: int, samples_s: list[float]) -> LatencyStats:
    ms = np.asarray(samples_s) * 1000.0
    p50, p90, p99 = (float(np.percentile(ms, q)) for q in (50, 90, 99))
    return LatencyStats(batch, len(ms), p50, p90, p99, float(ms.mean()), batch * 1000.0 / p50)


def interleaved(
    variants: dict[str, Callable[[], object]],
    batch: int,
    *,
    rounds: int = 10,
    block_s: float = 0.3,
    pause_s: float = 0.05,
    warmup: int = 3,
) -> tuple[dict[str, LatencyStats], dict[str, list[float]]]:
    """Time each zero-argument callable in alternating blocks; returns stats and each variant's
    per-round p50 (seconds), from which ``ratio`` gives drift-robust comparisons."""
    names = list(variants)
    for fn in variants.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in names}
    round_p50: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        # alternate the order too, so no variant always runs right after the pause
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            fn, block, deadline = variants[name], [], time.perf_counter() + block_s
            while True:
                t0 = time.perf_counter()
                fn()
                block.append(time.perf_counter() - t0)
                if time.perf_counter() >= deadline and len(block) >= 2:
                    break
            samples[name].extend(block)
            round_p50[name].append(float(np.median(block)))
            time.sleep(pause_s)
    return {name: stats(batch, samples[name]) for name in names}, round_p50


def ratio(round_p50: dict[str, list[float]], variant: str, baseline: str) -> float:
    """Median over rounds of p50(variant) / p50(baseline): both measured seconds apart each round."""
    return float(np.median(np.asarray(round_p50[variant]) / np.asarray(round_p50[baseline])))
