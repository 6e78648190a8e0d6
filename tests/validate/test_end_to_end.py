"""validate_artifacts on real files: a faithful ONNX export passes, a perturbed one is caught."""

from __future__ import annotations

import json

import pytest

from compress.data import DataConfig
from compress.errors import ConfigError, GateFailed
from compress.validate import GateSpec, LatencyConfig, check_gates, validate_artifacts, write_report
from compress.validate.results import ValidationResult

from .conftest import runtime_load

FAST = LatencyConfig(batch_sizes=(1, 8), threads=(1,), runs=6, blocks=2, warmup=1, pause_s=0.0)
DATA = DataConfig("fashion-mnist", val_limit=256, eval_batch_size=128)


@pytest.fixture(scope="module")
def validated(tiny_artifacts, tmp_path_factory):
    engine = tmp_path_factory.mktemp("engine") / "model.engine"
    engine.write_bytes(b"not a real engine")  # never opened: this machine has no GPU
    artifacts = {**tiny_artifacts, "trt": engine}
    gates = {"onnx": GateSpec(min_agreement=99.9, max_top1_drop=0.5),
             "broken": GateSpec(min_agreement=99.9),
             "trt": GateSpec(min_agreement=99.9)}
    return validate_artifacts(artifacts, DATA, "student", gates=gates, latency=FAST, load=runtime_load)


def test_faithful_export_agrees_and_broken_export_is_caught(validated):
    stages = validated.stages
    student, onnx, broken = stages["student"].accuracy, stages["onnx"].accuracy, stages["broken"].accuracy
    assert student.samples == onnx.samples == 256
    assert student.top1 > 30.0  # a quickly trained net, far from chance (10%)
    assert onnx.top1 == student.top1 and onnx.agreement == 100.0
    assert onnx.max_abs_logit_diff < 1e-3
    assert broken.agreement < 99.0 and broken.max_abs_logit_diff > 0.05
    gates = {(g.stage, g.gate): g.status for g in validated.gates}
    # and the sanity gate on every model that ran (the skipped engine gets none: nobody asked for it there)
    assert gates == {("onnx", "min_agreement"): "pass", ("onnx", "max_top1_drop"): "pass",
                     ("broken", "min_agreement"): "fail", ("trt", "min_agreement"): "skipped",
                     ("onnx", "min_above_chance"): "pass", ("broken", "min_above_chance"): "pass",
                     ("student", "min_above_chance"): "pass"}
    with pytest.raises(GateFailed, match=r"^1 of 7 gates did not pass \(1 failed\): broken min_agreement"):
        check_gates(validated.gates)


def test_stage_records(validated):
    trt = validated.stages["trt"]
    assert trt.skipped and "GPU" in trt.reason and trt.accuracy is None and trt.latency == []
    student, onnx = validated.stages["student"], validated.stages["onnx"]
    assert (student.engine, onnx.engine, onnx.provider) == ("pytorch", "onnxruntime", "cpu")
    assert student.parameters and onnx.parameters and onnx.size_bytes > 10_000
    assert [(s.batch_size, s.threads, s.runs) for s in onnx.latency] == [(1, 1, 6), (8, 1, 6)]
    assert all(s.p50_ms > 0 for s in student.latency)
    assert [round(s["speedup"], 6) for s in student.speedups] == [1.0, 1.0]
    assert onnx.speedup_at(8, 1) == pytest.approx(student.latency_at(8, 1).p50_ms / onnx.latency_at(8, 1).p50_ms)
    assert validated.environment["cpu"] and "torch" in validated.environment["versions"]
    assert validated.data["preprocessing"]["channels"] == 1


def test_report_from_a_real_run(validated, tmp_path):
    paths = write_report(validated, tmp_path)
    data = json.loads(paths.json.read_text())
    assert ValidationResult.from_dict(data).to_dict() == validated.to_dict()
    text = paths.markdown.read_text()
    assert "| broken | ONNX Runtime (cpu) |" in text and "❌ fail" in text
    assert paths.png.stat().st_size > 5_000


def test_bad_reference_and_stage_names(tiny_artifacts):
    with pytest.raises(ConfigError, match="reference stage 'studnet' is not among the artifacts: did you mean 'student'"):
        validate_artifacts(tiny_artifacts, DATA, "studnet", latency=FAST, load=runtime_load)
    with pytest.raises(ConfigError, match="gates name stage 'onxx'"):
        validate_artifacts(tiny_artifacts, DATA, "student", gates={"onxx": GateSpec(min_top1=1)}, latency=FAST,
                           load=runtime_load)


def test_preprocessing_mismatch_is_refused(tiny_artifacts):
    with pytest.raises(ConfigError, match="stage 'student' was built with mean"):
        validate_artifacts({"student": tiny_artifacts["student"]}, DataConfig("synthetic", image_size=28, synthetic_size=(16, 8)), "student",
                           measure_latency=False, load=runtime_load)
