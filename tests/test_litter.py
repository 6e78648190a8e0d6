"""Litter and promises (issue 17, item 12): what killed processes leave behind is swept by the next run
into the same folder (a live process's is kept), a failed command leaves no folder it created, and a
crafted resume state cannot start training anywhere but after its last completed epoch."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import pytest
import torch

import compress
from compress.artifacts import folder_lock, sweep_litter
from compress.data import DataConfig, load_data
from compress.deployable import save_deployable
from compress.distill.base import Supervised
from compress.errors import CheckpointError, ExportError, TrainingDiverged
from compress.export.backends import BACKENDS
from compress.models import create_model
from compress.train import TrainConfig, fit
from cli_helpers import run_cli  # tests/ is on sys.path, as for the other helpers


def python(script: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(compress.__file__).parents[1])}
    return subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, env=env,
                          timeout=timeout)



def hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.fixture(scope="module")
def data(fmnist_available: Path) -> Any:
    return load_data(DataConfig(batch_size=64, train_limit=256, val_limit=128))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory, data: Any) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "model.safetensors"
    save_deployable(path, create_model("resnet8", 10, 1, 28), data.preprocessing)
    return path


# ---------------------------------------------------------------- what killed processes leave

KILLED_EXPORT = r"""
import dataclasses, os, signal, sys
from pathlib import Path
from compress.export.backends import BACKENDS
from compress.export.command import export_command

onnx = BACKENDS["onnx"]

def step_then_die(source, options, staging):
    onnx.step(source, options, staging)  # model.onnx complete and parity-checked in the staging folder
    os.kill(os.getpid(), signal.SIGKILL)  # killed before it is shipped

BACKENDS["onnx"] = dataclasses.replace(onnx, step=step_then_die)
export_command(Path(sys.argv[1]), Path(sys.argv[2]), ["onnx"], progress=False)
"""


def test_a_killed_export_s_staging_folder_is_swept_by_the_next_export(checkpoint: Path, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "export"
    killed = python(KILLED_EXPORT, str(checkpoint), str(out))
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-1000:]
    [staging] = hidden(out)
    assert staging.startswith(".export-") and (out / staging / "model.onnx").stat().st_size > 100_000
    assert not (out / "model.onnx").exists()
    code, err = run_cli(["export", str(checkpoint), "--out", str(out)], capsys)
    assert code == 0, err
    assert hidden(out) == [] and sorted(p.name for p in out.iterdir()) == ["model.onnx", "model.onnx.json"]


KILLED_WRITE = r"""
import os, signal, sys
from safetensors.torch import save_file as real_save_file
import safetensors.torch
from compress.cli import main

def save_then_die(tensors, filename, metadata=None):  # killed in the middle of its first checkpoint
    real_save_file(tensors, filename, metadata=metadata)
    os.kill(os.getpid(), signal.SIGKILL)

safetensors.torch.save_file = save_then_die
main(sys.argv[1:])
"""

TRAIN = ["train-teacher", "--model", "resnet8", "--epochs", "1", "--train-limit", "256", "--val-limit", "128",
         "--batch-size", "64", "--no-progress"]


def test_a_killed_run_s_temporary_file_is_swept_by_the_next_run(tmp_path: Path, fmnist_available: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    killed = python(KILLED_WRITE, *TRAIN, "--out", str(run))
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-1000:]
    orphans = [name for name in hidden(run) if name.endswith(".tmp")]
    assert len(orphans) == 1 and orphans[0].startswith(".best.safetensors.")
    code, err = run_cli(TRAIN + ["--out", str(run)], capsys)  # nothing to resume: a new run in that folder
    assert code == 0, err
    assert hidden(run) == []


LIVE_WRITER = r"""
import sys, time
from compress.artifacts import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    tmp.write_text("half of it")
    print(tmp.name, flush=True)
    time.sleep(120)
