"""One process per output folder: ``folder_lock`` refuses a live holder and takes over a dead one's lock."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from compress.artifacts import LOCK_FILE, folder_lock
from compress.errors import ConfigError


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def write_holder(folder: Path, pid: int, host: str | None = None) -> Path:
    lock = folder / LOCK_FILE
    lock.write_text(json.dumps({"pid": pid, "host": host or platform.node(), "since": "2026-11-27 03:00:00"}))
    return lock


def test_the_lock_is_held_inside_the_block_and_released_after_it(tmp_path: Path) -> None:
    with folder_lock(tmp_path):
        holder = json.loads((tmp_path / LOCK_FILE).read_text())
        assert holder["pid"] == os.getpid() and holder["host"] == platform.node()
    assert not (tmp_path / LOCK_FILE).exists()
    with pytest.raises(RuntimeError, match="boom"), folder_lock(tmp_path):
        raise RuntimeError("boom")
    assert not (tmp_path / LOCK_FILE).exists()  # released on errors too


def test_a_live_holder_is_refused_with_one_line_naming_it(tmp_path: Path) -> None:
    with folder_lock(tmp_path), pytest.raises(ConfigError) as info, folder_lock(tmp_path):
        pass
    message = str(info.value)
    assert f"is in use by process {os.getpid()} on {platform.node()}" in message
    assert "choose another output folder" in message and "\n" not in message


def test_a_killed_holder_on_this_machine_is_taken_over(tmp_path: Path) -> None:
    write_holder(tmp_path, dead_pid())
    with folder_lock(tmp_path):
        assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()


def test_a_holder_on_another_host_is_not_guessed_about(tmp_path: Path) -> None:
    lock = write_holder(tmp_path, dead_pid(), host="node-7")
    with pytest.raises(ConfigError, match=r"in use by process \d+ on node-7 .* delete '.*\.compress\.lock'"):
        with folder_lock(tmp_path):
            pass
    assert lock.exists()  # not ours to remove


def test_an_empty_lock_is_stale_only_once_it_is_old(tmp_path: Path) -> None:
    lock = tmp_path / LOCK_FILE
    lock.write_text("")
    with pytest.raises(ConfigError, match="in use by another process"), folder_lock(tmp_path):
        pass
    os.utime(lock, (1, 1))  # a crash between creating and writing it, long ago
    with folder_lock(tmp_path):
        pass
    assert not lock.exists()
