"""The report's distillation table: one row per teacher, then one per student run, and their curves.

Teachers trained in the run read their epochs from the run folder, a given checkpoint its sidecar, zoo
weights the number the distill stage measured before distilling; each student run is compared with the
student trained on labels alone. With a validation split held out of training (``data.holdout_per_class``)
every row shows the held-out top-1 the epoch was chosen on and the test split's, read once; the
comparison is made on the test split.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from compress.errors import CheckpointError
from compress.pipeline.context import RunContext, read_record
from compress.record import METRICS_FILE, MODEL_FILE, SUMMARY_FILE, CheckpointRecord
from compress.validate.report import (DELTA_ALONE, ROLE, RUN, TEACHER_AFTER, TEACHER_ROLE, TEST_ONCE, TOP1,
                                      VAL_SELECTED, TeacherFacts, describe_regime, headline_top1, read_metrics_jsonl,
                                      student_role)


def last_top1(folder: Path) -> float:
    """The last epoch's validation top-1 of a model trained in ``folder`` (nan before its first epoch)."""
    rows = read_metrics_jsonl(folder / METRICS_FILE)
    return float(rows[-1]["val_top1"]) if rows else float("nan")


def best_val_top1(folder: Path) -> float:
    """The best epoch's validation top-1 of a model trained in ``folder`` (nan before its first epoch)."""
    rows = read_metrics_jsonl(folder / METRICS_FILE)
    return max((float(r["val_top1"]) for r in rows), default=float("nan"))


def _training_summary(folder: Path, rows: list[dict[str, Any]], holdout: bool) -> dict[str, Any]:
    """A training run's columns of the table, from its per-epoch ``rows`` and its summary.json."""
    summary = read_record(folder / SUMMARY_FILE) or {}
    speed = {"train img/s": summary.get("train_images_per_s"), "wall (s)": summary.get("wall_seconds")}
    if holdout:  # the test split's numbers exist once the run has finished
        return {"epochs": len(rows), VAL_SELECTED: max((r["val_top1"] for r in rows), default=None),
                TEST_ONCE: summary.get("test_top1"), "test top-5 (%)": summary.get("test_top5"), **speed}
    return {"epochs": len(rows), TOP1: rows[-1]["val_top1"] if rows else None,
            "best top-1 (%)": max((r["val_top1"] for r in rows), default=None),
            "top-5 (%)": rows[-1].get("val_top5") if rows else None, **speed}


def _checkpoint_summary(record: CheckpointRecord | None, holdout: bool) -> dict[str, Any]:
    """A given teacher's columns, from its checkpoint's record: it was trained elsewhere, its epochs'
    metrics are not in this run folder."""
    scores = record.metrics if record else None
    if holdout:  # its recorded scores are of the test split unless it was trained with a holdout itself
        own = _trained_on(record) or {}
        on_test = scores is not None and own.get("holdout_per_class") is None
        return {"epochs": record.epoch if record else None,
                VAL_SELECTED: scores.best_top1 if scores is not None and not on_test else None,
                TEST_ONCE: scores.top1 if on_test else None, "test top-5 (%)": scores.top5 if on_test else None,
                "train img/s": None, "wall (s)": None}
    return {"epochs": record.epoch if record else None, TOP1: scores.top1 if scores else None,
            "best top-1 (%)": scores.best_top1 if scores else None, "top-5 (%)": scores.top5 if scores else None,
            "train img/s": None, "wall (s)": None}


def _record_or_none(path: Path) -> CheckpointRecord | None:
    """The record of a model file, unverified (the teacher stage hashed the file), or None without one."""
    try:
        return CheckpointRecord.read(path, verify=False)
    except CheckpointError:  # a foreign checkpoint, used with --trust: its numbers are unknown here
        return None


def _trained_on(record: CheckpointRecord | None) -> dict[str, Any] | None:
    return record.run.data if record is not None and record.run is not None else None