"""


def test_a_live_writer_s_files_are_kept_and_swept_once_it_is_gone(tmp_path: Path) -> None:
    stage = tmp_path / "export"  # a pipeline's stage folder: swept by the run folder's lock
    stage.mkdir()
    writer = subprocess.Popen([sys.executable, "-c", LIVE_WRITER, str(stage / "model.onnx")], stdout=subprocess.PIPE,
                              text=True, env={"PATH": "/usr/bin:/bin",
                                              "PYTHONPATH": str(Path(compress.__file__).parents[1])})
    try:
        name = writer.stdout.readline().strip()  # type: ignore[union-attr]
        assert name.startswith(".model.onnx.") and name.endswith(".tmp")
        foreign = tmp_path / ".model.safetensors.00000000-1.abcdefgh.tmp"  # another host's: never ours to judge
        foreign.write_text("x")
        assert sweep_litter(tmp_path, levels=1) == [] and (stage / name).exists()
    finally:
        writer.kill()
        writer.wait()
    with folder_lock(tmp_path):
        pass
    assert hidden(stage) == [] and hidden(tmp_path) == [foreign.name]


# ---------------------------------------------------------------- a failed command leaves no folder it made

def failing_onnx_step(*args: Any) -> Any:
    raise ExportError("parity failed: max |Δlogit| 3.2 (made up for this test)")


def test_a_failed_export_leaves_no_folder_it_created(checkpoint: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(BACKENDS, "onnx", replace(BACKENDS["onnx"], step=failing_onnx_step))
    code, err = run_cli(["export", str(checkpoint), "--out", str(tmp_path / "new" / "export")], capsys)
    assert code == 1 and "parity failed" in err
    assert list(tmp_path.iterdir()) == []
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    code, _ = run_cli(["export", str(checkpoint), "--out", str(kept)], capsys)
    assert code == 1 and [p.name for p in kept.iterdir()] == ["notes.txt"]


def test_a_failed_training_leaves_no_folder_it_created(data: Any, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    def diverge(*args: Any, **kwargs: Any) -> Any:
        raise TrainingDiverged("loss became nan at epoch 1 step 1 (made up for this test)")

    monkeypatch.setattr("compress.train.train_one_epoch", diverge)
    with pytest.raises(TrainingDiverged):
        fit(Supervised(create_model("resnet8", 10, 1)), data, TrainConfig(epochs=1), tmp_path / "a" / "b",
            log=lambda m: None, progress=False)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- crafted resume states

@pytest.fixture(scope="module")
def one_epoch(tmp_path_factory: pytest.TempPathFactory, data: Any) -> Path:
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("resume") / "run"
    fit(Supervised(create_model("resnet8", 10, 1)), data, TrainConfig(epochs=1), out, log=lambda m: None,
        progress=False)
    return out


def craft_state(folder: Path, record_change: Callable[[dict[str, Any]], None] | None = None,
                tensor_change: Callable[[dict[str, torch.Tensor]], None] | None = None) -> None:
    """Rewrite ``folder``'s resume state with its record and/or tensors changed (what anyone can do)."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    path = folder / "state.safetensors"
    with safe_open(str(path), framework="pt") as f:
        header = f.metadata()
    tensors, record = load_file(str(path)), json.loads(header["record"])
    if record_change:
        record_change(record)
    if tensor_change:
        tensor_change(tensors)
    save_file(tensors, str(path), metadata={**header, "record": json.dumps(record)})


def first_key(prefix: str) -> Callable[[dict[str, torch.Tensor]], str]:
    return lambda tensors: next(k for k in sorted(tensors) if k.startswith(prefix))


def replaced(prefix: str, value: torch.Tensor) -> Callable[[dict[str, torch.Tensor]], None]:
    return lambda tensors: tensors.__setitem__(first_key(prefix)(tensors), value)


CRAFTED: dict[str, tuple[Any, Any, str]] = {
    "epoch -5": (lambda r: r.update(epoch=-5, history=[]), None, r"epoch -5 is not a number of completed epochs"),
    "epoch as text": (lambda r: r.update(epoch="1"), None, r"epoch '1' is not a number"),
    "epoch without history": (lambda r: r.update(epoch=3), None, r"history does not hold one metrics row for each "
                                                                 r"of the 3 completed epochs"),
    "best from the future": (lambda r: r.update(best=[50.0, 7]), None, r"best \[50\.0, 7\] is not a top-1"),
    "best NaN": (lambda r: r.update(best=[float("nan"), 1]), None, r"record at best\[0\]: NaN is not a finite number"),
    "no skeleton": (lambda r: r.pop("skeleton"), None, r"cannot resume .+ \(KeyError: 'skeleton'\)"),
    "momentum of another shape": (None, replaced("optim.", torch.zeros(3)),
                                  r"optimizer 'momentum_buffer' is \[3\] for a parameter of \[16, 1, 3, 3\]"),
    "random state of another size": (None, replaced("rng.", torch.zeros(7, dtype=torch.uint8)),
                                     r"cannot resume .+ \(RuntimeError"),
}


@pytest.mark.parametrize("case", list(CRAFTED))
def test_a_crafted_resume_state_is_refused_before_training(case: str, one_epoch: Path, data: Any,
                                                           tmp_path: Path) -> None:
    record_change, tensor_change, pattern = CRAFTED[case]
    run = tmp_path / "run"
    shutil.copytree(one_epoch, run)
    craft_state(run, record_change, tensor_change)
    metrics = (run / "metrics.jsonl").read_text()
    with pytest.raises(CheckpointError, match=pattern) as caught:
        fit(Supervised(create_model("resnet8", 10, 1)), data, TrainConfig(epochs=2), run, resume=True,
            log=lambda m: None, progress=False)
    assert "\n" not in str(caught.value)
    assert (run / "metrics.jsonl").read_text() == metrics  # not one step was trained
