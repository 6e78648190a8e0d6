"""One reader for every structured file (issue 23, items 2 and 3): a FIFO, a 200,000-deep array, a 69 MB
file, a 5,001-digit number, NaN and duplicate keys each give one line naming the file and the key path,
without blocking, recursing or reading the file whole."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
from pathlib import Path
from typing import Iterator

import pytest

from compress.artifacts import read_sidecar, write_sidecar
from compress.errors import CheckpointError, ConfigError, StructuredFileError
from compress.structured import MAX_DEPTH, depth_of, parse_json, read_json
from compress.validate.results import read_result
from cli_helpers import run_cli

WHAT = "baseline 'r.json'"


@contextlib.contextmanager
def deadline(seconds: int) -> Iterator[None]:
    """Fail instead of hanging: SIGALRM interrupts a blocked open() or read()."""

    def expired(signum: int, frame: object) -> None:
        raise TimeoutError(f"still blocked after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("text, message", [
    ('{"stages": {"int8": {"top1": NaN}}}', r"^baseline 'r\.json' at stages\.int8\.top1: NaN is not a finite number$"),
    ('{"a": [1, {"b": -Infinity}]}', r"^baseline 'r\.json' at a\[1\]\.b: -Infinity is not a finite number$"),
    ('{"a": 1e999}', r"^baseline 'r\.json' at a: 1e999 overflows to infinity: numbers must be finite$"),
    ('{"a": ' + "9" * 5001 + "}", r"^baseline 'r\.json' at a: a whole number of 5,001 digits \(no value of ours has "
                                  r"more than 30\)$"),
    ('{"gates": [], "gates": [{"x": 1}]}', r"^baseline 'r\.json' at gates: the key appears twice in one object"),
    ('{"a": {"b": 1, "b": 1}}', r"^baseline 'r\.json' at a\.b: the key appears twice"),
    ("[" * 200_000 + "]" * 200_000, r"^baseline 'r\.json' nests 200,000 levels deep, more than the 64 any file of ours"),
    ('{"a": ', r"^baseline 'r\.json' is not valid JSON \(Expecting value: line 1 column 7\)$"),
], ids=["nan", "-infinity in a list", "overflow", "5001 digits", "duplicate", "nested duplicate", "200000 deep",
        "cut short"])
def test_hostile_json_is_one_line_naming_the_key(text: str, message: str) -> None:
    with pytest.raises(StructuredFileError, match=message):
        parse_json(text, WHAT)


def test_ordinary_json_reads_as_json_does() -> None:
    text = json.dumps({"a": [1, 2.5, -3, "x", None, True, {"b": "[{"}], "c": 10**29, "d": 1e308})
    assert parse_json(text, WHAT) == json.loads(text)


def test_depth_is_counted_outside_strings_and_without_recursion() -> None:
    assert depth_of('{"a": "[[[[[[", "b": [[1]], "c": "\\"["}') == 3
    assert depth_of("[" * 1_000_000) == 1_000_000  # a million levels: no RecursionError
    assert parse_json("[" * MAX_DEPTH + "]" * MAX_DEPTH, WHAT) is not None


def test_the_error_is_both_a_file_error_and_a_config_error() -> None:
    """Handlers written for either (a stage re-run on a bad record, a bad option) still catch it."""
    assert issubclass(StructuredFileError, CheckpointError) and issubclass(StructuredFileError, ConfigError)


# ---------------------------------------------------------------- files

def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "report.json"
    os.mkfifo(fifo)
    with deadline(20), pytest.raises(StructuredFileError, match=r"report\.json' is not a regular file \(a pipe"):
        read_json(fifo, f"baseline '{fifo}'")


def test_a_huge_file_is_refused_unread(tmp_path: Path) -> None:
    huge = tmp_path / "report.json"
    with open(huge, "wb") as f:
        f.truncate(69 << 20)  # sparse: 69 MiB that take no disk
    with pytest.raises(StructuredFileError, match=r"is 69\.0 MiB, more than the 16\.0 MiB such a file holds"):
        read_json(huge, f"baseline '{huge}'")


def test_a_folder_or_a_device_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StructuredFileError, match=r"is a folder, not a file"):
        read_json(tmp_path, f"baseline '{tmp_path}'")
    with deadline(20), pytest.raises(StructuredFileError, match=r"'/dev/zero' is not a regular file"):
        read_json("/dev/zero", "baseline '/dev/zero'")


def test_a_sidecar_with_nan_or_a_duplicate_hash_is_refused(tmp_path: Path) -> None:
    artifact = tmp_path / "model.onnx"
    artifact.write_bytes(b"model")
    record = write_sidecar(artifact, "onnx")
    side = tmp_path / "model.onnx.json"
    text = side.read_text()
    side.write_text(text.replace('"kind"', f'"sha256": "{"0" * 64}",\n  "kind"'))  # a second hash, a forged one first
    with pytest.raises(StructuredFileError, match=r"model\.onnx\.json' at sha256: the key appears twice"):
        read_sidecar(artifact)
    side.write_text(json.dumps({**record, "parameters": float("nan")}))
    with pytest.raises(StructuredFileError, match=r"model\.onnx\.json' at parameters: NaN is not a finite number"):
        read_sidecar(artifact)


# ---------------------------------------------------------------- --baseline on the command line

def baseline_cases(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 200_000 + "]" * 200_000)
    huge = tmp_path / "huge.json"
    with open(huge, "wb") as f:
        f.truncate(69 << 20)
    digits = tmp_path / "digits.json"
    digits.write_text('{"reference": ' + "7" * 5001 + "}")
    return {"fifo": (fifo, r"is not a regular file"), "deep": (deep, r"nests 200,000 levels deep"),
            "huge": (huge, r"is 69\.0 MiB, more than the 16\.0 MiB"),
            "digits": (digits, r"at reference: a whole number of 5,001 digits")}


@pytest.mark.parametrize("case", ["fifo", "deep", "huge", "digits"])
def test_a_hostile_baseline_is_one_line_before_any_work(case: str, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    path, pattern = baseline_cases(tmp_path)[case]
    with deadline(60):
        code, err = run_cli(["validate", str(tmp_path / "never-opened.onnx"), "--baseline", str(path)], capsys)
    assert code == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"error: --baseline '{path}'") and re.search(pattern, lines[0]), lines[0]
    assert len(lines[0]) < 300


def test_read_result_names_the_key_of_a_bad_number(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    path.write_text('{"reference": "student", "stages": {"student": {"accuracy": {"top1": Infinity}}}}')
    with pytest.raises(ConfigError, match=r"^baseline '.*report\.json' at stages\.student\.accuracy\.top1: Infinity "
                                          r"is not a finite number; pass the report\.json"):
        read_result(path)

