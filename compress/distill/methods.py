"""The table of distillation methods (``METHODS``): name -> where its class lives, its settings and summary.

The table is torch-free: `compress list methods`, the ``compress distill`` options and the recipe keys
read it without importing a method; ``MethodEntry.load()`` imports the class when a run builds it. A
built-in method is its module (the class), its config in ``configs.py`` and one entry below. A method
class defined elsewhere (a plug-in, a test) registers itself: ``@METHODS.register("name")`` on a
``base.Method`` subclass takes its ``summary``, ``config_class`` and ``needs_teachers`` from the class.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from typing import Any, Callable

from compress.distill.configs import ATSCConfig, KDConfig, SharedHeadConfig, SupervisedConfig
from compress.distill.settings import MethodConfig
from compress.registry import Registry

# A method class (a ``compress.distill.base.Method``), not imported here: base.py reads this table.
MethodClass = type[Any]


@dataclass(frozen=True)
class MethodEntry:
    where: str  # "module:Class"
    summary: str  # one line for `compress list methods`
    config_class: type[MethodConfig]  # its settings
    needs_teachers: bool = True
    cls: MethodClass | None = None  # a class registered from Python: known already

    def load(self) -> MethodClass:
        """The method's class (importing its module, and torch, the first time)."""
        if self.cls is not None:
            return self.cls
        module, name = self.where.split(":")
        return getattr(import_module(module), name)  # type: ignore[no-any-return]


class MethodRegistry(Registry[MethodEntry]):
    def register(self, name: str, *aliases: str) -> Callable[[MethodClass], MethodClass]:  # type: ignore[override]
        """Registers a ``Method`` subclass under ``name``: its entry comes from the class's attributes."""

        def decorator(cls: MethodClass) -> MethodClass:
            where = f"{cls.__module__}:{cls.__qualname__}"
            self.add(name, MethodEntry(where, cls.summary, cls.config_class, cls.needs_teachers, cls), *aliases)
            return cls

        return decorator

    def name_of(self, obj: object) -> str | None:
        """The name a method class (or its entry) is registered under, if any; imports nothing."""
        where = f"{getattr(obj, '__module__', '')}:{getattr(obj, '__qualname__', '')}"
        return next((name for name, entry in self._entries.items() if entry is obj or entry.where == where), None)


METHODS = MethodRegistry("method")
METHODS.add("atsc", MethodEntry(
    "compress.distill.atsc:ATSC", "ATSC: SimKD with an adapted teacher (anchored to its weights), bias refinement; "
    "guarded by default", ATSCConfig))
METHODS.add("kd", MethodEntry(
    "compress.distill.kd:KD", "Hinton KD: CE + T^2 KL to the (mean) softened teacher probabilities; teachers frozen",
    KDConfig), "hinton")
METHODS.add("none", MethodEntry(
    "compress.distill.base:Supervised", "the student alone with cross-entropy (baseline)", SupervisedConfig,
    needs_teachers=False), "scratch")
METHODS.add("simkd", MethodEntry(
    "compress.distill.simkd:SimKD", "SimKD: projector + frozen teacher classifier, feature MSE (Chen et al. 2022); "
    "teachers frozen", SharedHeadConfig))

__all__ = ["METHODS", "MethodEntry", "MethodRegistry"]
