"""A seeded fuzzer over the real recipes (pipelines/*.yaml) and the CLI's number options (issue 17).

The invariant, for every case: the command exits 0 (accepted) or 1, 2 or 3 with exactly one ``error:``
line, printed last; nothing prints a traceback or raises past ``main``; a refused command leaves no
output folder behind. An accepted command is stopped at a sentinel just before its real work (loading
the data, opening the artifacts, loading the checkpoint, running the stages): every check on user input
runs before that point, and nothing trains. The cases are fixed by their seeds, so a failure reproduces:
its report names the seed, the arguments and where the mutated recipe was kept.

COMPRESS_FUZZ_CASES sets the number of cases per fuzzing test (default 300: ~10 s in all on a 2-core CI
machine; 3,000 each ran clean when the harness was written).
"""

from __future__ import annotations

import json
import os
import random
import re
import traceback
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import yaml

from compress.cli import app, main

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "pipelines").glob("*.yaml"))
TEACHER = "fashion-mnist-resnet20"  # the shipped teacher, by name as the recipes name it
CASES = int(os.environ.get("COMPRESS_FUZZ_CASES", "300"))
ERROR_CODES = (1, 2, 3)


class Accepted(BaseException):
    """Raised by the sentinels: the command passed every check. A BaseException, so ``main`` lets it by."""


def _accept(*args: Any, **kwargs: Any) -> Any:
    raise Accepted


