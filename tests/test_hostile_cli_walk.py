"""Every option of every command, walked with hostile values (issue 23): the CLI's invariants hold for
inputs nobody wrote a check for yet.

The command tree is read from the CLI itself (``typer.main.get_command``), so a new command or option
is walked without editing this file. Each option (and each positional argument) gets values of the
kinds that broke earlier checks: empty, huge, negative, NaN/inf, non-UTF-8 bytes, and paths to a FIFO,
a folder and a missing file. The invariants, for every case (``test_fuzz_cli.problem``): exit 0 (the
command got as far as its real work, where a sentinel stops it), or 1, 2 or 3 with exactly one
``error:`` line, printed last; no traceback; a refused command leaves no output folder; nothing hangs
(a case has ``CASE_SECONDS``); memory stays bounded (the walk's peak RSS grows by less than ``MAX_GROWTH``).
Every option gets at least one value; the rest of the budget is a
seeded sample, so a failure reproduces from its printed seed and arguments.

COMPRESS_WALK_CASES sets the number of cases (default 320: under a minute on a 2-core CI machine).
"""

from __future__ import annotations

import importlib.util
import os
import random
import resource
import signal
from pathlib import Path
from typing import Any, Iterator

import pytest
import typer
from test_fuzz_cli import TEACHER, invoke, keep_random_state, problem, sentinels  # noqa: F401 (fixtures)

from compress.cli import app

CASES = int(os.environ.get("COMPRESS_WALK_CASES", "320"))
CASE_SECONDS = 30  # a case still running after this hangs (a FIFO read, an unbounded loop)
MAX_GROWTH = 2 * 2**30  # bytes of peak RSS the whole walk may add: a value that sizes an allocation would show
SEED = 23

# The smallest command line that gets each command to its real work, as (positional, options); the walked
# option is added to it, or the walked value replaces the positional.
BASE: dict[str, tuple[list[str], list[str]]] = {
    "export": ([TEACHER], ["--onnx"]),
    "validate": ([TEACHER], ["--no-latency"]),
    "schema": ([], []),
    "list": (["models"], []),
    "run": (["pipelines/fashion_mnist_ci.yaml"], ["--no-progress"]),
    "train-teacher": ([], ["--model", "resnet8", "--no-progress"]),
    "distill": ([], ["--student", "resnet8", "--teacher", TEACHER, "--no-progress"]),
}
HAS_OUT = {"export", "run", "train-teacher", "distill"}
NUMBER_TYPES = ("int", "float")


# Files read before the one structured-file reader (compress.structured, issue 23 item 3) refuses a FIFO:
# until that reader is in, a FIFO there blocks the read, so those two cases wait for it.
FIFO_READ_BY_THE_READER = {("validate", "--baseline"), ("run", "recipe")}
READER_PRESENT = importlib.util.find_spec("compress.structured") is not None


class Hung(BaseException):
    """Raised by the alarm: a case ran past CASE_SECONDS."""


def hostile_values(kind: str, folder: Path) -> list[str]:
    """The values to try for an option of ``kind`` (its bare type), as they would arrive from a shell."""
    fifo = folder / "fifo"
    if not fifo.exists():
        os.mkfifo(fifo)
    common = ["", "-1", "nan", "9" * 5000, "\udcff\udcfe", str(fifo), str(folder), str(folder / "missing" / "x")]
    return common + (["inf", "-0", "1e400"] if kind in NUMBER_TYPES else ["x" * 20_000, "../../../etc/passwd"])


def walked_parameters() -> Iterator[tuple[str, str, str, bool]]:
    """(command, option or argument name, bare type, is positional) for every parameter that takes a value."""
    group = typer.main.get_command(app)
    for param in group.params:  # the global options, before the command
        if not getattr(param, "is_flag", False) and not getattr(param, "count", False):
            yield "", param.opts[0], str(param.bare_type()), False
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        for param in command.params:
            if getattr(param, "is_flag", False) or getattr(param, "count", False) or param.opts[0] == "--help":
                continue
            yield name, param.opts[0], str(param.bare_type()), param.param_type_name == "argument"


