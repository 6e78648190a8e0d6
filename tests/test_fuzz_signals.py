"""Ctrl-C (SIGINT) at several moments of start-up and work (issue 23, item 6): ``python -m deploy bench``
and ``compress`` end with one ``error:`` line and exit status 130, never a traceback.

A signal that arrives before Python has installed its handler ends the process the default way (killed
by SIGINT, no output at all); that is accepted too: nothing of ours ran yet, so nothing was printed.
The ``compress`` cases wait for the command to start (the ``-v`` start line) and then interrupt it
after a few delays; a Ctrl-C while the CLI itself is still importing is checked by tests/test_interrupts.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cli_helpers import xfail_if_native_abort

ROOT = Path(__file__).resolve().parents[1]
TEACHER = ROOT / "compress" / "weights" / "fashion-mnist-resnet20.safetensors"  # the shipped teacher
DEPLOY_DELAYS = (0.0, 0.05, 0.3, 1.0, 2.5)  # seconds after the start: Python's start, imports, loading, timing
COMPRESS_DELAYS = (0.0, 0.5, 2.0)  # seconds after the command started: loading data, the model, evaluating


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")


def assert_interrupted_in_one_line(process: subprocess.Popen[bytes], what: str) -> None:
    try:
        out, err = process.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail(f"{what}: still running 120 s after SIGINT")
    text = err.decode(errors="replace")
    xfail_if_native_abort(process.returncode, text, what)
    if process.returncode == -signal.SIGINT and text == "":  # before Python's handler existed: killed, silently
        return
    if process.returncode == -signal.SIGINT:  # the one line, then the process ends by SIGINT: a shell sees 130 too
        assert "Traceback" not in text, f"{what}:\n{text}"
        errors = [line for line in text.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "interrupted" in errors[0] and text.rstrip().endswith(errors[0]), f"{what}:\n{text}"
        return
    assert "Traceback" not in text, f"{what}:\n{text}"
    assert process.returncode == 130, f"{what}: exit {process.returncode}\n{text}"
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "interrupted" in errors[0], f"{what}:\n{text}"
    assert text.rstrip().endswith(errors[0]), f"{what}: the error line is not the last:\n{text}"


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    sys.path.insert(0, str(ROOT / "tests" / "deploy"))
    from hostile import FASHION, pooled_onnx

    return pooled_onnx(tmp_path_factory.mktemp("sig") / "model.onnx", preprocessing=FASHION)


@pytest.mark.parametrize("delay", DEPLOY_DELAYS)
def test_ctrl_c_in_deploy_bench(onnx_model: Path, delay: float) -> None:
    process = subprocess.Popen([sys.executable, "-m", "deploy", "bench", str(onnx_model), "--seconds", "60",
                                "--batch", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env=_env())
    time.sleep(delay)
    process.send_signal(signal.SIGINT)
    assert_interrupted_in_one_line(process, f"deploy bench, SIGINT after {delay} s")


@pytest.mark.parametrize("delay", COMPRESS_DELAYS)
def test_ctrl_c_in_compress_validate(onnx_model: Path, delay: float, fmnist_available: Path) -> None:
    process = subprocess.Popen([sys.executable, "-m", "compress", "-v", "validate", str(TEACHER), str(onnx_model),
                                "--val-limit", "2000", "--duration", "60"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env=_env())
    assert process.stderr is not None
    first = process.stderr.readline()  # the -v start line: the command has begun
    assert b"compress " in first and b"command validate" in first, first
    time.sleep(delay)
    process.send_signal(signal.SIGINT)
    assert_interrupted_in_one_line(process, f"compress validate, SIGINT {delay} s after it started")