def _table_row(run_name: str, model: str, role: str, summary: dict[str, Any], delta: float | None = None,
               teacher_after: float | None = None) -> dict[str, Any]:
    """A row of the distillation table, columns in one order for teachers and students (the first row
    sets the table's header): the comparison columns right after top-1, where the eye is."""
    top1 = {key: summary[key] for key in (VAL_SELECTED, TEST_ONCE, TOP1) if key in summary}
    ordered = {RUN: run_name, "model": model, ROLE: role, "epochs": summary["epochs"], **top1,
               DELTA_ALONE: delta, TEACHER_AFTER: teacher_after}
    return {**ordered, **{k: v for k, v in summary.items() if k not in ordered}}


def _student_alone(run: RunContext, names: list[str]) -> str | None:
    """The run the Δ column is measured against: the student trained on labels alone (method none,
    no label smoothing, which would be a regulariser of its own)."""
    spec = run.spec.distill
    return next((name for name in names
                 if spec.method_of(name) == "none" and spec.config_for(name).label_smoothing == 0), None)


def _teacher_start_top1(student_curves: list[list[dict[str, Any]]]) -> float | None:
    """A teacher's top-1 as the distill stage measured it before distilling (recorded by ATSC runs): the
    only number there is for a teacher given as zoo weights."""
    for rows in student_curves:
        if rows and rows[0].get("teacher_top1_start") is not None:
            return float(rows[0]["teacher_top1_start"])
    return None


def report_rows(run: RunContext) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]], str]:
    """The distillation table (every teacher, then every run), the training curves and the regime sentence."""
    info = run.records["distill"]["info"]
    student_curves = {name: read_metrics_jsonl(run.path(key) / METRICS_FILE) for name, key in info["methods"].items()}
    teachers = run.records["teacher"]["info"]["teachers"]
    rows, curves, facts = [], {}, []
    holdout = run.spec.data.holdout_per_class is not None
    for t, spec in zip(teachers, run.spec.teachers):
        name, model = f"teacher {spec.label}", spec.label  # the recipe's current name for it
        if t["dir"] is not None:  # trained here: its epochs are in the run folder
            folder = run.path(t["dir"])
            curves[name] = read_metrics_jsonl(folder / METRICS_FILE)
            summary = _training_summary(folder, curves[name], holdout)
            data = _trained_on(_record_or_none(folder / MODEL_FILE)) or run.spec.data_dict()
        elif t["weights"] is None:  # a given checkpoint: its record has what it was trained on and scored
            record = _record_or_none(run.path(t["name"]))
            summary, data = _checkpoint_summary(record, holdout), _trained_on(record)
            if record is not None and record.run is not None:  # the label is only its folder's name
                model = record.run.model.get("name") or model
        else:  # zoo weights: measured before distillation, when one teacher makes the number its own
            start = _teacher_start_top1(list(student_curves.values())) if len(teachers) == 1 else None
            measured = {VAL_SELECTED: start, TEST_ONCE: None, "test top-5 (%)": None} if holdout else \
                {TOP1: start, "best top-1 (%)": None, "top-5 (%)": None}  # on the validation split
            summary = {"epochs": None, **measured, "train img/s": None, "wall (s)": None}
            data = None
        rows.append(_table_row(name, model, TEACHER_ROLE, summary))
        known = headline_top1(summary)
        facts.append(TeacherFacts(model, summary.get(VAL_SELECTED) if known is None else known, data, t["weights"]))

    alone = _student_alone(run, list(student_curves))
    summaries = {method: _training_summary(run.path(info["methods"][method]), metrics, holdout)
                 for method, metrics in student_curves.items()}
    alone_top1 = headline_top1(summaries[alone]) if alone else None
    for method, metrics in student_curves.items():
        summary = summaries[method]
        top1 = headline_top1(summary)
        delta = top1 - alone_top1 if top1 is not None and alone_top1 is not None else None
        # only a method that adapts its teacher (ATSC) records it; the others leave it as it was
        after = metrics[-1].get("teacher_top1") if metrics else None
        role = student_role(deployed=method == info["deploy"], alone=method == alone)
        rows.append(_table_row(method, run.spec.distill.student, role, summary, delta, after))
        curves[method] = metrics
    return rows, curves, describe_regime(run.spec.data, facts)
