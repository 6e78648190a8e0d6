"""Validation: accuracy, agreement, latency and gates for every stage's artifact, and the reports.

    result = validate_artifacts({"student": ckpt, "onnx": onnx_path}, DataConfig("fashion-mnist"),
                                reference="student", gates=GateSpec(min_agreement=99.9))
    write_report(result, run_dir)          # report.json, report.md, report.png
    check_gates(result.gates)              # raises GateFailed (one line) if a gate failed

The names below are imported from their modules on first use (``compress._lazy``): the gate table
(``gates``) is read when the command line is built, and that must not pull in torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from compress._lazy import lazy_names

if TYPE_CHECKING:
    from compress.validate.accuracy import AccuracyResult, agreement, evaluate_backends, max_abs_diff, topk_accuracy
    from compress.validate.backends import Backend, RuntimeBackend, StageSkipped, TorchBackend, open_backend
    from compress.validate.ci_report import publish_gates
    from compress.validate.gates import GATES, GateSpec, parse_gates
    from compress.validate.latency import LatencyConfig, LatencyStats, benchmark, environment_record, latency_stats
    from compress.validate.measure import artifact_names, validate_artifacts
    from compress.validate.report import ReportPaths, read_metrics_jsonl, render_markdown, render_png, write_report
    from compress.validate.results import GateResult, StageResult, ValidationResult, read_result
    from compress.validate.verdicts import check_gates, evaluate_gates, gate_table

__getattr__, __all__ = lazy_names(__name__, {
    "accuracy": ("AccuracyResult", "agreement", "evaluate_backends", "max_abs_diff", "topk_accuracy"),
    "ci_report": ("publish_gates",),
    "backends": ("Backend", "RuntimeBackend", "StageSkipped", "TorchBackend", "open_backend"),
    "gates": ("GATES", "GateSpec", "parse_gates"),
    "latency": ("LatencyConfig", "LatencyStats", "benchmark", "environment_record", "latency_stats"),
    "measure": ("artifact_names", "validate_artifacts"),
    "report": ("ReportPaths", "read_metrics_jsonl", "render_markdown", "render_png", "write_report"),
    "results": ("GateResult", "StageResult", "ValidationResult", "read_result"),
    "verdicts": ("check_gates", "evaluate_gates", "gate_table"),
})
