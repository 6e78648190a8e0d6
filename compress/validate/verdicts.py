"""Verdicts: a validation result judged against its gates, and the verdicts in words, a table and an exit.

``compress.validate.gates`` says which gates exist and what each reads; this module applies them to a
``ValidationResult`` (``evaluate_gates``: every gate asked for, the default gates on every stage that ran,
a baseline report's defaults when one is given), and turns the ``GateResult`` list into a line per gate
(``describe``), a table (``gate_table``) or a one-line ``GateFailed`` (``check_gates``).
"""

from __future__ import annotations

from typing import Mapping

from compress.errors import ConfigError, GateFailed
from compress.validate.gates import (BASELINE_DEFAULTS, GATES, GateInputs, Gates, GateSpec, LatencyPoint,
                                     gates_by_stage, uses_baseline)
from compress.validate.results import GateResult, StageResult, ValidationResult

_EPS = 1e-9  # 999/1000 agreement is 99.9%, whatever the float rounding says


NO_BASELINE = "no baseline report given (--baseline, or validate.baseline in a recipe)"


def _baseline_stage(baseline: ValidationResult | None, name: str) -> tuple[StageResult | None, str]:
    """The stage ``name`` of the baseline report, or None and why not."""
    if baseline is None:
        return None, NO_BASELINE
    stage = baseline.stages.get(name)
    if stage is None:
        return None, f"the baseline report has no stage '{name}'"
    if stage.skipped:
        return None, f"skipped in the baseline: {stage.reason}"
    return stage, ""


def with_baseline_defaults(specs: dict[str, GateSpec], stages: list[str], reference: str) -> dict[str, GateSpec]:
    """``BASELINE_DEFAULTS`` added to every stage but the reference, when no spec sets a baseline gate."""
    if uses_baseline(specs):
        return specs
    out = dict(specs)
    for name in stages:
        if name != reference:
            old = specs.get(name) or GateSpec()
            out[name] = GateSpec(old.batch_size, old.threads, **{**BASELINE_DEFAULTS, **old.thresholds})
    return out


def check_baseline_data(result: ValidationResult, baseline: ValidationResult) -> None:
    """Accuracy compares only on the same images: refuse a baseline measured on other data."""
    keys = ("name", "samples")
    now, before = ({k: r.data.get(k) for k in keys} for r in (result, baseline))
    if all(before.values()) and now != before:
        raise ConfigError(f"the baseline report was measured on {before['samples']} {before['name']} images, this "
                          f"run on {now['samples']} {now['name']}: validate on the same data (--data, --val-limit)")


def num_classes_of(result: ValidationResult) -> int | None:
    """The class count of the validation data: recorded, or read from the class names of older reports."""
    recorded = result.data.get("num_classes")
    if isinstance(recorded, int) and recorded >= 2:
        return recorded
    names = (result.data.get("preprocessing") or {}).get("class_names") or []
    return len(names) if len(names) >= 2 else None


def _wanted(name: str, stage: StageResult, spec: GateSpec | None, common: Mapping[str, float]) -> list[tuple[str, float, bool]]:
    """(gate, threshold, is a default) for one stage, in table order: its spec's gates, then the gates with a
    default it does not set (not on a stage that did not run); a defaulted gate at 0 is off."""
    given = spec.thresholds if spec is not None else {}
    out = []
    for gate in GATES.values():
        if gate.name in given:
            threshold, default = given[gate.name], False
        elif gate.default is not None and not stage.skipped:
            threshold, default = common.get(gate.name, gate.default), True
        else:
            continue
        if gate.default is not None and threshold == 0:
            continue  # the off switch
        out.append((gate.name, threshold, default))
    return out


