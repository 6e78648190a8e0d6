"""Packages whose names load on first use (PEP 562): importing a package, or one of its submodules, runs
its ``__init__``; kept free of imports, that never pulls in torch or closes an import cycle."""

from __future__ import annotations

from importlib import import_module
from typing import Any, Callable


def lazy_names(package: str, modules: dict[str, tuple[str, ...]]) -> tuple[Callable[[str], Any], list[str]]:
    """A module ``__getattr__`` that imports each name of ``modules`` (a submodule of ``package``, or a
    module's full name -> names) from its module on first use, and the package's ``__all__``."""
    home = {name: module if module.startswith("compress.") else f"{package}.{module}"
            for module, names in modules.items() for name in names}

    def __getattr__(name: str) -> Any:
        if name not in home:
            raise AttributeError(f"module '{package}' has no attribute '{name}'")
        return getattr(import_module(home[name]), name)

    return __getattr__, sorted(home)
