"""Gate results in the formats CI systems read: JUnit XML and a GitHub-flavoured Markdown summary.

JUnit: one ``<testsuite>`` per validation (``compress validate``: one; ``compress run``: one per recipe),
one ``<testcase>`` per gate and stage (``classname`` = the stage, ``name`` = the gate); a failed gate is a
``<failure>`` whose message is the gate line, a skipped one a ``<skipped>`` with the reason; properties
carry value, threshold, margin and unit. This is the schema Jenkins, GitLab and GitHub test reporters read
(``testsuites > testsuite > testcase > failure|skipped``).
"""

from __future__ import annotations

import math
import os
import xml.etree.ElementTree as ET
from typing import Mapping, Sequence

from compress.artifacts import atomic_write_text, check_output_file, writing
from compress.validate.verdicts import describe
from compress.validate.results import GateResult

Suites = Mapping[str, Sequence[GateResult]]
_STATUS_MARK = {"pass": "✅ pass", "fail": "❌ fail", "skipped": "⏭️ skipped"}


def _number(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return ""
    return f"{value:.6g}"


def _testcase(gate: GateResult) -> ET.Element:
    case = ET.Element("testcase", {"classname": gate.stage, "name": gate.gate, "time": "0"})
    props = ET.SubElement(case, "properties")
    for key, value in (("value", _number(gate.value)), ("threshold", _number(gate.threshold)),
                       ("margin", _number(gate.margin)), ("unit", gate.unit)):
        ET.SubElement(props, "property", {"name": key, "value": value})
    line = describe(gate)
    if gate.status == "fail":
        ET.SubElement(case, "failure", {"message": line, "type": "GateFailed"}).text = line
    elif gate.status == "skipped":
        ET.SubElement(case, "skipped", {"message": gate.reason or "not judged"})
    return case


def junit_xml(suites: Suites, name: str = "compress gates") -> str:
    """The gate results as a JUnit XML document (UTF-8, with declaration)."""
    root = ET.Element("testsuites", {"name": name})
    totals = {"tests": 0, "failures": 0, "skipped": 0}
    for suite_name, gates in suites.items():
        counts = {"tests": len(gates), "failures": sum(g.status == "fail" for g in gates),
                  "skipped": sum(g.status == "skipped" for g in gates)}
        suite = ET.SubElement(root, "testsuite", {"name": suite_name, "errors": "0", "time": "0",
                                                  **{k: str(v) for k, v in counts.items()}})
        suite.extend(_testcase(g) for g in gates)
        for key, value in counts.items():
            totals[key] += value
    root.attrib.update({k: str(v) for k, v in totals.items()}, errors="0", time="0")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_junit(path: str | os.PathLike[str], suites: Suites, name: str = "compress gates") -> None:
    atomic_write_text(path, junit_xml(suites, name))


def _cell(gate: GateResult, value: float | None, signed: bool = False) -> str:
    if value is None:
        return "–"
    unit = {"%": " %", "pt": " pt", "ms": " ms", "x": "×"}.get(gate.unit, f" {gate.unit}" if gate.unit else "")
    return f"{value:+.2f}{unit}" if signed else f"{value:.2f}{unit}"


def markdown_summary(suites: Suites, title: str = "compress gates") -> str:
    """A GitHub-flavoured Markdown table of every gate (append it to ``$GITHUB_STEP_SUMMARY``)."""
    gates = [g for suite in suites.values() for g in suite]
    failed = sum(g.status == "fail" for g in gates)
    skipped = sum(g.status == "skipped" for g in gates)
    verdict = "❌ failed" if failed else "✅ passed"
    lines = [f"### {title}: {verdict}", "",
             f"{len(gates)} gates: {len(gates) - failed - skipped} passed, {failed} failed, {skipped} skipped.", ""]
    if gates:
        lines += ["| suite | stage | gate | value | threshold | margin | status |", "|---|---|---|---|---|---|---|"]
        for suite_name, suite in suites.items():
            for g in suite:
                status = _STATUS_MARK[g.status] + "".join(f": {text}" for text in (g.reason, g.note) if text)
                lines.append(f"| {suite_name} | {g.stage} | `{g.gate}` | {_cell(g, g.value)} | {_cell(g, g.threshold)} "
                             f"| {_cell(g, g.margin, signed=True)} | {status.replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def append_summary(path: str | os.PathLike[str], suites: Suites, title: str = "compress gates") -> None:
    """Append the summary to ``path`` (GitHub gives each step's summary file in ``$GITHUB_STEP_SUMMARY``)."""
    with writing(path), open(path, "a", encoding="utf-8") as handle:
        handle.write(markdown_summary(suites, title))


def check_gate_outputs(junit: str | os.PathLike[str] | None = None,
                       summary: str | os.PathLike[str] | None = None) -> None:
    """Refuse a ``--junit``/``--summary`` path that cannot be written before the validation runs, not after."""
    for option, path, example in (("--junit", junit, "gates.xml"), ("--summary", summary, "summary.md")):
        if path is not None:
            check_output_file(path, option, example)


def publish_gates(suites: Suites, junit: str | os.PathLike[str] | None = None,
                  summary: str | os.PathLike[str] | None = None, name: str = "compress gates") -> None:
    """Write what ``compress validate/run --junit FILE --summary FILE`` asked for: the JUnit file (replaced)
    and the Markdown summary (appended, as ``$GITHUB_STEP_SUMMARY`` expects). A path that cannot be written
    is one line naming it (``compress.artifacts.write_error``)."""
    if junit is not None:
        write_junit(junit, suites, name)
    if summary is not None:
        append_summary(summary, suites, name)
