"""Latency/throughput of a runner: p50/p90/p99 per batch size, torch-free."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from deploy.errors import UsageError
from deploy.runners import Runner

MAX_BATCH = 1024  # edge serving batches are 1-64; a timing above this says nothing about deployment
MAX_INPUT_BYTES = 512 << 20  # one batch of random input; the model's activations come on top of it
MAX_SECONDS = 3600.0  # per batch size


def input_shape(runner: Runner) -> tuple[int, int, int]:
    """C x H x W to time: the model's, its preprocessing's where the model leaves a side dynamic."""
    pre = runner.preprocessing or {}
    c, h, w = runner.input_shape
    size = pre.get("image_size", 224)
    return c or pre.get("channels", 3), h or size, w or size


def check_batches(runner: Runner, batch_sizes: list[int]) -> tuple[int, int, int]:
    """The input shape, once every batch size is known to be 1..MAX_BATCH and to fit MAX_INPUT_BYTES."""
    shape = input_shape(runner)
    image_bytes = 4 * int(np.prod(shape))
    fits = max(1, min(MAX_BATCH, MAX_INPUT_BYTES // image_bytes))
    for batch in batch_sizes:
        if type(batch) is not int or not 1 <= batch <= fits:
            raise UsageError(f"batch size {batch!r} does not fit: use 1 to {fits} for this model's "
                             f"{' x '.join(map(str, shape))} input (at most {MAX_INPUT_BYTES >> 20} MiB per batch)")
    return shape


def bench(runner: Runner, batch_sizes: list[int], seconds: float = 5.0, warmup: int = 5) -> list[dict[str, Any]]:
    """Time ``predict_logits`` on random preprocessed input for ``seconds`` per batch size."""
    if not 0 < seconds <= MAX_SECONDS:  # NaN fails this too; inf would never stop
        raise UsageError(f"seconds per batch size must be above 0 and at most {MAX_SECONDS:.0f}, got {seconds}")
    shape = check_batches(runner, batch_sizes)
    rng = np.random.default_rng(0)
    rows = []
    for batch in batch_sizes:
        x = rng.standard_normal((batch, *shape), dtype=np.float32)
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
