"""The command line starts without torch: --version, --help, list, schema, shell completion and every usage
error are answered before any heavy library loads; Ctrl-C while it loads is one line and exit 130; and
``import compress`` gives the Python API as plain functions (no module made callable)."""

from __future__ import annotations

import importlib
import inspect
import json
import os
import signal
import subprocess
import sys
import tomllib
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "torchvision", "onnx", "onnxruntime", "openvino", "nncf", "timm", "tensorrt")

# Runs the console script's entry point with the given arguments, then records its exit code and which
# heavy libraries were imported (to the file named by $PROBE_OUT: the command's own output stays apart).
PROBE = f"""
import json, os, sys
from compress.__main__ import main
try:
    main(sys.argv[1:])
    code = 0
except SystemExit as stop:
    code = stop.code
heavy = sorted(m for m in {HEAVY!r} if m in sys.modules)
with open(os.environ["PROBE_OUT"], "w") as out:
    json.dump({{"code": code, "heavy": heavy}}, out)
"""


def _probe(tmp_path: Path, args: list[str], **env: str) -> tuple[dict[str, object], str, str]:
    out = tmp_path / "probe.json"
    run = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(ROOT), "PROBE_OUT": str(out), **env}, timeout=120)
    assert out.is_file(), run.stderr
    return json.loads(out.read_text()), run.stdout, run.stderr


@pytest.mark.parametrize("args, code, says", [
    (["--version"], 0, "compress "),
    (["--help"], 0, "Usage: compress"),
    (["list", "methods"], 0, "atsc"),
    (["list", "models"], 0, "mobilenet_v2"),
    (["list", "datasets"], 0, "fashion-mnist"),
    (["list", "projectors"], 0, "bottleneck"),
    (["list", "presets"], 0, "cifar100"),
    (["schema"], 0, '"$schema"'),
    (["schema", "--markdown"], 0, "distill"),
    (["distill", "--help"], 0, "--temperature"),  # an option generated from the methods' config classes
    (["train-teacher", "--help"], 0, "--model"),
    (["export", "--help"], 0, "--int8"),  # one flag per export backend
    (["validate", "--help"], 0, "--min-agreement"),  # one option per gate
    (["run", "--help"], 0, "--set"),
])
def test_answers_without_torch(tmp_path: Path, args: list[str], code: int, says: str) -> None:
    result, stdout, stderr = _probe(tmp_path, args)
    assert result == {"code": code, "heavy": []}, stderr
    assert says in stdout


@pytest.mark.parametrize("args, says", [
    (["distill", "--student", "resnet8", "--out", "o", "--bogus"], "No such option: --bogus"),
    (["distill", "--student", "resnet8", "--out", "o", "--epochs", "many"], "Invalid value for '--epochs'"),
    (["distill", "--student", "resnet8", "--out", "o", "--temperature", "hot"], "Invalid value for '--temperature'"),
    (["distill", "--out", "o"], "Missing option '--student'"),
    (["list", "everything"], "'everything' is not one of 'models'"),
    (["compile"], "No such command 'compile'"),
])
def test_usage_errors_without_torch(tmp_path: Path, args: list[str], says: str) -> None:
    result, stdout, stderr = _probe(tmp_path, args)
    assert result == {"code": 2, "heavy": []}
    assert len(stderr.strip().splitlines()) == 1 and says in stderr and stdout == ""


@pytest.mark.parametrize("words, cword, expected", [
    ("compress dis", "1", "distill"),
    ("compress distill --temp", "2", "--temperature"),  # a method setting's option
    ("compress list mo", "2", "models"),
])
def test_shell_completion_without_torch(tmp_path: Path, words: str, cword: str, expected: str) -> None:
    result, stdout, _ = _probe(tmp_path, [], _COMPRESS_COMPLETE="complete_bash", COMP_WORDS=words, COMP_CWORD=cword)
    assert result == {"code": 0, "heavy": []}
    assert expected in stdout.split()


def test_import_compress_is_light() -> None:
    code = f"import sys, compress; print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert run.stdout.strip() == "[]"


def test_the_api_names_are_plain_functions_whatever_is_imported() -> None:
    import compress
    from compress import api

    for package, submodule in (("distill", "kd"), ("export", "onnx"), ("validate", "gates")):
        importlib.import_module(f"compress.{package}.{submodule}")
        assert type(sys.modules[f"compress.{package}"]) is types.ModuleType  # no module class swapped in
        assert getattr(compress, package) is getattr(api, package) and inspect.isfunction(getattr(compress, package))
    assert compress.model is api.model and inspect.isfunction(compress.model)
    assert not (ROOT / "compress" / "_callable.py").exists()


# Stalls the import of typer (the first thing the command line loads) until the test interrupts it.
STALL = """
import sys, time
class Stall:
    def find_spec(self, name, path=None, target=None):
        if name == "typer":
            print("loading", flush=True)
            time.sleep(60)
        return None
sys.meta_path.insert(0, Stall())
from compress.__main__ import main
main(["list", "methods"])
"""


def test_ctrl_c_while_the_command_line_loads_is_one_line_and_130() -> None:
    entry = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]["compress"]
    assert entry == "compress.__main__:main"  # the entry point that installs the handling
    child = subprocess.Popen([sys.executable, "-c", STALL], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert child.stdout is not None and child.stdout.readline() == "loading\n"
        child.send_signal(signal.SIGINT)
        _, stderr = child.communicate(timeout=60)
    finally:
        child.kill()
    assert child.returncode == 130
    assert stderr.splitlines() == ["error: interrupted: compress stopped while starting; run the same command again"]


def test_startup_benchmark_writes_a_sane_record(tmp_path: Path) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("cli_startup_bench", ROOT / "benchmarks" / "cli_startup.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    record = bench.main(["--tree", f"here={ROOT}", "--runs", "1", "--note", "test", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "cli_startup_cpu.json").read_text())
    assert saved == json.loads(json.dumps(record)) and saved["cpu"] and saved["note"] == "test"
    assert [r["command"] for r in saved["results"]] == ["compress " + " ".join(c) for c in bench.COMMANDS]
    assert all(r["wall_s_median"] > 0 and r["peak_rss_mib_median"] > 10 for r in saved["results"])
    table = (tmp_path / "cli_startup_cpu.md").read_text()
    assert table.startswith("# CLI start-up") and "| `compress --version` |" in table
