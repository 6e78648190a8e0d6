"""Ctrl-C: a real SIGINT during `train-teacher`, `run` and `export` exits 130 with one line saying what was
stopped and how to go on, leaves no lock, and the last completed epoch resumes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from cli_helpers import xfail_if_native_abort
from compress.artifacts import LOCK_FILE
from compress.interrupts import deferred_interrupt

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "COMPRESS_TEST_THREADS": "1"}
COMPRESS = [sys.executable, "-m", "compress"]
# ~1 s per epoch here: long enough that SIGINT lands within the epoch after the one awaited
TRAIN = [*COMPRESS, "train-teacher", "--model", "resnet8", "--epochs", "3", "--train-limit", "1024", "--val-limit",
         "128", "--batch-size", "64", "--seed", "5", "--no-progress"]


def interrupt_when(process: subprocess.Popen[str], ready: Path, lines: int = 1,
                   timeout_s: float = 300) -> tuple[str, str]:
    """Send SIGINT once ``ready`` exists (with ``lines`` lines: epochs saved); return its stdout and stderr."""
    deadline = time.monotonic() + timeout_s
    while not (ready.exists() and (ready.is_dir() or len(ready.read_text().splitlines()) >= lines)):
        assert process.poll() is None, f"ended before it could be interrupted: {process.communicate()[1][-2000:]}"
        assert time.monotonic() < deadline, f"{ready} never appeared"
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    return process.communicate(timeout=120)


def saved_epochs(folder: Path) -> list[dict[str, float]]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def kept(saved: int) -> str:
    """What the interrupt line says was saved, and where --resume goes on (epochs too short for a mid-epoch save)."""
    done = "epoch 1 is saved" if saved == 1 else f"epochs 1-{saved} are saved"
    return f"{done}; --resume goes on from epoch {saved + 1}"


def test_deferred_interrupt_finishes_the_block_then_raises() -> None:
    done = []
    with pytest.raises(KeyboardInterrupt):
        with deferred_interrupt():
            os.kill(os.getpid(), signal.SIGINT)  # delivered at once, to this (the main) thread
            time.sleep(0.05)
            done.append("saved")
    assert done == ["saved"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the usual handler is back
    with deferred_interrupt():  # no signal: nothing happens
        done.append("again")
    assert done == ["saved", "again"]


def test_ctrl_c_during_train_teacher_exits_130_and_resume_continues(fmnist_available: Path, tmp_path: Path) -> None:
    out = tmp_path / "teacher"
    process = subprocess.Popen([*TRAIN, "--out", str(out)], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    stdout, err = interrupt_when(process, out / "metrics.jsonl")
    assert process.returncode == 130, err
    before = saved_epochs(out)
    saved = len(before)
    assert 1 <= saved < 3, "the interrupt must land before training finished"
    assert err.strip().splitlines()[-1] == (
        f"error: interrupted: training in '{out}' stopped in epoch {saved + 1} of 3; {kept(saved)}; "
        "continue from the last saved epoch with the same command and --resume")
    assert "Traceback" not in err and stdout == ""  # stdout is for results: training has none
    assert not (out / LOCK_FILE).exists()

    resumed = subprocess.run([*TRAIN, "--out", str(out), "--resume"], env=ENV, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming from epoch {saved}" in resumed.stderr
    after = saved_epochs(out)
    assert [row["epoch"] for row in after] == [1, 2, 3]
    assert after[:saved] == before  # the saved epochs are kept as they were, the rest trained once


def test_ctrl_c_during_compress_run_exits_130_and_rerunning_continues(fmnist_available: Path, tmp_path: Path) -> None:
    recipe = {"name": "interrupted", "data": {"name": "fashion-mnist", "train_limit": 1024, "val_limit": 128,
                                              "workers": 0},
              "teachers": [{"model": "resnet8", "train": {"epochs": 4, "batch_size": 64, "lr": 0.1}}],
              "distill": {"student": "resnet8", "methods": ["kd"], "train": {"epochs": 1}},
              "export": {"onnx": {}}}
    path, out = tmp_path / "interrupted.yaml", tmp_path / "run"
    path.write_text(yaml.safe_dump(recipe))
    unit = out / "teacher" / "1-resnet8"
    command = [*COMPRESS, "run", str(path), "--out", str(out), "--until", "teacher", "--no-progress"]
    process = subprocess.Popen(command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, err = interrupt_when(process, unit / "metrics.jsonl")
    assert process.returncode == 130, err
    saved = len(saved_epochs(unit))
    assert 1 <= saved < 4
    assert err.strip().splitlines()[-1] == (
        f"error: interrupted: stage teacher of '{out}' was interrupted: training in '{unit}' stopped in epoch "
        f"{saved + 1} of 4; {kept(saved)}; run the same command again: finished stages are kept and training "
        "continues from its last saved epoch")
    assert not (out / LOCK_FILE).exists() and not (unit / LOCK_FILE).exists()
    assert not (out / "teacher" / "stage.json").exists()  # an interrupted stage is never taken for done

    again = subprocess.run(command, env=ENV, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert re.search(rf"resuming from epoch {saved}\b", again.stderr), again.stderr
    assert [row["epoch"] for row in saved_epochs(unit)] == [1, 2, 3, 4]


def test_ctrl_c_during_export_exits_130_and_leaves_no_model(fmnist_available: Path, tmp_path: Path) -> None:
    run = tmp_path / "model"
    subprocess.run([*TRAIN[:6], "--epochs", "1", *TRAIN[8:], "--out", str(run)], env=ENV, check=True,
                   capture_output=True)
    out = tmp_path / "export"
    process = subprocess.Popen([*COMPRESS, "export", str(run), "--int8", "--out", str(out)], env=ENV,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not any(out.glob(".export-*")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    _, err = interrupt_when(process, next(out.glob(".export-*")))
    xfail_if_native_abort(process.returncode, err, "Ctrl-C during the ONNX export")
    if process.returncode == 0 and "int8:" in err:
        pytest.xfail("a Ctrl-C during the dynamo exporter's run was lost and the export finished (known gap, "
                     "README Safety)")
    # 130, or ended by SIGINT itself after the line below (a shell reports both as 130)
    assert process.returncode in (130, -signal.SIGINT), err
    assert err.strip().splitlines()[-1] == "error: interrupted: compress export stopped; run the same command again"
    # nothing half-built in sight: the folder the export created is removed, or holds no artifact
    assert not out.exists() or not [p.name for p in out.iterdir() if not p.name.startswith(".")]


def test_ctrl_c_anywhere_in_a_command_is_130_and_one_line(monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    from compress.cli import listing, main

    def interrupted(what: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(listing, "_listing", interrupted)
    with pytest.raises(SystemExit) as exit_info:
        main(["-q", "list", "models"])
    assert exit_info.value.code == 130
    assert capsys.readouterr().err == "error: interrupted: compress list stopped; run the same command again\n"
