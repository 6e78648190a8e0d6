"""Validation: accuracy, agreement, latency and gates for every stage's artifact, and the reports.

    result = validate_artifacts({"student": ckpt, "onnx": onnx_path}, DataConfig("fashion-mnist"),
                                reference="student", gates=GateSpec(min_agreement=99.9))
    write_report(result, run_dir)          # report.json, report.md, report.png
    check_gates(result.gates)              # raises GateFailed (one line) if a gate failed
"""

from compress.validate.accuracy import AccuracyResult, agreement, evaluate_backends, max_abs_diff, topk_accuracy
from compress.validate.backends import Backend, StageSkipped, TorchBackend, RuntimeBackend, open_backend
from compress.validate.gates import GateSpec, check_gates, evaluate_gates, gate_table, parse_gates
from compress.validate.latency import LatencyConfig, LatencyStats, benchmark, environment_record, latency_stats
from compress.validate.report import ReportPaths, read_metrics_jsonl, render_markdown, render_png, write_report
from compress.validate.results import GateResult, StageResult, ValidationResult
from compress.validate.runner import validate_artifacts

__all__ = [
    "AccuracyResult", "Backend", "GateResult", "GateSpec", "LatencyConfig", "LatencyStats", "ReportPaths",
    "RuntimeBackend", "StageResult", "StageSkipped", "TorchBackend", "ValidationResult", "agreement", "benchmark",
    "check_gates", "environment_record", "evaluate_backends", "evaluate_gates", "gate_table", "latency_stats",
    "max_abs_diff", "open_backend", "parse_gates", "read_metrics_jsonl", "render_markdown", "render_png", "topk_accuracy",
    "validate_artifacts", "write_report",
]
