"""report.md / report.json from fixed numbers, and report.png."""

from __future__ import annotations

import json

import pytest

from compress.errors import CheckpointError
from compress.validate.gates import GateSpec, evaluate_gates
from compress.validate.report import read_metrics_jsonl, render_markdown, write_report
from compress.validate.results import ValidationResult

CURVES = {
    "atsc": [{"epoch": e, "train_loss": 2.0 / e, "val_top1": 80 + 2 * e} for e in range(1, 6)],
    "kd": [{"epoch": e, "train_loss": 2.2 / e, "val_top1": 78 + 2 * e} for e in range(1, 6)],
}
METHODS = [{"method": "atsc", "teacher": "resnet32x4", "student": "resnet8x4", "top1": 90.0},
           {"method": "kd", "teacher": "resnet32x4", "student": "resnet8x4", "top1": 88.25}]


def test_markdown_tables_from_fixed_numbers(fixed_result):
    fixed_result.gates = evaluate_gates(fixed_result, GateSpec(max_top1_drop=1.0))
    text = render_markdown(fixed_result, METHODS)
    assert "Data: **fashion-mnist**, 1000 validation images. Reference: **student**. CPU: Test CPU (2 cores)" in text
    assert "| student | PyTorch eager | 90.00% | 99.50% | 100.00% | 0.00e+00 | 390.6 KB | 98.0 k |" in text
    assert "| onnx | ONNX Runtime (cpu) | 89.90% | 99.50% | 99.95% | 3.00e-05 | 380.9 KB | 98.0 k |" in text
    assert "| trt | – | skipped: TensorRT engine needs an NVIDIA GPU and none is visible here |" in text
    assert "| onnx | 32 | 2 | 16.000 | 16.000 | 18.000 | 19.800 | 2000.0 | 2.50x | 20 |" in text
    assert "| method | teacher | student | top1 |" in text and "| kd | resnet32x4 | resnet8x4 | 88.25 |" in text
    assert "| int8 | max_top1_drop | 1.50 pt | 1.00 pt | -0.5 | ❌ fail |" in text
    assert "| trt | max_top1_drop | – | 1.00 pt | – | ⏭ skipped: TensorRT engine needs" in text
    assert text.rstrip().endswith("**1 gate(s) failed**: int8 max_top1_drop 1.50 pt > 1.00 pt (by 0.50 pt)")


def test_no_methods_table_for_a_single_run(fixed_result):
    assert "Distillation methods" not in render_markdown(fixed_result)


def test_write_report_json_md_png(fixed_result, tmp_path):
    fixed_result.gates = evaluate_gates(fixed_result, GateSpec(min_agreement=99.0))
    paths = write_report(fixed_result, tmp_path / "run", distillation=METHODS, curves=CURVES)
    data = json.loads(paths.json.read_text())
    assert data["passed"] is False
    assert data["stages"]["int8"]["accuracy"]["agreement"] == 97.0
    assert data["stages"]["onnx"]["latency"][1]["p99_ms"] == pytest.approx(19.8)
    assert data["distillation"][1]["top1"] == 88.25
    assert data["training_curves"]["atsc"][4] == {"epoch": 5, "train_loss": 0.4, "val_top1": 90}
    assert ValidationResult.from_dict(data).to_dict() == fixed_result.to_dict()
    assert paths.markdown.read_text() == render_markdown(fixed_result, METHODS)
    png = paths.png.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["report.json", "report.md", "report.png"]


def test_metrics_jsonl(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"epoch": 1, "train_loss": 1.5, "val_top1": 70.0}\n\n{"epoch": 2, "train_loss": 1.0}\n')
    assert read_metrics_jsonl(path) == [{"epoch": 1, "train_loss": 1.5, "val_top1": 70.0},
                                        {"epoch": 2, "train_loss": 1.0}]
    path.write_text('{"epoch": 1}\n{oops\n')
    with pytest.raises(CheckpointError, match="line 2 is not JSON"):
        read_metrics_jsonl(path)
