"""Running ``compress`` in the test process, as a user's shell would see it."""

from __future__ import annotations

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
