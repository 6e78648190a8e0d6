"""Latency/throughput of a runner: p50/p90/p99 per batch size, torch-free."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from deploy.runners import Runner


def bench(runner: Runner, batch_sizes: list[int], seconds: float = 5.0, warmup: int = 5) -> list[dict[str, Any]]:
    """Time ``predict_logits`` on random preprocessed input for ``seconds`` per batch size."""
    shape = tuple(v or 224 for v in runner.input_shape)
    rng = np.random.default_rng(0)
    rows = []
    for batch in batch_sizes:
        x = rng.standard_normal((batch, *shape)).astype(np.float32)
        for _ in range(warmup):
            runner.predict_logits(x)
        samples, deadline = [], time.perf_counter() + seconds
        while time.perf_counter() < deadline or len(samples) < 3:
            t0 = time.perf_counter()
            runner.predict_logits(x)
            samples.append(time.perf_counter() - t0)
        ms = np.asarray(samples) * 1000
        p50 = float(np.percentile(ms, 50))
        rows.append({"batch": batch, "n": len(ms), "p50_ms": round(p50, 3),
                     "p90_ms": round(float(np.percentile(ms, 90)), 3), "p99_ms": round(float(np.percentile(ms, 99)), 3),
                     "throughput_img_s": round(batch * len(ms) / float(ms.sum() / 1000), 1)})
    return rows
