"""compress: distil, export and validate image classifiers for edge deployment.

The Python API (``compress.api``): ``compress.model``, ``compress.distill``, ``compress.export``,
``compress.validate``; loaded on first use, so ``import compress`` stays light (no torch).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_API = {"model": "compress.api", "distill": "compress.distill", "export": "compress.export",
        "validate": "compress.validate"}


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'compress' has no attribute '{name}'")
    module = import_module(_API[name])
    # distill/export/validate: the packages themselves, callable (see compress._callable)
    return module if module.__name__ == f"compress.{name}" else getattr(module, name)
