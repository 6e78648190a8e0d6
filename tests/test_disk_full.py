"""A full disk (issue 17, item 6): one line naming the path and the space needed, no partial files, the
previous artifacts intact; `export` no longer blames the exporter.

Two kinds of test. Those using the ``small_disk`` fixture write to a real, small filesystem: a tmpfs of a
few hundred KB mounted for the test (root only; skipped with the reason where mounting is not allowed).
Those marked "simulated" raise ENOSPC by monkeypatching the lowest write the code path makes, and run
everywhere.
"""

from __future__ import annotations

import errno
import os
import re
import subprocess
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import torch
import yaml

from compress.artifacts import LOCK_FILE, read_sidecar, sha256_file, write_json
from compress.checkpoint import save_tensors
from compress.data import DataConfig, load_data
from compress.deployable import save_deployable
from compress.errors import DiskFull, ExportError
from compress.models import create_model
from compress.record import CheckpointRecord
from compress.validate.accuracy import AccuracyResult
from compress.validate.latency import LatencyStats
from compress.validate.report import write_report
from compress.validate.results import StageResult, ValidationResult
from cli_helpers import run_cli  # tests/ is on sys.path, as for the other helpers

TRAIN = ["train-teacher", "--model", "resnet8", "--train-limit", "256", "--val-limit", "128", "--batch-size", "64",
         "--seed", "1", "--no-progress"]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Callable[[int], Path]]:
    """``small_disk(kb)``: a real filesystem of ``kb`` KB (a tmpfs), unmounted after the test."""
    mounted: list[Path] = []

    def mount(kb: int) -> Path:
        where = tmp_path / f"disk{len(mounted)}"
        where.mkdir()
        if os.geteuid() != 0:
            pytest.skip("mounting a small tmpfs needs root; the simulated ENOSPC tests cover these code paths")
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kb}k", "tmpfs", str(where)], capture_output=True,
                              text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}); the simulated tests cover these paths")
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(disk: Path, leave_kb: int) -> None:
    """Write a ballast file until only ``leave_kb`` KB are free on ``disk``."""
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    (disk / "ballast").write_bytes(b"\0" * max(0, free - leave_kb * 1024))



def one_line_disk_full(err: str, path_pattern: str) -> None:
    lines = [line for line in err.splitlines() if line.startswith("error:") or "Traceback" in line]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert re.match(rf"error: disk full: writing '{path_pattern}' needs .+ \(.+ free there\); free up space",
                    lines[0]), lines[0]


def no_temporary_files(folder: Path) -> None:
    assert [p.name for p in folder.rglob("*") if p.name.endswith(".tmp")] == []


def snapshot(folder: Path) -> dict[str, tuple[int, int, str]]:
    """Every file with its inode, mtime and hash: a replaced or rewritten file shows."""
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns, sha256_file(p)) for p in folder.iterdir() if p.is_file()}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory, fmnist_available: Path) -> Path:
    torch.manual_seed(0)
    pre = load_data(DataConfig(train_limit=64, val_limit=64)).preprocessing
    path = tmp_path_factory.mktemp("ckpt") / "model.safetensors"
    save_deployable(path, create_model("resnet8", 10, 1, 28), pre)
    return path


# ---------------------------------------------------------------- real small filesystems

