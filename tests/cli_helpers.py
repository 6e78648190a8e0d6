"""Running ``compress`` in the test process, as a user's shell would see it."""

from __future__ import annotations

import signal

import pytest

from compress.cli import main


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """(exit status, stderr) of ``compress ARGV`` run in this process."""
    try:
        main(argv)
        code = 0
    except SystemExit as stopped:
        code = int(stopped.code or 0)
    return code, capsys.readouterr().err


def xfail_if_native_abort(returncode: int | None, stderr: str, what: str) -> None:
    """The documented gap (README, Safety): a Ctrl-C that lands while PyTorch's, ONNX Runtime's or numpy's native
    code is initialising or calling back into Python aborts the process (SIGABRT, "terminate called ...") or
    turns into the library's own ImportError, instead of unwinding. Reported as an expected failure, so the run
    shows it; any other outcome is judged by the test."""
    aborted = returncode == -signal.SIGABRT and "terminate called" in stderr
    import_broken = "ImportError" in stderr and ("C-extensions failed" in stderr or "PyCapsule_Import" in stderr)
    if aborted or import_broken:
        pytest.xfail(f"{what}: Ctrl-C inside a native library's start-up or callback (known gap, README Safety)")
