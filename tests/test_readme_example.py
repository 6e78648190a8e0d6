"""The README's "Your own model" example runs as written (in a scratch folder, on a few hundred images)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Your own model", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, "the section has one runnable Python example"
    return blocks[0]


def test_your_own_model_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    pytest.importorskip("onnxruntime")
    monkeypatch.chdir(tmp_path)  # an empty folder: the example's teacher is the shipped one, by name
    namespace = {"__name__": "__main__"}
    exec(compile(readme_example(), "README.md", "exec"), namespace)
    result, report = namespace["result"], namespace["report"]
    assert (tmp_path / "runs" / "my-student" / "model.safetensors").exists()
    assert (tmp_path / "runs" / "my-student" / "export" / "model.onnx").exists()
    assert 10.0 < result.last_top1 <= 100.0  # one short epoch: better than nothing, and a real percentage
    assert report.stages["onnx"].accuracy.agreement >= 99.0
    printed = capsys.readouterr().out
    assert printed.startswith("top-1 ") and "ONNX agrees with PyTorch" in printed
    assert os.getcwd() == str(tmp_path)
