"""Gates: typed thresholds on a validation result, each judged pass / fail / skipped.

A gate on a stage that could not run here (TensorRT without a GPU) is ``skipped`` with the reason,
never ``pass``: a CI that wants every gate to have run uses ``check_gates(strict=True)``.
Relative gates compare with the reference stage (the fp32 PyTorch student): top-1 drop in absolute
points, agreement in percent, speed-up as a ratio of p50 latencies measured in the same run.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, fields
from typing import Any, Mapping

from compress.errors import ConfigError, GateFailed
from compress.validate.results import GateResult, StageResult, ValidationResult

_EPS = 1e-9  # 999/1000 agreement is 99.9%, whatever the float rounding says


@dataclass(frozen=True)
class GateSpec:
    min_top1: float | None = None  # percent
    max_top1_drop: float | None = None  # absolute points below the reference's top-1
    min_agreement: float | None = None  # percent of top-1 predictions equal to the reference's
    max_p90_ms: float | None = None  # p90 latency at (batch_size, threads)
    min_speedup: float | None = None  # reference p50 / stage p50 at (batch_size, threads)
    batch_size: int = 1  # the latency point the latency gates look at
    threads: int | None = None  # None: the largest thread count measured

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        for name in ("min_top1", "max_top1_drop", "min_agreement"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= 100:
                raise ConfigError(f"gate {name} is in percent points (0..100), got {value}")
        for name in ("max_p90_ms", "min_speedup"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"gate {name} must be positive, got {value}")
        if self.batch_size < 1:
            raise ConfigError(f"gate batch_size must be at least 1, got {self.batch_size}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"gate threads must be at least 1, got {self.threads}")

    @property
    def thresholds(self) -> dict[str, float]:
        return {name: getattr(self, name) for name in GATES if getattr(self, name) is not None}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "gates") -> "GateSpec":
        """From a recipe/CLI mapping; an unknown key names its path and the closest valid key."""
        known = [f.name for f in fields(cls)]
        for key in data:
            if key not in known:
                close = difflib.get_close_matches(str(key), known, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else f" (valid: {', '.join(known)})"
                raise ConfigError(f"{where}.{key}: unknown gate{hint}")
        try:
            return cls(**{k: (None if v is None else int(v) if k in ("batch_size", "threads") else float(v))
                          for k, v in data.items()})
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: gate values must be numbers ({exc})") from None


# gate name -> (kind, unit); "min" gates pass when value >= threshold, "max" when value <= threshold
GATES: dict[str, tuple[str, str]] = {
    "min_top1": ("min", "%"),
    "max_top1_drop": ("max", "pt"),
    "min_agreement": ("min", "%"),
    "max_p90_ms": ("max", "ms"),
    "min_speedup": ("min", "x"),
}
_RELATIVE = ("max_top1_drop", "min_agreement", "min_speedup")

Gates = GateSpec | Mapping[str, GateSpec]


def parse_gates(data: Mapping[str, Any] | None, where: str = "gates") -> Gates | None:
    """Gates from a recipe: either one spec (``{min_agreement: 99.9}``, for every stage but the reference)
    or one per stage (``{onnx: {min_agreement: 99.9}, int8: {max_top1_drop: 1.0}}``)."""
    if not data:
        return None
    known = {f.name for f in fields(GateSpec)}
    if all(isinstance(v, Mapping) for v in data.values()) and not known & set(data):
        return {str(stage): GateSpec.from_dict(spec, f"{where}.{stage}") for stage, spec in data.items()}
    return GateSpec.from_dict(data, where)


def gates_by_stage(gates: Gates | None, stages: list[str], reference: str) -> dict[str, GateSpec]:
    """One ``GateSpec`` applies to every stage but the reference; a mapping names stages explicitly."""
    if gates is None:
        return {}
    if isinstance(gates, GateSpec):
        return {name: gates for name in stages if name != reference}
    unknown = [name for name in gates if name not in stages]
    if unknown:
        close = difflib.get_close_matches(unknown[0], stages, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise ConfigError(f"gates name stage '{unknown[0]}' which is not validated: {hint}stages are {', '.join(stages)}")
    return dict(gates)


def _measure(stage: StageResult, reference: StageResult, gate: str, spec: GateSpec,
             threads: int | None) -> tuple[float | None, str]:
    """The value a gate looks at, or (None, why it cannot be judged)."""
    if gate in _RELATIVE and stage.name == reference.name:
        return None, "the stage is the reference"
    if gate in ("min_top1", "max_top1_drop", "min_agreement"):
        acc, ref_acc = stage.accuracy, reference.accuracy
        if acc is None or (gate == "max_top1_drop" and (ref_acc is None)):
            return None, "accuracy was not measured"
        if gate == "min_top1":
            return acc.top1, ""
        if gate == "max_top1_drop":
            return ref_acc.top1 - acc.top1, ""  # type: ignore[union-attr]
        return (acc.agreement, "") if acc.agreement is not None else (None, "agreement was not measured")
    where = f"batch {spec.batch_size}" + (f", {threads} threads" if threads is not None else "")
    if gate == "max_p90_ms":
        stats = stage.latency_at(spec.batch_size, threads)
        return (stats.p90_ms, "") if stats else (None, f"no latency measured at {where}")
    speedup = stage.speedup_at(spec.batch_size, threads)
    return (speedup, "") if speedup is not None else (None, f"no speed-up measured at {where}")


def evaluate_gates(result: ValidationResult, gates: Gates | None) -> list[GateResult]:
    """Judge every configured gate of every stage."""
    reference = result.stages[result.reference]
    measured_threads = sorted({s.threads for st in result.stages.values() for s in st.latency if s.threads is not None})
    out: list[GateResult] = []
    for name, spec in gates_by_stage(gates, list(result.stages), result.reference).items():
        stage = result.stages[name]
        threads = spec.threads if spec.threads is not None else (measured_threads[-1] if measured_threads else None)
        for gate, threshold in spec.thresholds.items():
            kind, unit = GATES[gate]
            if stage.skipped:
                out.append(GateResult(name, gate, threshold, None, "skipped", reason=stage.reason, unit=unit))
                continue
            value, why = _measure(stage, reference, gate, spec, threads)
            if value is None:
                out.append(GateResult(name, gate, threshold, None, "skipped", reason=why, unit=unit))
                continue
            margin = value - threshold if kind == "min" else threshold - value
            status = "pass" if margin >= -_EPS else "fail"
            out.append(GateResult(name, gate, threshold, value, status, margin, unit=unit))
    return out


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "x":
        return f"{value:.2f}x"
    if unit == "ms":
        return f"{value:.3f} ms"
    return f"{value:.2f}{'%' if unit == '%' else ' pt'}"


def describe(g: GateResult) -> str:
    """``onnx min_agreement 97.10% < 99.90% (short by 2.80%)`` - one gate in words."""
    if g.status == "skipped":
        return f"{g.stage} {g.gate}: skipped: {g.reason}"
    kind = GATES[g.gate][0]
    op = (">=" if kind == "min" else "<=") if g.status == "pass" else ("<" if kind == "min" else ">")
    by = f" (by {_fmt(abs(g.margin or 0.0), g.unit)})" if g.status == "fail" else ""
    return f"{g.stage} {g.gate} {_fmt(g.value, g.unit)} {op} {_fmt(g.threshold, g.unit)}{by}"


def gate_table(results: list[GateResult], statuses: tuple[str, ...] = ("fail",)) -> str:
    """A plain-text table of the gates with these statuses (by default: what failed and by how much)."""
    rows = [("stage", "gate", "value", "threshold", "margin", "status")]
    for g in results:
        if g.status not in statuses:
            continue
        status = f"skipped: {g.reason}" if g.status == "skipped" else g.status
        margin = "-" if g.margin is None else ("+" if g.margin >= 0 else "-") + _fmt(abs(g.margin), g.unit)
        rows.append((g.stage, g.gate, _fmt(g.value, g.unit), _fmt(g.threshold, g.unit), margin, status))
    if len(rows) == 1:
        return ""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def check_gates(results: list[GateResult], strict: bool = False) -> None:
    """Raise ``GateFailed`` (one line) if a gate failed, or with ``strict`` if one was skipped."""
    bad = [g for g in results if g.status == "fail" or (strict and g.status == "skipped")]
    if not bad:
        return
    failed = sum(g.status == "fail" for g in bad)
    skipped = len(bad) - failed
    counts = ", ".join(part for part in (f"{failed} failed" if failed else "", f"{skipped} skipped (strict)" if skipped else "") if part)
    raise GateFailed(f"{len(bad)} of {len(results)} gates did not pass ({counts}): " + "; ".join(describe(g) for g in bad))