def command_line(command: str, option: str, positional: bool, value: str, folder: Path) -> list[str]:
    if command == "":  # a global option: put it before a command that does next to nothing
        return [option, value, "list", "methods"]
    positionals, options = BASE[command]
    if command in HAS_OUT and option != "--out":
        options = [*options, "--out", str(folder / "out")]
    if positional:  # the value replaces the command's own positional
        return [command, value, *options]
    return [command, *positionals, *options, option, value]


def all_cases(folder: Path) -> list[tuple[str, str, bool, str]]:
    """Every option once (a random hostile value), then a seeded sample of the rest, CASES in all."""
    rng = random.Random(SEED)
    first, rest = [], []
    for command, option, kind, positional in walked_parameters():
        values = hostile_values(kind, folder)
        if (command, option) in FIFO_READ_BY_THE_READER and not READER_PRESENT:
            values.remove(str(folder / "fifo"))
        rng.shuffle(values)
        first.append((command, option, positional, values[0]))
        rest += [(command, option, positional, value) for value in values[1:]]
    rng.shuffle(rest)
    return first + rest[:max(0, CASES - len(first))]


def _alarm(signum: int, frame: Any) -> None:
    raise Hung


def test_the_walk_reaches_every_command_and_number_option() -> None:
    walked = {(command, option) for command, option, _, _ in walked_parameters()}
    assert set(typer.main.get_command(app).commands) == set(BASE), "a new command: add its command line to BASE"
    assert {command for command, _ in walked} == {"", *BASE} - {"schema"}  # schema has flags only
    assert {("", "--log-file"), ("validate", "--duration"), ("export", "--calibration"), ("run", "--set"),
            ("distill", "--epochs"), ("validate", "artifacts"), ("run", "recipe")} <= walked
    assert len(walked) >= 100


def test_every_option_with_hostile_values_keeps_the_invariants(sentinels: None, tmp_path: Path,  # noqa: F811
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    cases = all_cases(shared)
    assert len({(c, o) for c, o, _, _ in cases}) >= 100 and len(cases) >= min(CASES, 100)
    failures: list[str] = []
    codes: dict[int, int] = {}
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
    previous = signal.signal(signal.SIGALRM, _alarm)
    try:
        for number, (command, option, positional, value) in enumerate(cases):
            folder = tmp_path / f"case{number}"
            folder.mkdir()
            args = command_line(command, option, positional, value, folder)
            signal.alarm(CASE_SECONDS)
            try:
                code, output = invoke(args, capsys)
            except Hung:
                code, output = f"still running after {CASE_SECONDS} s", capsys.readouterr().err
            finally:
                signal.alarm(0)
            wrong = problem(code, output, folder / "out")
            codes[code if isinstance(code, int) else -1] = codes.get(code if isinstance(code, int) else -1, 0) + 1
            if wrong:
                shown = [a if len(a) < 60 else a[:30] + f"...({len(a)} chars)" for a in args]
                last = wrong.strip().splitlines()[-1][:300]  # a traceback's last line names the exception
                failures.append(f"case {number}: compress {' '.join(map(repr, shown))}\n  {last}")
    finally:
        signal.signal(signal.SIGALRM, previous)
    growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - peak_before
    assert growth < MAX_GROWTH, f"the walk's peak RSS grew by {growth / 2**30:.1f} GiB: a hostile value sized memory"
    assert not failures, f"{len(failures)} of {len(cases)} cases broke the invariant:\n" + "\n".join(failures[:int(os.environ.get("COMPRESS_WALK_SHOW", "12"))])
    assert codes.get(0, 0) > 0 and codes.get(1, 0) + codes.get(2, 0) > len(cases) // 2, codes
