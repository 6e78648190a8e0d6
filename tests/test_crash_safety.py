"""kill -9 during training or export, then resume: nothing corrupt is left, and the result is exact."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from compress.artifacts import LOCK_FILE, read_sidecar
from compress.checkpoint import load_tensors
from compress.record import CheckpointRecord

TRAIN = [sys.executable, "-m", "compress", "train-teacher", "--model", "resnet8", "--epochs", "3", "--train-limit",
         "3072", "--val-limit", "512", "--batch-size", "64", "--deterministic", "--seed", "5", "--no-progress"]


def start(args: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def kill_after(process: subprocess.Popen[bytes], ready: Path, lines: int, extra_s: float, timeout_s: float = 300) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if ready.exists() and len(ready.read_text().splitlines()) >= lines:
            time.sleep(extra_s)
            break
        if process.poll() is not None:
            pytest.fail(f"process ended before it could be killed: {process.stderr.read().decode()[-500:]}")  # type: ignore[union-attr]
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()


def no_visible_partial_files(folder: Path) -> None:
    """Temporary files have hidden names; every visible checkpoint is complete and readable."""
    from safetensors.torch import load_file

    for path in folder.iterdir():
        if path.name.endswith(".safetensors"):
            assert load_file(str(path)), path  # a truncated file would not load


def test_killed_training_resumes_to_the_same_weights(tmp_path: Path, fmnist_available: Path) -> None:
    straight = tmp_path / "straight"
    subprocess.run(TRAIN + ["--out", str(straight)], check=True, capture_output=True)

    killed = tmp_path / "killed"
    process = start(TRAIN + ["--out", str(killed)])
    kill_after(process, killed / "metrics.jsonl", lines=1, extra_s=0.3)  # somewhere in epoch 2
    assert process.returncode == -signal.SIGKILL
    epochs_done = len((killed / "metrics.jsonl").read_text().splitlines())
    assert 1 <= epochs_done < 3, "the kill must land before training finished"
    no_visible_partial_files(killed)
    assert (killed / LOCK_FILE).exists()  # the killed run's lock is left behind ...
    resumed = subprocess.run(TRAIN + ["--out", str(killed), "--resume"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr  # ... and taken over, since its process is gone
    assert not (killed / LOCK_FILE).exists()
    assert f"resuming from epoch {epochs_done}" in resumed.stderr

    a, _ = load_tensors(straight / "model.safetensors")
    b, _ = load_tensors(killed / "model.safetensors")
    assert CheckpointRecord.read(killed).epoch == 3
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_killed_export_leaves_no_model_where_a_good_one_is_expected(tmp_path: Path, fmnist_available: Path) -> None:
    run = tmp_path / "run"
    subprocess.run(TRAIN[:7] + ["1"] + TRAIN[8:] + ["--out", str(run)], check=True, capture_output=True)
    out = tmp_path / "export"
    process = subprocess.Popen([sys.executable, "-m", "compress", "export", str(run), "--int8", "--out", str(out)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and not any(out.glob(".export-*/model.onnx")) and process.poll() is None:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    visible = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert "model.onnx" not in visible and "model.int8.onnx" not in visible, visible
    # a second attempt succeeds and produces verified files
    done = subprocess.run([sys.executable, "-m", "compress", "export", str(run), "--int8", "--calibration", "64",
                           "--out", str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    for name in ("model.onnx", "model.int8.onnx"):
        assert read_sidecar(out / name, verify=True)["kind"].startswith("onnx")
    os.sync()


def test_a_second_run_into_a_busy_folder_fails_at_once(tmp_path: Path, fmnist_available: Path) -> None:
    out = tmp_path / "run"
    first = start(TRAIN + ["--out", str(out)])
    try:
        kill_after_lock = time.time() + 300
        while not (out / LOCK_FILE).exists() and time.time() < kill_after_lock and first.poll() is None:
            time.sleep(0.05)
        assert first.poll() is None, "the first run ended before the second could start"
        second = subprocess.run(TRAIN + ["--out", str(out), "--resume"], capture_output=True, text=True, timeout=120)
        assert second.returncode == 1
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and f"is in use by process {first.pid}" in lines[0], second.stderr
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
