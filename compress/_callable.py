"""``compress.distill(...)``, ``compress.export(...)``, ``compress.validate(...)``: the packages of those
names, callable.

``compress.distill``, ``compress.export`` and ``compress.validate`` are packages, and importing a submodule re-binds the
package attribute, so plain functions of those names on ``compress`` would be replaced by the packages
at the first import. Instead the packages themselves call the API function (``compress.api``), which is
imported only on call: the packages stay importable without torch.
"""

from __future__ import annotations

import sys
import types
from importlib import import_module
from typing import Any


def make_callable(package: str, function: str) -> None:
    """Calling module ``package`` calls ``compress.api.<function>`` with the same arguments."""

    class CallablePackage(types.ModuleType):
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            return getattr(import_module("compress.api"), function)(*args, **kwargs)

    CallablePackage.__call__.__doc__ = f"compress.api.{function}"
    sys.modules[package].__class__ = CallablePackage
