"""compress: distil, export and validate image classifiers for edge deployment.

The Python API: ``compress.model``, ``compress.distill``, ``compress.export``, ``compress.validate``, the
plain functions of ``compress.api``. ``import compress`` stays light (no torch): they load what they need
when called.

Three of those names are also subpackages (``compress/distill/``, ``export/``, ``validate/``). Python binds
a subpackage as an attribute of its parent when the subpackage is first imported, so the subpackages are
imported here first (their ``__init__`` files import nothing) and the functions bound after them: later
imports never rebind the names. The subpackages are reached by import (``from compress.distill import
DistillConfig``, ``importlib.import_module("compress.export.onnx")``), never as ``compress.distill.X``.
"""

from __future__ import annotations

from importlib import import_module

from compress.version import __version__

for _package in ("distill", "export", "validate"):
    import_module(f"{__name__}.{_package}")  # bound now, before the functions of the same names below

from compress.api import distill, export, model, validate  # noqa: E402

__all__ = ["__version__", "distill", "export", "model", "validate"]
