"""What the runs write is readable as the user's umask allows, not 0600: a team sharing a runs folder or
a CI artifact store reads the checkpoints, exports and reports of each other's runs."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

# Runs in a child process: the umask is process-wide, and setting it here would leak into other tests.
CHILD = r"""
import json, os, sys
from pathlib import Path

import torch
from torch import nn

from compress.artifacts import new_temp_folder
from compress.checkpoint import save_tensors
from compress.data.preprocessing import Preprocessing
from compress.export.onnx import export_onnx
from compress.validate.accuracy import AccuracyResult
from compress.validate.report import write_report
from compress.validate.results import StageResult, ValidationResult


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(1), nn.Linear(4 * 6 * 6, 3))

    def forward(self, x):
        return self.net(x)

    def architecture(self):
        return {"type": "test-tiny"}


root, modes = Path(sys.argv[1]), {}
for umask in (0o022, 0o027):
    os.umask(umask)
    out = root / oct(umask)  # created by the writers below, with the umask's mode
    save_tensors(out / "model.safetensors", {"w": torch.zeros(3)}, kind="test")
    export_onnx(Tiny(), Preprocessing((0.5,), (0.5,), 8, 1, 1), out / "export" / "model.onnx", exporter="torchscript")
    result = ValidationResult("student", {"student": StageResult(
        "student", "model.safetensors", "pytorch", accuracy=AccuracyResult(10, 90.0, 100.0, 100.0, 0.0))})
    write_report(result, out / "report", png=False)
    staging = new_temp_folder(out, ".export-")
    modes[oct(umask)] = {str(p.relative_to(out)): p.stat().st_mode & 0o777 for p in [out, *out.rglob("*")]}
    assert staging.name in modes[oct(umask)]
print(json.dumps(modes))
"""

FILES = ["model.safetensors", "model.safetensors.json", "export/model.onnx", "export/model.onnx.json",
         "report/report.json", "report/report.md"]


@pytest.fixture(scope="module")
def modes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, int]]:
    root = tmp_path_factory.mktemp("modes")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]), *sys.path])}
    done = subprocess.run([sys.executable, "-c", CHILD, str(root)], capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.mark.parametrize("umask, file_mode, folder_mode", [("0o22", 0o644, 0o755), ("0o27", 0o640, 0o750)])
def test_files_and_folders_follow_the_umask(modes: dict[str, dict[str, int]], umask: str, file_mode: int,
                                             folder_mode: int) -> None:
    written = modes[umask]
    assert {name: oct(written[name]) for name in FILES} == {name: oct(file_mode) for name in FILES}
    folders = {name: oct(mode) for name, mode in written.items() if name not in FILES}
    staging = [name for name in folders if name.startswith(".export-")]
    assert len(staging) == 1  # the export staging folder, which mkdtemp made 0700
    assert folders == {name: oct(folder_mode) for name in [".", "export", "report", staging[0]]}


def test_nothing_is_left_but_what_was_written(modes: dict[str, dict[str, int]]) -> None:
    """The temporary files were renamed into place: none is left under its hidden name."""
    for written in modes.values():
        assert not [name for name in written if name.endswith(".tmp")]


def test_the_umask_is_honoured_not_widened(tmp_path: Path) -> None:
    """Under a private umask (077) an artifact stays private: the mode comes from the umask alone."""
    script = ("import os, sys; os.umask(0o077)\nfrom compress.artifacts import write_json\n"
              "write_json(sys.argv[1], {'a': 1})")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]), *sys.path])}
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "x.json")], check=True, env=env, timeout=120)
    assert stat.S_IMODE((tmp_path / "x.json").stat().st_mode) == 0o600
    assert json.loads((tmp_path / "x.json").read_text()) == {"a": 1}
