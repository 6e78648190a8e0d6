"""Gate logic on fixed numbers: pass, fail by how much, skipped with its reason, never a silent pass."""

from __future__ import annotations

import pytest

from compress.errors import ConfigError, GateFailed
from compress.validate.gates import GateSpec
from compress.validate.verdicts import check_gates, evaluate_gates, gate_table


def by_key(results):
    return {(g.stage, g.gate): g for g in results}


def test_single_spec_applies_to_every_stage_but_the_reference(fixed_result):
    results = evaluate_gates(fixed_result, GateSpec(max_top1_drop=1.0, min_agreement=99.9))
    assert {g.stage for g in results} == {"onnx", "int8", "trt"}
    got = by_key(results)
    assert got["onnx", "max_top1_drop"].status == "pass"
    assert got["onnx", "max_top1_drop"].value == pytest.approx(0.1)
    assert got["onnx", "max_top1_drop"].margin == pytest.approx(0.9)
    assert got["onnx", "min_agreement"].status == "pass"
    assert got["int8", "max_top1_drop"].status == "fail"
    assert got["int8", "max_top1_drop"].margin == pytest.approx(-0.5)  # dropped 1.5 points, allowed 1.0
    assert got["int8", "min_agreement"].status == "fail"
    assert got["int8", "min_agreement"].margin == pytest.approx(-2.9)


def test_stage_that_cannot_run_is_skipped_not_passed(fixed_result):
    got = by_key(evaluate_gates(fixed_result, GateSpec(min_agreement=99.0)))
    trt = got["trt", "min_agreement"]
    assert trt.status == "skipped" and trt.value is None
    assert "needs an NVIDIA GPU" in trt.reason
    check_gates([trt])  # skipped alone does not fail a normal run ...
    with pytest.raises(GateFailed, match=r"1 of 1 gates did not pass \(1 skipped \(strict\)\).*trt min_agreement: skipped"):
        check_gates([trt], strict=True)  # ... but a strict CI refuses it


def test_latency_gates_read_the_chosen_point(fixed_result):
    gates = {"onnx": GateSpec(max_p90_ms=3.0, min_speedup=1.5),
             "int8": GateSpec(max_p90_ms=3.0, min_speedup=1.5),
             "student": GateSpec(min_top1=85.0, min_speedup=1.0, max_p90_ms=4.0, batch_size=32)}
    got = by_key(evaluate_gates(fixed_result, gates))
    assert got["onnx", "max_p90_ms"].status == "pass" and got["onnx", "max_p90_ms"].value == 2.5
    assert got["onnx", "min_speedup"].value == pytest.approx(2.0)
    assert got["int8", "max_p90_ms"].status == "fail" and got["int8", "max_p90_ms"].margin == pytest.approx(-3.0)
    assert got["int8", "min_speedup"].status == "fail" and got["int8", "min_speedup"].value == pytest.approx(0.8)
    assert got["student", "min_top1"].status == "pass"
    assert got["student", "min_speedup"].status == "skipped"
    assert got["student", "min_speedup"].reason == "the stage is the reference"
    assert got["student", "max_p90_ms"].value == 44.0 and got["student", "max_p90_ms"].status == "fail"


def test_missing_latency_point_is_skipped_with_where(fixed_result):
    got = by_key(evaluate_gates(fixed_result, {"onnx": GateSpec(max_p90_ms=10.0, batch_size=8)}))
    assert got["onnx", "max_p90_ms"].status == "skipped"
    assert got["onnx", "max_p90_ms"].reason == "no latency measured at batch 8, 2 threads"


def test_agreement_threshold_is_inclusive():
    from compress.validate.accuracy import AccuracyResult
    from compress.validate.results import StageResult, ValidationResult

    stages = {"ref": StageResult("ref", "a", "pytorch", accuracy=AccuracyResult(1000, 90.0, 99.0, 100.0, 0.0)),
              "onnx": StageResult("onnx", "b", "onnxruntime",
                                  accuracy=AccuracyResult(1000, 90.0, 99.0, 100.0 * 999 / 1000, 1e-5))}
    [g] = evaluate_gates(ValidationResult("ref", stages), GateSpec(min_agreement=99.9))
    assert g.status == "pass"


