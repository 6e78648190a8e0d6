"""Exit codes of `compress`, as documented in `--help` and the README: 0 success, 1 the run failed, 2 a usage
error, 3 a gate failed (every artifact and report still written), 130 interrupted (tests/test_interrupts.py).
`compress run` exits 3 when a gate of any stage failed, after writing its JUnit and Markdown summaries."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from compress.cli import main
from compress.pipeline.stages import STAGES

N = len(STAGES)  # stage lines read "[i/N] name: ..."
from compress.errors import EXIT_CODES


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``compress ARGS`` run in this process."""
    try:
        main(args)
        code = 0
    except SystemExit as exit_info:
        code = int(exit_info.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_every_exit_code_is_documented_in_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert set(EXIT_CODES) == {0, 1, 2, 3, 130}
    for args in (["--help"], ["run", "--help"], ["validate", "--help"]):
        code, out, _ = run_cli(args, capsys)
        text = " ".join(re.sub(r"[│╭╮╰╯─]", " ", out).split())  # the help box and its line breaks away
        assert code == 0
        assert "Exit codes: " + "; ".join(f"{c} {m}" for c, m in EXIT_CODES.items()) in text, args


def test_success_is_0_with_the_result_alone_on_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(["list", "methods", "--json"], capsys)
    assert code == 0 and err == ""
    assert [m["name"] for m in json.loads(out)] == ["atsc", "kd", "none", "simkd"]
    code, out, _ = run_cli(["--version"], capsys)
    assert code == 0 and out == "compress 0.1.0\n"


@pytest.mark.parametrize("args,message", [
    (["run", "pipelines/fashion_mnist_ci.yaml", "--bogus"], r"^error: No such option: --bogus"),
    (["validate", "model.onnx", "--min-agreement", "lots"], r"^error: Invalid value for '--min-agreement'"),
    (["list"], r"^error: Missing argument 'what'"),
    (["train-teacher", "--model", "resnet8", "--out", "unused", "--milestones", "5,x"],
     r"^error: --milestones takes comma-separated whole numbers"),
    (["validate", "model.onnx", "--max-top1-drop-vs-baseline", "1"],
     r"^error: --max-top1-drop-vs-baseline compares with a stored report: add --baseline REPORT.json$"),
    (["--log-file", "/nonexistent/folder/log.txt", "list", "models"], r"^error: --log-file: cannot write"),
    (["frobnicate"], r"^error: No such command 'frobnicate'"),
])
def test_usage_errors_are_2(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(args, capsys)
    assert code == 2, err
    assert out == "" and len(err.strip().splitlines()) == 1 and re.search(message, err.strip()), err


def test_a_failed_run_is_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: r\ndata: {name: fashion-mnist}\nteachers: [{checkpoint: missing.safetensors}]\n"
                      "distill: {student: resnet8}\n")
    code, out, err = run_cli(["run", str(recipe), "--out", str(tmp_path / "run")], capsys)
    assert code == 1 and out == ""
    assert err.startswith("error: teachers[0].checkpoint: 'missing.safetensors' does not exist")


# ---------------------------------------------------------------------------------- a gate failing in `compress run`

@pytest.fixture(scope="module")
def teacher(fmnist_available: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from compress.data import DataConfig, load_data
    from compress.distill.base import Supervised
    from compress.models import create_model
    from compress.train import TrainConfig, fit

    out = tmp_path_factory.mktemp("teacher") / "run"
    torch.manual_seed(0)
    data = load_data(DataConfig(batch_size=64, train_limit=256, val_limit=128))
    fit(Supervised(create_model("resnet8", 10, 1)), data, TrainConfig(epochs=1, lr=0.2), out, log=lambda _: None,
        progress=False)
    return out / "model.safetensors"


def recipe(teacher: Path, gates: dict[str, Any], **validate: Any) -> dict[str, Any]:
    """A pipeline of seconds: a given teacher, one epoch of a student, its ONNX export, validated."""
    return {"name": "gated", "data": {"name": "fashion-mnist", "train_limit": 256, "val_limit": 128, "workers": 0},
            "teachers": [{"checkpoint": str(teacher)}],
            "distill": {"student": "resnet8", "methods": ["kd"], "train": {"epochs": 1, "batch_size": 64, "lr": 0.2}},
            "export": {"onnx": {"exporter": "torchscript", "parity_images": 32}},
            "validate": {"batch_sizes": [1], "threads": [1], "duration_s": 0.05, "gates": gates, **validate}}


def test_run_exits_3_on_a_failed_gate_after_writing_everything_then_0_when_the_gates_pass(
        teacher: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path, out = tmp_path / "gated.yaml", tmp_path / "run"
    summary = tmp_path / "step-summary.md"
    summary.write_text("earlier step\n")
    # seconds of training leave these models at chance: the sanity gate (min_above_chance) is off here, its
    # own tests are in tests/validate/test_meaningful_gates.py
    failing = {"student": {"min_top1": 99.9, "min_above_chance": 0}, "onnx": {"min_agreement": 99.0, "min_above_chance": 0}}
    path.write_text(yaml.safe_dump(recipe(teacher, failing)))
    junit = out / "ci" / "gates.xml"
    code, stdout, err = run_cli(["run", str(path), "--out", str(out), "--no-progress", "--junit", str(junit),
                                 "--summary", str(summary), "--json"], capsys)
    assert code == 3, err
    assert re.search(r"^error: 1 of 2 gates did not pass \(1 failed\): student min_top1 \d+\.\d\d% < 99\.90%",
                     err.strip().splitlines()[-1])
    result = json.loads(stdout)  # stdout is the result alone; the stage log is on stderr
    assert result["passed"] is False and result["run_dir"] == str(out)
    assert [s["name"] for s in result["stages"]][-1] == "report"
    assert re.search(rf"\[{N}/{N}\] report:", err)
    for name in ("report.md", "report.json", "export-onnx/model.onnx", "distill/kd/model.safetensors"):
        assert (out / name).is_file(), name  # every artifact and report written despite the failure

    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and suite.get("name") == "gated"
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("2", "1", "0")
    cases = {(c.get("classname"), c.get("name")): c for c in suite.iter("testcase")}
    failure = cases["student", "min_top1"].find("failure")
    assert failure is not None and re.match(r"student min_top1 \d+\.\d\d% < 99\.90% \(by \d+\.\d\d%\)",
                                            failure.get("message", ""))
    properties = {p.get("name"): p.get("value") for p in cases["student", "min_top1"].iter("property")}
    assert properties["threshold"] == "99.9" and float(properties["margin"]) < 0
    assert cases["onnx", "min_agreement"].find("failure") is None
    text = summary.read_text()
    assert text.startswith("earlier step\n### gated (compress gates): ❌ failed")  # appended, as GitHub expects
    assert "| gated | student | `min_top1` |" in text

    # the same run with a threshold it meets: only the report stage runs again, and the exit is 0
    path.write_text(yaml.safe_dump(recipe(teacher, {**failing, "student": {"min_top1": 1.0, "min_above_chance": 0}})))
    code, stdout, err = run_cli(["run", str(path), "--out", str(out), "--no-progress", "--junit", str(junit)], capsys)
    assert code == 0, err
    assert stdout == f"run folder: {out}\nreport: {out / 'report.md'}\n"
    assert re.search(rf"\[{N - 1}/{N}\] validate: .*\(skipped: unchanged\)", err)
    assert f"[{N}/{N}] report: running" in err
    assert ET.parse(junit).getroot().get("failures") == "0"

    # a baseline in the recipe: the stored report of this very run, so nothing dropped
    baseline = tmp_path / "baseline.json"
    baseline.write_bytes((out / "report.json").read_bytes())
    at_chance = {"min_above_chance": 0}
    path.write_text(yaml.safe_dump(recipe(teacher, {"onnx": {"max_top1_drop_vs_baseline": 0.5, **at_chance},
                                                    "student": at_chance}, baseline=str(baseline))))
    code, stdout, err = run_cli(["run", str(path), "--out", str(out), "--no-progress", "--json"], capsys)
    assert code == 0, err
    [gate] = json.loads(stdout)["gates"]
    assert (gate["gate"], gate["status"], gate["value"]) == ("max_top1_drop_vs_baseline", "pass", 0.0)

    # ... and one where the ONNX model had been 5 points better: the run fails on it with 3
    better = json.loads(baseline.read_text())
    better["stages"]["onnx"]["accuracy"]["top1"] += 5.0
    baseline.write_text(json.dumps(better))
    code, stdout, err = run_cli(["run", str(path), "--out", str(out), "--no-progress"], capsys)
    assert code == 3
    assert "onnx max_top1_drop_vs_baseline 5.00 pt > 0.50 pt (by 4.50 pt)" in err.strip().splitlines()[-1]