@pytest.fixture
def sentinels(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stop accepted commands where their real work would start; run from the repository root."""
    import compress.deployable
    import compress.pipeline.runner
    import compress.workflows
    from compress.validate import measure  # compress.validate is the API function; the package is imported

    monkeypatch.setattr(compress.workflows, "load_data", _accept)  # train-teacher, distill
    monkeypatch.setattr(measure, "open_backend", _accept)  # validate
    monkeypatch.setattr(compress.deployable, "load_deployable", _accept)  # export
    monkeypatch.setattr(compress.pipeline.runner, "_run_stages", _accept)  # run
    monkeypatch.chdir(ROOT)


@pytest.fixture(autouse=True)
def keep_random_state() -> Iterator[None]:
    """Accepted commands seed every generator: give the rest of the session its state back."""
    import numpy as np
    import torch

    states = random.getstate(), np.random.get_state(), torch.random.get_rng_state()
    yield
    random.setstate(states[0])
    np.random.set_state(states[1])
    torch.random.set_rng_state(states[2])


def invoke(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int | str, str]:
    """(exit code, stderr + stdout) of ``compress ARGS``; the code is a traceback's text when something
    other than SystemExit left ``main``."""
    try:
        main(args)
        code: int | str = 0
    except Accepted:
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except Exception:  # noqa: BLE001 - exactly what the invariant forbids: report it, with its traceback
        code = traceback.format_exc()
    captured = capsys.readouterr()
    return code, captured.err + captured.out


def problem(code: int | str, output: str, out: Path) -> str | None:
    """What breaks the invariant, or None."""
    if isinstance(code, str):
        return "raised past main:\n" + code
    if "Traceback" in output:
        return "printed a traceback"
    if code == 0:
        return None
    if code not in ERROR_CODES:
        return f"exit code {code}"
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    if len(errors) != 1:
        return f"{len(errors)} error lines"
    if output.rstrip().splitlines()[-1] != errors[0]:
        return "the error is not the last line"
    if len(errors[0]) > 600:
        return f"a {len(errors[0])}-character error line"
    if out.exists():
        return "a refused command left its output folder"
    return None


def run_cases(make_case: Callable[[random.Random, Path], tuple[list[str], str]], tmp_path: Path,
              capsys: pytest.CaptureFixture[str], seed_base: int) -> dict[int, int]:
    """Run CASES cases; fail with every broken invariant (seed, description, output). Returns code -> count."""
    failures: list[str] = []
    codes: dict[int, int] = {}
    for seed in range(seed_base, seed_base + CASES):
        folder = tmp_path / f"case{seed}"
        folder.mkdir()
        args, description = make_case(random.Random(seed), folder)
        code, output = invoke(args, capsys)
        wrong = problem(code, output, folder / "out")
        outcome = code if isinstance(code, int) else -1  # -1: raised past main
        codes[outcome] = codes.get(outcome, 0) + 1
        if wrong:
            failures.append(f"seed {seed}: {description}\n  {wrong}\n  output: {output[-600:]}")
    assert not failures, f"{len(failures)} of {CASES} cases broke the invariant:\n" + "\n".join(failures[:10])
    return codes


# ------------------------------------------------------------------------------------- number options

INTS = ["0", "-1", "1", "2", "3", "28", "64", "256", "257", "65536", "65537", "200000", "100000", "100001",
        str(2**31), str(2**32), str(2**63), str(2**70), "9" * 40, "1e9", "1.5", "nan", "inf", "", "x"]
FLOATS = ["0", "-0.0", "5e-324", "1e-9", "0.05", "0.5", "0.999", "1", "1.0001", "10", "10.5", "99.9", "100", "3600",
          "3601", "1e308", "-1e308", "1e309", "nan", "-nan", "inf", "-inf", "1e9", "-1", "x", ""]
LISTS = ["1", "1,32", "0", "-1", "8,4,2", "1,8,65536", "1,200000", str(2**70), "1,,2", "nan", "1e9", "a,b", ""]
LIST_OPTIONS = {"train-teacher": ["--milestones"], "distill": ["--milestones"], "export": ["--batch"],
                "validate": ["--batch-sizes", "--threads"]}
BASE = {
    "train-teacher": ["train-teacher", "--model", "resnet8", "--no-progress"],
    "distill": ["distill", "--student", "resnet8", "--teacher", TEACHER, "--no-progress"],
    "export": ["export", TEACHER],
    "validate": ["validate", TEACHER],
}


def number_options() -> dict[str, dict[str, str]]:
    """Command -> {option: "int" | "float"} for every number option, read from the CLI itself."""
    import typer

    group = typer.main.get_command(app)
    table = {}
    for name in BASE:
        params = group.commands[name].params  # type: ignore[attr-defined]
        table[name] = {p.opts[0]: p.bare_type() for p in params
                       if getattr(p, "opts", None) and p.bare_type() in ("int", "float")}
    return table


NUMBER_OPTIONS = number_options()


def test_the_fuzzer_sees_the_number_options() -> None:
    assert {"--epochs", "--lr", "--seed", "--batch-size", "--warmup"} <= set(NUMBER_OPTIONS["train-teacher"])
    assert {"--w", "--temperature", "--epochs"} <= set(NUMBER_OPTIONS["distill"])
    assert {"--duration", "--max-p90-ms"} <= set(NUMBER_OPTIONS["validate"])
    assert {"--calibration"} <= set(NUMBER_OPTIONS["export"])


def number_case(rng: random.Random, folder: Path) -> tuple[list[str], str]:
    command = rng.choice(sorted(BASE))
    args = list(BASE[command])
    if command != "validate":
        args += ["--out", str(folder / "out")]
    if command == "export":
        args += rng.sample(["--onnx", "--int8", "--trt"], rng.randint(1, 2))
    if command == "validate" and rng.random() < 0.3:
        args.append("--no-latency")
    if command == "distill":
        args += ["--method", rng.choice(["atsc", "kd", "simkd", "none"])]
    options = NUMBER_OPTIONS[command]
    for option in rng.sample(sorted(options), min(len(options), rng.randint(1, 3))):
        args += [option, rng.choice(INTS if options[option] == "int" else FLOATS)]
    if rng.random() < 0.4:
        args += [rng.choice(LIST_OPTIONS[command]), rng.choice(LISTS)]
    return args, "compress " + " ".join(args)


def test_number_options_accept_or_refuse_in_one_line(sentinels: None, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    codes = run_cases(number_case, tmp_path, capsys, seed_base=0)
    refused = codes.get(1, 0) + codes.get(2, 0)  # 2: out of compress.bounds.OPTION_BOUNDS, refused as it is read
    assert codes.get(0, 0) > 0 and refused > CASES // 3, f"a fuzzer that tests one outcome only: {codes}"


# ---------------------------------------------------------------------------------------------- recipes

HOSTILE_VALUES: list[Any] = [
    0, -1, 1, 2**31, 2**63, 2**70, 10**29, float("nan"), float("inf"), float("-inf"), 1e308, 5e-324, -0.0, 0.5,
    "", "nan", ".inf", "1e9", "x" * 3000, "../../etc", "a/b", "fashion-mnst", "resnet8", [], {}, None, True, False,
    [0], [2**70], [1, 200000], {"x": 1}, [[[[[[[[[[1]]]]]]]]]],
]
HOSTILE_TEXT = ["\xff", "\x00", "\t", ": ", "[", "{", "}", "- ", "&a ", "*a", "<<: *a\n",
                "!!python/object/apply:os.system ['true']",
                "\ufeff", "\u202e", "%YAML 1.1\n---\n", "---\n", "...\n", "'", '"', "#", "? ", "|\n", "9" * 5001]


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """The path of every value in a parsed recipe (keys and list indices), the root first."""
    yield prefix
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        yield from _paths(value, (*prefix, key))


def _mutate_data(data: Any, rng: random.Random) -> tuple[Any, str]:
    """One structural change: replace a value, drop a key, add a (misspelt or foreign) key."""
    path = rng.choice(list(_paths(data))[1:] or [()])
    parent = data
    for key in path[:-1]:
        parent = parent[key]
    kind = rng.random()
    if not path:
        return rng.choice(HOSTILE_VALUES), "replaced the whole recipe"
    if kind < 0.6:
        value = rng.choice(HOSTILE_VALUES)
        parent[path[-1]] = value
        return data, f"set {'.'.join(map(str, path))} to {str(value)[:40]!r}"
    if kind < 0.8 and isinstance(parent, dict):
        del parent[path[-1]]
        return data, f"dropped {'.'.join(map(str, path))}"
    if isinstance(parent, dict):
        key = str(path[-1])
        new = rng.choice([key + "s", key[:-1], key.upper(), "batch_size", "epochs", "seed", "lr", "name"])
        parent[new] = rng.choice(HOSTILE_VALUES)
        return data, f"added {new!r} beside {'.'.join(map(str, path))}"
    parent.append(rng.choice(HOSTILE_VALUES))
    return data, f"appended to {'.'.join(map(str, path[:-1]))}"


def _mutate_text(text: str, rng: random.Random) -> tuple[bytes, str]:
    """One textual change: duplicate, drop or swap lines, insert hostile text, cut, or re-encode."""
    lines = text.splitlines(keepends=True) or ["\n"]
    kind = rng.randrange(7)
    at = rng.randrange(len(lines))
    if kind == 0:
        lines.insert(at, lines[at])
        what = f"duplicated line {at + 1}"
    elif kind == 1:
        del lines[at]
        what = f"dropped line {at + 1}"
    elif kind == 2:
        other = rng.randrange(len(lines))
        lines[at], lines[other] = lines[other], lines[at]
        what = f"swapped lines {at + 1} and {other + 1}"
    elif kind == 3:
        snippet = rng.choice(HOSTILE_TEXT)
        cut = rng.randrange(len(lines[at]) + 1)
        lines[at] = lines[at][:cut] + snippet + lines[at][cut:]
        what = f"inserted {snippet[:20]!r} into line {at + 1}"
    elif kind == 4:
        text = "".join(lines)
        return text[:rng.randrange(len(text) + 1)].encode(), "cut short"
    elif kind == 5:
        encoding = rng.choice(["utf-16-le", "utf-16", "latin-1", "utf-32"])
        return "".join(lines).replace("fashion", "fäshion").encode(encoding, "replace"), f"encoded as {encoding}"
    else:
        lines.insert(at, "  " * rng.randrange(8) + rng.choice(lines).lstrip())
        what = f"re-indented a copy at line {at + 1}"
    return "".join(lines).encode(), what


def recipe_case(rng: random.Random, folder: Path) -> tuple[list[str], str]:
    source = rng.choice(RECIPES)
    data = yaml.safe_load(source.read_text())
    changes = []
    for _ in range(rng.randint(0, 2)):
        data, what = _mutate_data(data, rng)
        changes.append(what)
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True) if changes else source.read_text()
    content = text.encode()
    if not changes or rng.random() < 0.5:
        content, what = _mutate_text(text, rng)
        changes.append(what)
    recipe = folder / source.name
    recipe.write_bytes(content)
    args = ["run", str(recipe), "--out", str(folder / "out"), "--no-progress"]
    return args, f"{source.name}: {'; '.join(changes)} ({recipe})"


def test_mutated_recipes_run_or_refuse_in_one_line(sentinels: None, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    codes = run_cases(recipe_case, tmp_path, capsys, seed_base=10_000)
    assert codes.get(0, 0) > 0 and codes.get(1, 0) > CASES // 3, f"a fuzzer that tests one outcome only: {codes}"


def test_the_unchanged_recipes_are_accepted(sentinels: None, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """The sentinels stop accepted runs, not every run: each shipped recipe gets there."""
    for recipe in RECIPES:
        code, output = invoke(["run", str(recipe), "--out", str(tmp_path / recipe.stem), "--no-progress"], capsys)
        assert code == 0, f"{recipe.name}: {output}"


# ------------------------------------------------------------------------------ --set values (issue 23)

SET_VALUES = ["[" * 5000 + "]" * 5000, "[" * 40 + "1" + "]" * 40, "9" * 5001, "9" * 31, "x" * 120_000, "x" * 16_385,
              ".nan", ".inf", "-.inf", "1e400", "{a: 1, a: 2}", "[1, 8", "{", "&a [*a, *a]", "*a", "null", "~", "",
              "!!python/object/apply:os.system ['true']", "'\x00'", "\x00", "\ufeff", "[1, 8]", "{exporter: dynamo}",
              "0", "-1", "4", "2.5", "true", "'007'", "resnet8", "fashion-mnist", "[]", "{}"]


def set_case(rng: random.Random, folder: Path) -> tuple[list[str], str]:
    source = rng.choice(RECIPES)
    paths = [p for p in _paths(yaml.safe_load(source.read_text())) if p]
    overrides = []
    for _ in range(rng.randint(1, 3)):
        path = rng.choice(paths)
        key = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in path).lstrip(".")
        kind = rng.random()
        if kind < 0.1:
            overrides.append(key)  # no "=": a usage error
        elif kind < 0.2:
            overrides.append(rng.choice([key + "s", key + "..x", "[0]" + key, key.upper(), "x" * 5000]) + "=1")
        else:
            overrides.append(f"{key}={rng.choice(SET_VALUES)}")
    args = ["run", str(source), "--out", str(folder / "out"), "--no-progress"]
    for override in overrides:
        args += ["--set", override]
    return args, f"{source.name} " + " ".join(f"--set {o[:60]!r}" for o in overrides)


def test_set_values_run_or_refuse_in_one_line(sentinels: None, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    codes = run_cases(set_case, tmp_path, capsys, seed_base=20_000)
    assert codes.get(0, 0) > 0 and codes.get(1, 0) > 0 and codes.get(2, 0) > 0, \
        f"a fuzzer that tests one outcome only: {codes}"


# ------------------------------------------------------------------------------ --baseline files (issue 23)

def _report() -> dict[str, Any]:
    """A real report.json's content, as `compress validate --out` writes it."""
    from compress.validate.accuracy import AccuracyResult
    from compress.validate.latency import LatencyStats
    from compress.validate.results import StageResult, ValidationResult

    stats = [LatencyStats(1, 1, 20, 2.0, 2.0, 2.5, 2.7, 1.8, 3.0, 500.0)]
    stages = {"student": StageResult("student", "model.safetensors", "pytorch", latency=stats,
                                     accuracy=AccuracyResult(100, 90.0, 99.0, 100.0, 0.0))}
    return ValidationResult("student", stages, environment={"cpu": "test"},
                            data={"name": "fashion-mnist", "samples": 100}).to_dict()


REPORT = _report()
BASELINE_TEXT = ["[" * 200_000 + "]" * 200_000, "[" * 65 + "]" * 65, "NaN", "Infinity", "-Infinity", "1e999",
                 "9" * 5001, "9" * 31, '"' + "x" * 100_000 + '"', "[]", "{}", "null", "true", '"\\ud800"', "{",
                 '{"a": 1, "a": 2}']


def _mutated_report(rng: random.Random) -> str:
    text = json.dumps(REPORT, indent=rng.choice([None, 2]))
    kind = rng.random()
    if kind < 0.5:  # a value replaced by hostile JSON text
        spots = [m.start() for m in re.finditer(r": ", text)]
        at = rng.choice(spots) + 2
        end = at + max(1, re.match(r'"[^"]*"|[^,}\]]+|\{|\[', text[at:]).end() if text[at] not in "{[" else 1)
        return text[:at] + rng.choice(BASELINE_TEXT) + text[end:]
    if kind < 0.7:  # a key repeated
        return text.replace('"reference": "student"', '"reference": "student", "reference": "int8"', 1)
    if kind < 0.85:
        return text[:rng.randrange(len(text))]  # cut short
    return rng.choice(BASELINE_TEXT)


def baseline_case(rng: random.Random, folder: Path) -> tuple[list[str], str]:
    path = folder / "report.json"
    kind = rng.random()
    if kind < 0.05:
        os.mkfifo(path)
        what = "a FIFO"
    elif kind < 0.1:
        path.mkdir()
        what = "a folder"
    elif kind < 0.15:
        with open(path, "wb") as f:
            f.truncate(rng.choice([17 << 20, 69 << 20]))  # sparse
        what = f"a {path.stat().st_size >> 20} MiB file"
    elif kind < 0.2:
        path.write_bytes(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))))
        what = "random bytes"
    else:
        path.write_text(_mutated_report(rng))
        what = f"a mutated report ({path.stat().st_size} bytes)"
    args = ["validate", TEACHER, "--no-latency", "--baseline", str(path)]
    if rng.random() < 0.5:
        args += ["--max-top1-drop-vs-baseline", rng.choice(["1", "0.5", "nan", "200"])]
    return args, f"--baseline {what}: {path}"


def test_baselines_are_read_or_refused_in_one_line(sentinels: None, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    codes = run_cases(baseline_case, tmp_path, capsys, seed_base=30_000)
    assert codes.get(0, 0) > 0 and codes.get(1, 0) > CASES // 3, f"a fuzzer that tests one outcome only: {codes}"
