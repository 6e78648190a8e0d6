"""The dependency direction of DESIGN.md, checked on the source: deploy ← compress core ← pipeline ← cli.

The import graph is built from every ``import`` statement in ``compress/`` and ``deploy/`` (module level,
inside functions and under ``TYPE_CHECKING`` alike: a delayed import that breaks a cycle at run time still
ties the two modules together), with an edge to the module actually named (``from a.b import c`` points at
``a.b.c`` when that is a module, else at ``a.b``), and, for ``from PACKAGE import ...``, to the package
itself: the names are looked up in its ``__init__``, which must have run (and a package ``__init__`` that
imports its submodules then closes a cycle with each of them).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("compress", "deploy")
CORE = ("models", "data", "distill", "train", "export", "validate")
FORBIDDEN_IN_CORE = ("compress.pipeline", "compress.cli", "typer")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _imports(path: Path, name: str, known: dict[str, Path]) -> set[str]:
    """Every module ``name`` (at ``path``) imports; in-project ones resolved to the module named."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                package = name.split(".") if is_package else name.split(".")[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join(package + ([base] if base else []))
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if candidate in known else base)
            if base in known and known[base].name == "__init__.py":
                found.add(base)  # the names come through the package's __init__
    return found


def _graph() -> dict[str, set[str]]:
    known = _modules()
    return {name: _imports(path, name, known) for name, path in known.items()}


def _is_within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def test_graph_sees_the_known_edges() -> None:
    # guards the scanner itself: if it found nothing, every rule below would pass vacuously
    graph = _graph()
    assert "compress.cli" in graph and "deploy" in graph
    cli = {dep for mod, deps in graph.items() if _is_within(mod, "compress.cli") for dep in deps}
    assert any(_is_within(m, "typer") for m in cli) and any(_is_within(m, "compress.pipeline") for m in cli)


def test_deploy_never_imports_compress_or_torch() -> None:
    bad = {f"{mod} imports {dep}" for mod, deps in _graph().items() if _is_within(mod, "deploy")
           for dep in deps if _is_within(dep, "compress") or _is_within(dep, "torch")}
    assert not bad, "deploy must stay torch-free and independent of compress:\n" + "\n".join(sorted(bad))


@pytest.mark.parametrize("core", CORE)
def test_core_never_imports_pipeline_cli_or_typer(core: str) -> None:
    prefix = f"compress.{core}"
    bad = {f"{mod} imports {dep}" for mod, deps in _graph().items() if _is_within(mod, prefix)
           for dep in deps for forbidden in FORBIDDEN_IN_CORE if _is_within(dep, forbidden)}
    assert not bad, f"{prefix} is core: it must not import the pipeline, the CLI or typer:\n" + "\n".join(sorted(bad))


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle among the project's modules, as a path that returns to its start; None if acyclic."""
    inside = {m: {d for d in deps if d in graph and d != m} for m, deps in graph.items()}
    state: dict[str, int] = {}  # 1 on the current path, 2 finished
    stack: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        stack.append(module)
        for dep in sorted(inside[module]):
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        stack.pop()
        state[module] = 2
        return None

    for module in sorted(inside):
        if module not in state and (cycle := visit(module)):
            return cycle
    return None


def test_find_cycle_reports_a_cycle() -> None:
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles() -> None:
    cycle = _find_cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_graph_sees_imports_through_a_package_init(tmp_path: Path) -> None:
    # ``from compress.export import onnx`` reads compress/export/__init__.py even though onnx is a module
    probe = tmp_path / "probe.py"
    probe.write_text("from compress.export import onnx\nfrom compress.models.zoo import MODELS\n")
    assert _imports(probe, "compress.models.probe", _modules()) == {
        "compress.export", "compress.export.onnx", "compress.models.zoo"}


def test_a_cycle_through_a_package_init_fails() -> None:
    # compress/models/__init__.py names zoo (for type checkers); zoo importing from the package closes a cycle
    graph = _graph()
    graph["compress.models.zoo"] = graph["compress.models.zoo"] | {"compress.models"}
    assert _find_cycle(graph) is not None


def test_no_submodule_imports_its_own_package() -> None:
    """A module of a subpackage never imports from that subpackage's ``__init__`` (``from compress.export import
    onnx`` inside compress/export/): it names the module it needs (``from compress.export.onnx import ...``).
    (The top-level packages' ``__init__`` files are the public API their modules may read.)"""
    modules = _modules()
    bad = {f"{mod} imports {dep}" for mod, deps in _graph().items() for dep in deps
           if modules[mod].name != "__init__.py" and "." in dep and mod.rsplit(".", 1)[0] == dep}
    assert not bad, "a submodule imports its own package's __init__:\n" + "\n".join(sorted(bad))
