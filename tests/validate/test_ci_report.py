"""JUnit XML and the Markdown summary, parsed back with the standard library."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from compress.errors import ConfigError
from compress.validate.ci_report import append_summary, junit_xml, markdown_summary, publish_gates, write_junit
from compress.validate.results import GateResult

PASS = GateResult("onnx", "min_agreement", 99.9, 100.0, "pass", 0.1, unit="%")
FAIL = GateResult("int8", "max_top1_drop", 1.0, 2.5, "fail", -1.5, unit="pt")
SKIP = GateResult("tensorrt", "min_speedup", 1.0, None, "skipped", reason="TensorRT is not installed", unit="x")


def _cases(root: ET.Element) -> dict[tuple[str, str], ET.Element]:
    return {(c.get("classname"), c.get("name")): c for c in root.iter("testcase")}  # type: ignore[misc]


def test_junit_has_one_case_per_gate_and_counts(tmp_path: Path) -> None:
    path = tmp_path / "gates.xml"
    write_junit(path, {"fashion_mnist_ci": [PASS, FAIL, SKIP], "second": [PASS]})
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures"), root.get("skipped")) == ("4", "1", "1")
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == ["fashion_mnist_ci", "second"]
    assert (suites[0].get("tests"), suites[0].get("failures"), suites[0].get("skipped")) == ("3", "1", "1")
    cases = _cases(suites[0])
    assert set(cases) == {("onnx", "min_agreement"), ("int8", "max_top1_drop"), ("tensorrt", "min_speedup")}


def test_junit_failure_message_is_the_gate_line_and_properties_carry_numbers() -> None:
    cases = _cases(ET.fromstring(junit_xml({"run": [PASS, FAIL, SKIP]})))
    failed = cases[("int8", "max_top1_drop")]
    failure = failed.find("failure")
    assert failure is not None and failure.get("message") == "int8 max_top1_drop 2.50 pt > 1.00 pt (by 1.50 pt)"
    props = {p.get("name"): p.get("value") for p in failed.iter("property")}
    assert props == {"value": "2.5", "threshold": "1", "margin": "-1.5", "unit": "pt"}
    passed = cases[("onnx", "min_agreement")]
    assert passed.find("failure") is None and passed.find("skipped") is None
    skipped = cases[("tensorrt", "min_speedup")].find("skipped")
    assert skipped is not None and skipped.get("message") == "TensorRT is not installed"
    assert {p.get("name"): p.get("value") for p in cases[("tensorrt", "min_speedup")].iter("property")}["value"] == ""


def test_junit_with_every_gate_passing_has_no_failure() -> None:
    root = ET.fromstring(junit_xml({"run": [PASS]}))
    assert root.get("failures") == "0" and not list(root.iter("failure"))


def test_markdown_summary_table_and_verdict(tmp_path: Path) -> None:
    text = markdown_summary({"ci": [PASS, FAIL, SKIP]}, "fashion_mnist_ci")
    lines = text.splitlines()
    assert lines[0] == "### fashion_mnist_ci: ❌ failed"
    assert "3 gates: 1 passed, 1 failed, 1 skipped." in lines
    assert "| ci | int8 | `max_top1_drop` | 2.50 pt | 1.00 pt | -1.50 pt | ❌ fail |" in lines
    assert "| ci | onnx | `min_agreement` | 100.00 % | 99.90 % | +0.10 % | ✅ pass |" in lines
    assert markdown_summary({"ci": [PASS]}).splitlines()[0] == "### compress gates: ✅ passed"
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    append_summary(summary, {"ci": [PASS]})
    assert summary.read_text().startswith("earlier step\n### compress gates")


# ------------------------------------------------------------ output paths (issue 23, item 8): checked first, named


def _one_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    from compress.cli import main

    with pytest.raises(SystemExit) as stopped:
        main(argv)
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in captured.err and captured.out == "", captured.err
    return int(stopped.value.code or 0), lines[0]


@pytest.mark.parametrize("command", ["validate", "run"])
def test_a_gate_output_that_cannot_be_written_is_refused_before_any_work(command: str, tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """The validated model and the recipe do not even exist: the output paths are checked first."""
    first = [command, str(tmp_path / ("never-opened.onnx" if command == "validate" else "never-read.yaml"))]
    code, line = _one_error(first + ["--junit", str(tmp_path)], capsys)
    assert (code, line) == (1, f"error: --junit '{tmp_path}' is a folder: name a file, e.g. '{tmp_path}/gates.xml'")
    (tmp_path / "notes.txt").write_text("x")
    code, line = _one_error(first + ["--summary", str(tmp_path / "notes.txt" / "summary.md")], capsys)
    assert line == f"error: --summary '{tmp_path}/notes.txt/summary.md': '{tmp_path}/notes.txt' is a file, not a " \
                   "folder; choose another path"


def test_a_summary_on_dev_full_names_dev_full() -> None:
    with pytest.raises(ConfigError, match=r"^cannot write '/dev/full' \(No space left on device\): choose a writable "
                                          r"path$"):
        publish_gates({"run": [PASS]}, summary="/dev/full")


def test_a_junit_path_that_is_a_folder_names_the_user_s_path_not_a_temporary_one(tmp_path: Path) -> None:
    """Called from Python (no up-front check): the atomic write still names the path it was given."""
    with pytest.raises(ConfigError, match=rf"^cannot write '{tmp_path}' \(Is a directory\): choose a writable path$"):
        publish_gates({"run": [PASS]}, junit=tmp_path)
    assert os.listdir(tmp_path) == []  # its temporary file is gone too