def test_training_that_fills_the_disk_keeps_the_last_epoch(small_disk: Callable[[int], Path],
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """1.5 MB hold epoch 1 (two 312 KB checkpoints and a 620 KB resume state), not epoch 2's first file."""
    run = small_disk(1500) / "run"
    code, err = run_cli(TRAIN + ["--epochs", "2", "--out", str(run)], capsys)
    assert code == 1
    one_line_disk_full(err, rf"{run}/(best|model)\.safetensors")
    assert re.search(r"needs about 31\d\.\d KB", err)  # the checkpoint's size: 312.2 KB
    no_temporary_files(run)
    assert not (run / LOCK_FILE).exists()
    assert CheckpointRecord.read(run, verify=True).epoch == 1  # the previous pair, whole and matching
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1
    code, err = run_cli(TRAIN + ["--epochs", "2", "--out", str(run), "--resume"], capsys)
    assert code == 1 and "resuming from epoch 1" in err  # the resume state was kept too


def test_a_full_disk_leaves_no_output_folder(small_disk: Callable[[int], Path],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    disk = small_disk(100)
    fill(disk, 0)
    code, err = run_cli(TRAIN + ["--epochs", "1", "--out", str(disk / "new" / "run")], capsys)
    assert code == 1
    one_line_disk_full(err, rf"{disk}/new/run/\.compress\.lock")
    assert sorted(p.name for p in disk.iterdir()) == ["ballast"]  # the folders it made are gone again


def test_export_on_a_full_disk_names_the_disk_not_the_exporter(small_disk: Callable[[int], Path], checkpoint: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """500 KB hold one export (a 310 KB model.onnx), not a second one staged beside it."""
    out = small_disk(500) / "export"
    code, _ = run_cli(["export", str(checkpoint), "--out", str(out)], capsys)
    assert code == 0
    before = snapshot(out)
    code, err = run_cli(["export", str(checkpoint), "--out", str(out)], capsys)
    assert code == 1
    one_line_disk_full(err, rf"{out}/\.export-[^/]+/model\.onnx")
    assert "--exporter" not in err
    assert snapshot(out) == before and [p.name for p in out.iterdir() if p.name.startswith(".")] == []
    read_sidecar(out / "model.onnx", verify=True)


def test_a_pipeline_that_fills_the_disk_stops_with_one_line(small_disk: Callable[[int], Path], tmp_path: Path,
                                                            fmnist_available: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump({
        "name": "tiny", "data": {"name": "fashion-mnist", "train_limit": 256, "val_limit": 128, "workers": 0},
        "teachers": [{"model": "resnet8", "train": {"epochs": 1, "batch_size": 64}}],
        "distill": {"student": "resnet8", "methods": ["none"], "train": {"epochs": 1}}}))
    run = small_disk(500) / "run"  # one 312 KB checkpoint fits, the second does not
    code, err = run_cli(["run", str(recipe), "--out", str(run), "--until", "teacher", "--no-progress"], capsys)
    assert code == 1
    one_line_disk_full(err, rf"{run}/teacher/1-resnet8/(best|model)\.safetensors")
    no_temporary_files(run)
    assert not (run / LOCK_FILE).exists()


def result(title_top1: float) -> ValidationResult:
    stats = [LatencyStats(1, 1, 20, 2.0, 2.0, 2.5, 2.7, 1.8, 3.0, 500.0)]
    stages = {"student": StageResult("student", "model.safetensors", "pytorch", latency=stats,
                                     accuracy=AccuracyResult(100, title_top1, 99.0, 100.0, 0.0))}
    return ValidationResult("student", stages, environment={"cpu": "test", "cpu_count": 2, "versions": {}},
                            data={"name": "fashion-mnist", "samples": 100})


def test_report_writer_on_a_full_disk_keeps_the_whole_previous_report(small_disk: Callable[[int], Path],
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    disk = small_disk(400)
    write_report(result(90.0), disk / "report")
    before = snapshot(disk / "report")
    fill(disk, 12)  # room for a new report.json and report.md, not for a new picture
    with pytest.raises(DiskFull, match=rf"^disk full: writing '{disk}/report/report\.png' needs more than"):
        write_report(result(80.0), disk / "report")
    assert snapshot(disk / "report") == before  # not a new json and md beside the old picture
    with pytest.raises(DiskFull):
        write_report(result(80.0), disk / "elsewhere")
    assert not (disk / "elsewhere").exists()


# ---------------------------------------------------------------- simulated ENOSPC (any machine)

def enospc_after(limit: int) -> Callable[..., Any]:
    """A ``Path.write_text`` that writes ``limit`` characters, then fails as a full disk does."""

    def write_text(self: Path, data: str, *args: Any, **kwargs: Any) -> int:
        with open(self, "w") as f:
            f.write(data[:limit])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    return write_text


def test_simulated_full_disk_keeps_the_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Simulated: ``Path.write_text`` writes 2,000 characters and raises ENOSPC."""
    target = tmp_path / "summary.json"
    write_json(target, {"epoch": 1})
    monkeypatch.setattr(Path, "write_text", enospc_after(2000))
    with pytest.raises(DiskFull, match=rf"^disk full: writing '{target}' needs more than the 2\.0 KB written "
                                       r"when the disk filled \(.+ free there\)"):
        write_json(target, {"epoch": 2, "history": ["x" * 10_000]})
    monkeypatch.undo()
    assert target.read_text() == '{\n  "epoch": 1\n}\n' and sorted(os.listdir(tmp_path)) == ["summary.json"]


def test_simulated_full_disk_in_a_sidecar_keeps_the_previous_checkpoint_pair(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Simulated: the tensors are written, then the sidecar's ``Path.write_text`` raises ENOSPC. The new
    tensors must not replace the old ones beside the old sidecar (a pair that no longer matches)."""
    path = tmp_path / "model.safetensors"
    save_tensors(path, {"w": torch.zeros(1000)}, "test", {"epoch": 1})
    before = snapshot(tmp_path)
    monkeypatch.setattr(Path, "write_text", enospc_after(100))
    with pytest.raises(DiskFull, match=rf"^disk full: writing '{path}\.json'"):
        save_tensors(path, {"w": torch.ones(1000)}, "test", {"epoch": 2})
    monkeypatch.undo()
    assert snapshot(tmp_path) == before
    assert read_sidecar(path, verify=True)["epoch"] == 1


def test_simulated_full_disk_in_safetensors_names_the_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Simulated: safetensors' writer (Rust) reports ENOSPC as text in its own exception type."""
    from safetensors import SafetensorError

    def save_file(tensors: Any, filename: str, metadata: Any = None) -> None:
        Path(filename).write_bytes(b"\0" * 4096)
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr("safetensors.torch.save_file", save_file)
    path = tmp_path / "model.safetensors"
    with pytest.raises(DiskFull, match=rf"^disk full: writing '{path}' needs about 39\.\d KB"):
        save_tensors(path, {"w": torch.zeros(10_000)}, "test")
    assert os.listdir(tmp_path) == []


def test_simulated_full_disk_in_the_onnx_exporter(tmp_path: Path, checkpoint: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Simulated: the exporter's own write raises ENOSPC; the exporter used to get the blame."""
    from compress.export.command import export_command

    def export_to(module: Any, example: Any, path: Path, exporter: str, opset: int) -> None:
        path.write_bytes(b"\0" * 1000)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    from compress.export import onnx  # compress.export is the API function; the package is imported

    monkeypatch.setattr(onnx, "_export_to", export_to)
    with pytest.raises(DiskFull, match=r"model\.onnx' needs more than the 1000 B written") as caught:
        export_command(checkpoint, tmp_path / "export", ["onnx"], progress=False)
    assert not isinstance(caught.value, ExportError) and "--exporter" not in str(caught.value)
    assert not (tmp_path / "export").exists()


# ---------------------------------------------------------------- OpenVINO IR (issue 23, item 4)

@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A resnet8 as ONNX: its IR weights take about 301 KB."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    torch.onnx.export(create_model("resnet8", 10, 1, 28).eval(), (torch.zeros(1, 1, 28, 28),), str(path),
                      input_names=["input"], dynamo=False)
    return path


def _openvino() -> Any:
    return pytest.importorskip("openvino", reason="writing OpenVINO IR needs openvino (pip install "
                                                  "'compress-edge[openvino]')")


def _identity_quantizer(model: Any, calibration: Any, options: Any) -> Any:
    return model  # the INT8 IR's writer is under test, not NNCF


def test_openvino_ir_on_a_full_disk_is_one_line(small_disk: Callable[[int], Path], onnx_model: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A real 200 KB filesystem: OpenVINO's writer fails with "basic_ios::clear", not with ENOSPC."""
    _openvino()
    from compress.export.openvino import OpenVinoOptions, build_int8_irs, convert_onnx, export_openvino

    disk = small_disk(200)
    with pytest.raises(DiskFull, match=rf"^disk full: writing '{disk}/ir/\.openvino-[^/]+/model\.xml' needs about "
                                       r"30\d\.\d KB \(.+ free there\); free up space"):
        export_openvino(onnx_model, disk / "ir")
    assert list((disk / "ir").iterdir()) == []  # nothing staged or half-written is left
    from compress.export import openvino

    monkeypatch.setattr(openvino, "quantize_nncf", _identity_quantizer)
    with pytest.raises(DiskFull, match=rf"^disk full: writing '{disk}/model\.int8-nncf\.xml' needs about 30\d\.\d KB"):
        build_int8_irs(convert_onnx(onnx_model), disk, OpenVinoOptions(int8=("nncf",)),
                       torch.zeros(1, 1, 28, 28).numpy(), None, "0" * 64)


def _failed_stream(model: Any, path: str, compress_to_fp16: bool = False) -> None:
    Path(path).with_suffix(".bin").write_bytes(b"\0" * 1000)
    raise RuntimeError("Exception from src/core/src/pass/serialize.cpp:1375:\nbasic_ios::clear: iostream error")


@pytest.mark.parametrize("route", ["fp32", "fp16", "nncf"])
def test_simulated_full_disk_in_the_openvino_writer(route: str, onnx_model: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Simulated: ``openvino.save_model`` fails as it does on a full disk, and 10 KB are free."""
    ov = _openvino()
    from compress.export.openvino import OpenVinoOptions, build_int8_irs, convert_onnx, export_openvino

    model = convert_onnx(onnx_model)
    monkeypatch.setattr(ov, "save_model", _failed_stream)
    monkeypatch.setattr("compress.artifacts.free_bytes", lambda path: 10_000)
    from compress.export import openvino

    monkeypatch.setattr(openvino, "quantize_nncf", _identity_quantizer)
    size = r"1[45]\d\.\d KB" if route == "fp16" else r"30\d\.\d KB"
    with pytest.raises(DiskFull, match=rf"^disk full: writing '.+/model(\.int8-nncf)?\.xml' needs about {size} "
                                       r"\(9\.8 KB free there\)") as caught:
        if route == "nncf":
            build_int8_irs(model, tmp_path, OpenVinoOptions(int8=("nncf",)), torch.zeros(1, 1, 28, 28).numpy(),
                           None, "0" * 64)
        else:
            export_openvino(onnx_model, tmp_path / "ir", OpenVinoOptions(weights=route))
    assert "\n" not in str(caught.value) and "basic_ios" not in str(caught.value)


def test_a_failed_openvino_stream_with_space_left_is_one_line_too(onnx_model: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    ov = _openvino()
    from compress.errors import ConfigError
    from compress.export.openvino import export_openvino

    monkeypatch.setattr(ov, "save_model", _failed_stream)
    with pytest.raises(ConfigError, match=r"^cannot write '.+/model\.xml' \(the writer's stream failed with .+ free\): "
                                          r"check that the folder is writable$"):
        export_openvino(onnx_model, tmp_path / "ir")
