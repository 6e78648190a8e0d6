"""Imports in the pipeline package go one way, context <- stages <- runner, and no module borrows another's
private names (the stages used to import the runner's _Run, _Done, _Skip and _read_record)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "compress"


def imports(module: Path) -> list[tuple[str, str]]:
    """(module, name) for every `from compress... import name` in ``module``, at any depth."""
    found = []
    for node in ast.walk(ast.parse(module.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("compress"):
            found += [(node.module, alias.name) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(alias.name, "") for alias in node.names if alias.name.startswith("compress")]
    return found


@pytest.mark.parametrize("module, forbidden", [
    ("context", ("compress.pipeline.stages", "compress.pipeline.runner")),
    ("stages", ("compress.pipeline.runner",)),
    ("distill_table", ("compress.pipeline.stages", "compress.pipeline.runner")),
    ("spec", ("compress.pipeline.context", "compress.pipeline.stages", "compress.pipeline.runner")),
])
def test_pipeline_imports_go_one_way(module: str, forbidden: tuple[str, ...]) -> None:
    used = {name for name, _ in imports(PACKAGE / "pipeline" / f"{module}.py")}
    assert not used & set(forbidden)


@pytest.mark.parametrize("folder", ["pipeline", "export", "validate"])
def test_no_private_names_cross_modules(folder: str) -> None:
    borrowed = [(path.name, module, name) for path in sorted((PACKAGE / folder).glob("*.py"))
                for module, name in imports(path) if name.startswith("_") and name != "__version__"]
    assert borrowed == []


def test_the_backend_and_gate_tables_load_without_torch() -> None:
    """The CLI reads both tables when it starts; torch would add seconds to anything that only needs them
    (tests/test_cli_startup.py checks the whole command line)."""
    import subprocess
    import sys

    code = ("import sys, compress.export.backends, compress.validate.gates; "
            "print(sorted(m for m in ('torch', 'onnx', 'onnxruntime') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
