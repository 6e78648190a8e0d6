"""The numbers a validation run produces, as plain dataclasses that round-trip through JSON.

The pipeline's validate stage writes them (``validation.json``) and its report stage reads them back,
so both directions are kept exact.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from compress.errors import ConfigError
from compress.structured import read_json

from compress.validate.accuracy import AccuracyResult
from compress.validate.latency import LatencyStats, find_stats


@dataclass
class StageResult:
    name: str
    path: str
    engine: str  # "pytorch" | "onnxruntime" | "tensorrt" ("" when skipped before opening)
    provider: str = "cpu"
    status: str = "ok"  # "ok" | "skipped"
    reason: str = ""  # why it was skipped
    accuracy: AccuracyResult | None = None
    latency: list[LatencyStats] = field(default_factory=list)
    speedups: list[dict[str, Any]] = field(default_factory=list)  # vs the reference, same run
    size_bytes: int | None = None
    parameters: int | None = None

    @property
    def skipped(self) -> bool:
        return self.status == "skipped"

    def latency_at(self, batch_size: int, threads: int | None) -> LatencyStats | None:
        return find_stats(self.latency, batch_size, threads)

    def speedup_at(self, batch_size: int, threads: int | None) -> float | None:
        for s in self.speedups:
            if s["batch_size"] == batch_size and (s["threads"] == threads or s["threads"] is None):
                return float(s["speedup"])
        return None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "StageResult":
        data = dict(data)
        acc = data.pop("accuracy", None)
        lat = data.pop("latency", [])
        return cls(**data, accuracy=AccuracyResult(**acc) if acc else None,
                   latency=[LatencyStats(**s) for s in lat])


@dataclass
class GateResult:
    stage: str
    gate: str  # a name in compress.validate.gates.GATES, e.g. "min_agreement"
    threshold: float
    value: float | None
    status: str  # "pass" | "fail" | "skipped"
    margin: float | None = None  # headroom in the gate's unit: >= 0 passes, < 0 failed by that much
    reason: str = ""  # why a gate was skipped, or why its value cannot be trusted (it then fails)
    unit: str = ""
    note: str = ""  # context for the reader: chance, the distance to the teacher

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ValidationResult:
    reference: str
    stages: dict[str, StageResult]
    gates: list[GateResult] = field(default_factory=list)
    environment: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)  # dataset name, samples, preprocessing
    latency_config: dict[str, Any] = field(default_factory=dict)
    teacher_top1: float | None = None  # the best teacher's recorded top-1, when known (the pipeline knows it)

    @property
    def failures(self) -> list[GateResult]:
        return [g for g in self.gates if g.status == "fail"]

    @property
    def passed(self) -> bool:
        """No gate failed. Skipped gates are not passes; see ``verdicts.check_gates(strict=True)``."""
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "passed": self.passed,
            "stages": {name: stage.to_dict() for name, stage in self.stages.items()},
            "gates": [g.to_dict() for g in self.gates],
            "environment": self.environment,
            "data": self.data,
            "latency_config": self.latency_config,
            "teacher_top1": self.teacher_top1,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ValidationResult":
        return cls(
            reference=data["reference"],
            stages={name: StageResult.from_dict(s) for name, s in data["stages"].items()},
            gates=[GateResult(**g) for g in data.get("gates", [])],
            environment=data.get("environment", {}),
            data=data.get("data", {}),
            latency_config=data.get("latency_config", {}),
            teacher_top1=data.get("teacher_top1"),
        )


def read_result(path: str | os.PathLike[str], what: str = "baseline") -> ValidationResult:
    """The validation result stored in a ``report.json`` (``compress validate --out``, ``compress run``) or a
    pipeline's ``validate/validation.json``; one-line errors for a missing or foreign file."""
    path = Path(path)
    data = read_json(path, f"{what} '{path}'", fix="pass the report.json that `compress validate --out` or "
                                                   "`compress run` wrote")
    try:
        return ValidationResult.from_dict(data)
    except (KeyError, TypeError, AttributeError) as exc:
        detail = f"no {exc} field" if isinstance(exc, KeyError) else str(exc)
        raise ConfigError(f"{what} '{path}' is not a compress report ({detail}): pass the report.json that "
                          "`compress validate --out` or `compress run` wrote") from None
