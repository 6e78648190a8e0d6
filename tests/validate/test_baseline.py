"""Baseline gates: a stage's top-1 and speed-up over the reference against the same stage of a stored report,
on fixed numbers, through `compress validate --baseline` on real files (pass and fail), and in recipes."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from compress.cli import main
from compress.errors import ConfigError
from compress.validate.gates import BASELINE_DEFAULTS, GateSpec
from compress.validate.verdicts import evaluate_gates
from compress.validate.results import ValidationResult, read_result


def by_key(results):
    return {(g.stage, g.gate): g for g in results}


def scaled_speedups(result: ValidationResult, stage: str, factor: float) -> ValidationResult:
    """A copy of ``result`` whose ``stage`` was ``factor`` times as fast relative to the reference."""
    out = copy.deepcopy(result)
    for entry in out.stages[stage].speedups:
        entry["speedup"] *= factor
    return out


def test_an_unchanged_stage_passes_and_a_worse_one_fails_by_how_much(fixed_result):
    baseline = copy.deepcopy(fixed_result)
    baseline.stages["int8"].accuracy.top1 = 90.0  # the stored INT8 had 90.0%, this run 88.5%
    gates = GateSpec(max_top1_drop_vs_baseline=1.0, max_speedup_loss_vs_baseline=10.0)
    got = by_key(evaluate_gates(scaled_speedups(fixed_result, "onnx", 0.8), gates, baseline))
    # onnx: same accuracy, but 80% of the stored speed-up over the reference: 20% of it lost
    assert got["onnx", "max_top1_drop_vs_baseline"].status == "pass"
    assert got["onnx", "max_top1_drop_vs_baseline"].value == pytest.approx(0.0)
    loss = got["onnx", "max_speedup_loss_vs_baseline"]
    assert loss.status == "fail" and loss.value == pytest.approx(20.0) and loss.margin == pytest.approx(-10.0)
    assert loss.unit == "%"
    # int8: 1.5 points below the stored 90.0%, 1.0 allowed; its speed-up is unchanged
    drop = got["int8", "max_top1_drop_vs_baseline"]
    assert drop.status == "fail" and drop.value == pytest.approx(1.5) and drop.margin == pytest.approx(-0.5)
    assert got["int8", "max_speedup_loss_vs_baseline"].status == "pass"
    assert got["int8", "max_speedup_loss_vs_baseline"].value == pytest.approx(0.0)
    # a faster stage loses nothing: the loss is negative and passes
    faster = by_key(evaluate_gates(scaled_speedups(fixed_result, "onnx", 1.5), gates, fixed_result))
    assert faster["onnx", "max_speedup_loss_vs_baseline"].value == pytest.approx(100 * (1 - 1.5))
    assert faster["onnx", "max_speedup_loss_vs_baseline"].status == "pass"


def test_a_baseline_without_baseline_gates_judges_the_defaults_on_every_stage_but_the_reference(fixed_result):
    got = by_key(evaluate_gates(fixed_result, GateSpec(min_agreement=99.0), fixed_result))
    assert {stage for stage, _ in got} == {"onnx", "int8", "trt"}
    for stage in ("onnx", "int8"):
        for gate, threshold in BASELINE_DEFAULTS.items():
            assert got[stage, gate].threshold == threshold and got[stage, gate].status == "pass"
    assert got["trt", "max_top1_drop_vs_baseline"].status == "skipped"  # not run here: never a pass
    assert got["int8", "min_agreement"].status == "fail"  # the other gates are judged as before
    # a baseline gate set explicitly replaces the defaults
    only = by_key(evaluate_gates(fixed_result, {"int8": GateSpec(max_top1_drop_vs_baseline=0.5)}, fixed_result))
    assert list(only) == [("int8", "max_top1_drop_vs_baseline")]


def test_what_the_baseline_lacks_is_skipped_with_the_reason(fixed_result):
    baseline = copy.deepcopy(fixed_result)
    del baseline.stages["int8"]
    baseline.stages["onnx"].speedups = []
    gates = GateSpec(max_top1_drop_vs_baseline=1.0, max_speedup_loss_vs_baseline=10.0)
    got = by_key(evaluate_gates(fixed_result, gates, baseline))
    assert got["int8", "max_top1_drop_vs_baseline"].reason == "the baseline report has no stage 'int8'"
    assert got["onnx", "max_speedup_loss_vs_baseline"].reason == "no speed-up measured at batch 1, 2 threads in the baseline"
    assert got["onnx", "max_top1_drop_vs_baseline"].status == "pass"
    without = by_key(evaluate_gates(fixed_result, gates))  # baseline gates but no baseline at all
    assert without["onnx", "max_top1_drop_vs_baseline"].status == "skipped"
    assert "no baseline report given" in without["onnx", "max_top1_drop_vs_baseline"].reason


def test_a_baseline_on_other_images_is_refused(fixed_result):
    baseline = copy.deepcopy(fixed_result)
    baseline.data["samples"] = 2000
    with pytest.raises(ConfigError, match=r"measured on 2000 fashion-mnist images, this run on 1000 fashion-mnist"):
        evaluate_gates(fixed_result, None, baseline)


def test_read_result_reads_a_report_and_says_what_is_wrong_with_other_files(fixed_result, tmp_path):
    path = tmp_path / "report.json"
    path.write_text(json.dumps({**fixed_result.to_dict(), "regime": "extra keys of report.json are ignored"}))
    assert read_result(path).stages["int8"].accuracy.top1 == 88.5
    with pytest.raises(ConfigError, match=r"^baseline '.*missing.json' does not exist"):
        read_result(tmp_path / "missing.json")
    (tmp_path / "other.json").write_text(json.dumps({"epoch": 3}))
    with pytest.raises(ConfigError, match=r"is not a compress report \(no 'reference' field\)"):
        read_result(tmp_path / "other.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ConfigError, match=r"^baseline '.*broken\.json' is not valid JSON \(Expecting"):
        read_result(tmp_path / "broken.json")


# ---------------------------------------------------------------------------------- the command line, real files

def validate(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        main(["validate", *args])
        code = 0
    except SystemExit as exit_info:
        code = int(exit_info.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def stored(tiny_artifacts, tmp_path_factory) -> Path:
    """A report of the student and its ONNX export, as `compress validate --out` writes it."""
    out = tmp_path_factory.mktemp("baseline")
    main(["validate", str(tiny_artifacts["student"]), str(tiny_artifacts["onnx"]), "--val-limit", "256",
          "--batch-sizes", "1", "--threads", "1", "--duration", "0.2", "--out", str(out)])
    return out / "report.json"


FAST = ["--val-limit", "256", "--batch-sizes", "1", "--threads", "1", "--duration", "0.2"]


def test_validate_baseline_passes_on_the_same_models_and_fails_on_a_better_baseline(
        tiny_artifacts, stored, tmp_path, capsys):
    artifacts = [str(tiny_artifacts["student"]), str(tiny_artifacts["onnx"])]
    # the same models again: no top-1 drop (timing noise aside, the speed-up is not gated here)
    code, out, err = validate([*artifacts, *FAST, "--baseline", str(stored), "--max-top1-drop-vs-baseline", "0.5",
                               "--junit", str(tmp_path / "pass.xml")], capsys)
    assert code == 0, err
    assert "| onnx | max_top1_drop_vs_baseline | 0.00 pt | 0.50 pt |" in out  # stdout: the Markdown result
    assert 'failures="0"' in (tmp_path / "pass.xml").read_text()

    # a stored report where the ONNX model was 3 points better and 100 times as fast relative to PyTorch (a
    # margin far beyond timing noise on a shared machine)
    better = json.loads(stored.read_text())
    better["stages"]["onnx"]["accuracy"]["top1"] += 3.0
    for entry in better["stages"]["onnx"]["speedups"]:
        entry["speedup"] *= 100.0
    (tmp_path / "better.json").write_text(json.dumps(better))
    code, out, err = validate([*artifacts, *FAST, "--baseline", str(tmp_path / "better.json"), "--json"], capsys)
    assert code == 3, err
    gates = {(g["stage"], g["gate"]): g for g in json.loads(out)["gates"]}  # stdout: the result alone
    drop, loss = gates["onnx", "max_top1_drop_vs_baseline"], gates["onnx", "max_speedup_loss_vs_baseline"]
    assert drop["status"] == "fail" and drop["value"] == pytest.approx(3.0) and drop["threshold"] == 1.0
    assert loss["status"] == "fail" and 95.0 < loss["value"] < 100.0 and loss["threshold"] == 10.0
    # 4 gates: the two baseline gates and the sanity gate (min_above_chance) on each model
    assert err.strip().splitlines()[-1].startswith("error: 2 of 4 gates did not pass (2 failed): onnx "
                                                  "max_top1_drop_vs_baseline 3.00 pt > 1.00 pt (by 2.00 pt)")


def test_a_baseline_gate_without_a_baseline_is_a_usage_error(tiny_artifacts, capsys):
    code, _, err = validate([str(tiny_artifacts["student"]), "--max-speedup-loss-vs-baseline", "5"], capsys)
    assert code == 2
    assert err.strip() == "error: --max-speedup-loss-vs-baseline compares with a stored report: add --baseline REPORT.json"


def test_a_baseline_that_is_not_a_report_fails_before_any_work(tiny_artifacts, tmp_path, capsys):
    (tmp_path / "notes.json").write_text("[1, 2]")
    code, out, err = validate([str(tiny_artifacts["student"]), "--baseline", str(tmp_path / "notes.json")], capsys)
    assert code == 1 and out == ""
    assert err.startswith("error: --baseline '") and "is not a compress report" in err


# ---------------------------------------------------------------------------------- recipes

def test_recipes_take_a_baseline_and_refuse_baseline_gates_without_one():
    from compress.pipeline import parse_recipe

    recipe = {"name": "b", "data": {"name": "fashion-mnist"}, "teachers": [{"model": "resnet8", "weights": "w.pt"}],
              "distill": {"student": "resnet8"}, "export": {"onnx": {}}}
    gated = {**recipe, "validate": {"gates": {"onnx": {"max_top1_drop_vs_baseline": 0.5}}}}
    with pytest.raises(ConfigError, match=r"^validate\.gates: baseline gates need validate\.baseline"):
        parse_recipe(gated)
    spec = parse_recipe({**gated, "validate": {**gated["validate"], "baseline": "runs/old/report.json"}})
    assert spec.validation.baseline == "runs/old/report.json"
    assert spec.validation.to_dict()["baseline"] == "runs/old/report.json"