def evaluate_gates(result: ValidationResult, gates: Gates | None,
                   baseline: ValidationResult | None = None) -> list[GateResult]:
    """Judge every configured gate of every stage, and the gates with a default (``min_above_chance``) on every
    stage that ran; baseline gates read the same stage of ``baseline``.

    A baseline given without any baseline gate judges ``BASELINE_DEFAULTS`` on every stage but the reference."""
    reference = result.stages[result.reference]
    measured_threads = sorted({s.threads for st in result.stages.values() for s in st.latency if s.threads is not None})
    specs = gates_by_stage(gates, list(result.stages), result.reference)
    if baseline is not None:
        check_baseline_data(result, baseline)
        specs = with_baseline_defaults(specs, list(result.stages), result.reference)
    common = gates.thresholds if isinstance(gates, GateSpec) else {}
    classes = num_classes_of(result)
    out: list[GateResult] = []
    for name in [*specs, *(n for n in result.stages if n not in specs)]:
        stage, spec = result.stages[name], specs.get(name)
        batch = spec.batch_size if spec is not None else 1
        threads = spec.threads if spec is not None and spec.threads is not None else \
            (measured_threads[-1] if measured_threads else None)
        inputs = GateInputs(stage, reference, LatencyPoint(batch, threads), *_baseline_stage(baseline, name),
                            num_classes=classes, teacher_top1=result.teacher_top1)
        for gate_name, threshold, default in _wanted(name, stage, spec, common):
            gate = GATES[gate_name]
            if stage.skipped:
                value, why = None, stage.reason
            elif gate.relative and stage.name == reference.name:
                value, why = None, "the stage is the reference"
            else:
                value, why = gate.read(inputs)
            if value is None:
                if not default:  # a default that cannot be read here (no class count recorded) is not asked for
                    out.append(GateResult(name, gate_name, threshold, None, "skipped", reason=why, unit=gate.unit))
                continue
            note = gate.note(inputs) if gate.note is not None else ""
            distrust = gate.trust(inputs) if gate.trust is not None else ""
            if distrust:  # a number from noise: not a pass, whatever it is
                out.append(GateResult(name, gate_name, threshold, value, "fail", reason=distrust, unit=gate.unit,
                                      note=note))
                continue
            margin = value - threshold if gate.at_least else threshold - value
            status = "pass" if margin >= -_EPS else "fail"
            out.append(GateResult(name, gate_name, threshold, value, status, margin, unit=gate.unit, note=note))
    return out


def format_value(value: float | None, unit: str, missing: str = "-") -> str:
    """A gate's value or threshold in its unit: ``99.90%``, ``1.50 pt``, ``2.500 ms``, ``1.20x``, ``0.39 MB``."""
    if value is None:
        return missing
    if unit == "x":
        return f"{value:.2f}x"
    if unit == "ms":
        return f"{value:.3f} ms"
    return f"{value:.2f}%" if unit == "%" else f"{value:.2f} {unit}"


def describe(g: GateResult) -> str:
    """``onnx min_agreement 97.10% < 99.90% (short by 2.80%)`` - one gate in words."""
    if g.status == "skipped":
        return f"{g.stage} {g.gate}: skipped: {g.reason}"
    note = f" ({g.note})" if g.note else ""
    if g.reason:  # failed although the number alone would pass: it cannot be trusted
        return f"{g.stage} {g.gate} {format_value(g.value, g.unit)} {g.reason}{note}"
    at_least = GATES[g.gate].at_least
    op = (">=" if at_least else "<=") if g.status == "pass" else ("<" if at_least else ">")
    by = f" (by {format_value(abs(g.margin or 0.0), g.unit)})" if g.status == "fail" else ""
    return f"{g.stage} {g.gate} {format_value(g.value, g.unit)} {op} {format_value(g.threshold, g.unit)}{by}{note}"


def gate_table(results: list[GateResult], statuses: tuple[str, ...] = ("fail",)) -> str:
    """A plain-text table of the gates with these statuses (by default: what failed and by how much)."""
    rows = [("stage", "gate", "value", "threshold", "margin", "status")]
    for g in results:
        if g.status not in statuses:
            continue
        status = f"{g.status}: {g.reason}" if g.reason else g.status
        margin = "-" if g.margin is None else ("+" if g.margin >= 0 else "-") + format_value(abs(g.margin), g.unit)
        rows.append((g.stage, g.gate, format_value(g.value, g.unit), format_value(g.threshold, g.unit), margin, status))
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