def test_failure_summary_and_table(fixed_result):
    results = evaluate_gates(fixed_result, GateSpec(max_top1_drop=1.0, min_agreement=99.9))
    with pytest.raises(GateFailed) as info:
        check_gates(results)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("2 of 6 gates did not pass (2 failed): ")
    assert "int8 max_top1_drop 1.50 pt > 1.00 pt (by 0.50 pt)" in message
    assert "int8 min_agreement 97.00% < 99.90% (by 2.90%)" in message
    table = gate_table(results).splitlines()
    assert table[0].split() == ["stage", "gate", "value", "threshold", "margin", "status"]
    assert len(table) == 4  # header, rule, two failures
    assert table[2].split() == ["int8", "max_top1_drop", "1.50", "pt", "1.00", "pt", "-0.50", "pt", "fail"]
    assert "skipped: TensorRT" in gate_table(results, statuses=("skipped",))
    assert gate_table(evaluate_gates(fixed_result, GateSpec(min_top1=50.0))) == ""


def test_gate_spec_from_dict_names_bad_keys():
    assert GateSpec.from_dict({"min_agreement": 99.9, "batch_size": 1}) == GateSpec(min_agreement=99.9)
    with pytest.raises(ConfigError, match=r"^stages.onnx.gates.min_agrement: unknown gate \(did you mean 'min_agreement'\?\)"):
        GateSpec.from_dict({"min_agrement": 99.9}, where="stages.onnx.gates")
    with pytest.raises(ConfigError, match="percent points"):
        GateSpec(min_agreement=99.9e2)
    with pytest.raises(ConfigError, match="max_p90_ms must be positive"):
        GateSpec(max_p90_ms=0)


def test_gates_for_unknown_stage_are_refused(fixed_result):
    with pytest.raises(ConfigError, match="gates name stage 'onxx'.*did you mean 'onnx'"):
        evaluate_gates(fixed_result, {"onxx": GateSpec(min_agreement=99.0)})


def test_parse_gates_from_a_recipe():
    from compress.validate.gates import parse_gates

    assert parse_gates(None) is None
    assert parse_gates({"min_agreement": 99.9}) == GateSpec(min_agreement=99.9)
    assert parse_gates({"onnx": {"min_agreement": 99.9}, "int8": {"max_top1_drop": 1}}) == {
        "onnx": GateSpec(min_agreement=99.9), "int8": GateSpec(max_top1_drop=1.0)}
    with pytest.raises(ConfigError, match=r"^validate.gates.int8.max_top1_dorp: unknown gate"):
        parse_gates({"int8": {"max_top1_dorp": 1}}, "validate.gates")


def test_a_new_gate_is_one_table_entry(fixed_result, monkeypatch):
    """A size budget, added the way a contributor would: one Gate in GATES; recipes, GateSpec, judging,
    descriptions and the failure table pick it up."""
    from compress.validate.gates import GATES, Gate, parse_gates
    from compress.validate.verdicts import describe
    from compress.validate.report import render_markdown

    def size_mb(x):  # x: GateInputs (the stage, the reference, the latency point, the baseline stage)
        return (x.stage.size_bytes / 1e6, "") if x.stage.size_bytes is not None else (None, "size was not recorded")

    monkeypatch.setitem(GATES, "max_size_mb", Gate("max_size_mb", "MB", at_least=False, percent=False, read=size_mb,
                                                   help="file size, MB."))
    gates = parse_gates({"onnx": {"max_size_mb": 0.2, "min_agreement": 99.9}, "int8": {"max_size_mb": 0.2},
                         "trt": {"max_size_mb": 0.2}}, "validate.gates")
    assert gates["onnx"].thresholds == {"min_agreement": 99.9, "max_size_mb": 0.2}  # table order
    got = by_key(evaluate_gates(fixed_result, gates))
    assert got["onnx", "max_size_mb"].status == "fail" and got["onnx", "max_size_mb"].margin == pytest.approx(-0.19)
    assert got["int8", "max_size_mb"].status == "pass" and got["int8", "max_size_mb"].value == pytest.approx(0.11)
    assert got["trt", "max_size_mb"].status == "skipped"
    assert describe(got["onnx", "max_size_mb"]) == "onnx max_size_mb 0.39 MB > 0.20 MB (by 0.19 MB)"
    fixed_result.gates = list(got.values())
    assert "| onnx | max_size_mb | 0.39 MB | 0.20 MB |" in render_markdown(fixed_result)
    with pytest.raises(ConfigError, match="gate max_size_mb must be positive, got -1.0"):
        GateSpec(max_size_mb=-1)


def test_the_command_line_has_one_option_per_gate():
    from compress.cli.options import GATE_OPTIONS
    from compress.validate.gates import GATES

    assert [option.name for option in GATE_OPTIONS] == list(GATES)
    assert [option.default.param_decls[0] for option in GATE_OPTIONS] == [
        "--min-top1", "--min-above-chance", "--max-top1-drop", "--min-agreement", "--max-p90-ms", "--min-speedup",
        "--max-top1-drop-vs-baseline", "--max-speedup-loss-vs-baseline"]
