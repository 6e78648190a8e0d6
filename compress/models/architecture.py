"""Deployable modules rebuilt from their architecture spec, whatever trained them.

A deployable module implements ``architecture() -> dict``: a JSON spec with a ``type``. Each type has a
builder in ``ARCHITECTURES`` (``@ARCHITECTURES.register(type)``, or the module that holds it, loaded when a
checkpoint names it), so loading a checkpoint needs the models package only, never the method that trained it.

A spec comes from a file anyone can write (a matching hash only proves that the file and its sidecar
belong together), so ``build_architecture`` checks it is small before building anything, and can build
on the ``meta`` device: shapes without memory, to compare with the weights file first.
"""

from __future__ import annotations

import contextlib
from importlib import import_module
from typing import Any, Callable

import torch
from torch import nn

from compress.errors import CheckpointError, CompressError, UnknownNameError
from compress.models.base import ModelSpec
from compress.models.zoo import build_model
from compress.registry import Registry

ARCHITECTURES: Registry[Callable[[dict[str, Any]], nn.Module]] = Registry("architecture")

# Bounds on a spec, far above any real model (the zoo's widest feature map has 2,048 channels, ImageNet-21k
# 21,841 classes, students have a handful of branches) and far below sizes that could exhaust memory.
MAX_SPEC_NUMBER = 100_000  # any whole number: classes, channels, factors, alignment sizes
MAX_SPEC_ITEMS = 64  # entries of any list or object: branches, keys
MAX_SPEC_DEPTH = 8  # nesting of lists and objects
MAX_SPEC_TEXT = 200  # characters of any string: names and kinds


@ARCHITECTURES.register("classifier")
def build_classifier(arch: dict[str, Any]) -> nn.Module:
    """A zoo model: ``{"type": "classifier", "model": ModelSpec fields}``."""
    return build_model(ModelSpec.from_dict(arch["model"]))


def _builder_in(module: str, function: str) -> Callable[[dict[str, Any]], nn.Module]:
    """The builder ``function`` of ``module``, imported when a checkpoint names its type (the module imports
    this one: a registration there would need it imported before any checkpoint loads)."""

    def build(arch: dict[str, Any]) -> nn.Module:
        return getattr(import_module(module), function)(arch)  # type: ignore[no-any-return]

    return build


ARCHITECTURES.add("shared_head", _builder_in("compress.models.shared_head", "build_shared_head"))


def architecture_of(module: nn.Module) -> dict[str, Any]:
    """The spec that rebuilds ``module``; a module without one cannot be saved as deployable."""
    if not hasattr(module, "architecture"):
        raise TypeError(f"{type(module).__name__} has no architecture() spec and cannot be saved as deployable")
    return module.architecture()  # type: ignore[no-any-return]


def check_spec_bounds(value: Any, where: str = "architecture", depth: int = 0) -> None:
    """Refuse a spec with a number, list, string or nesting far outside what any model needs (one line)."""
    if depth > MAX_SPEC_DEPTH:
        raise CheckpointError(f"{where} nests deeper than {MAX_SPEC_DEPTH} levels: not a model spec; re-create it")
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, (int, float)):
        if not (0 <= value <= MAX_SPEC_NUMBER):
            raise CheckpointError(f"{where} is {value!r}, outside 0..{MAX_SPEC_NUMBER} (far beyond any real model); "
                                  "the record is damaged or crafted: re-create the checkpoint")
    elif isinstance(value, str):
        if len(value) > MAX_SPEC_TEXT:
            raise CheckpointError(f"{where} is a {len(value)}-character string: not a model spec; re-create it")
    elif isinstance(value, (list, dict)):
        if len(value) > MAX_SPEC_ITEMS:
            raise CheckpointError(f"{where} has {len(value)} entries (at most {MAX_SPEC_ITEMS}): not a model spec; "
                                  "re-create it")
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            check_spec_bounds(item, f"{where}.{key}", depth + 1)
    else:
        raise CheckpointError(f"{where} is a {type(value).__name__}: not a model spec; re-create it")


def build_architecture(arch: dict[str, Any], meta: bool = False, source: str = "checkpoint") -> nn.Module:
    """A freshly initialised module of the recorded architecture (weights are loaded afterwards).

    ``meta`` builds it on the meta device: every parameter's shape, no memory. A spec that is malformed or
    far out of bounds raises ``CheckpointError`` with one line naming ``source``, never a traceback from a
    constructor.
    """
    if not isinstance(arch, dict):
        raise CheckpointError(f"{source}: the architecture is a {type(arch).__name__}, not a spec; re-create it")
    check_spec_bounds(arch, f"{source}: architecture")
    try:
        builder = ARCHITECTURES.get(str(arch.get("type")))
    except UnknownNameError:
        raise CheckpointError(f"{source} has unknown architecture type '{arch.get('type')}'; "
                              "it was written by a newer or foreign tool") from None
    try:
        with torch.device("meta") if meta else contextlib.nullcontext():
            return builder(arch)
    except CompressError as exc:  # an unknown model name, a projector factor < 1, ...
        raise CheckpointError(f"{source}: the architecture cannot be built: {exc}") from None
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, RuntimeError) as exc:
        what = f"missing {exc}" if isinstance(exc, KeyError) else str(exc).splitlines()[0][:160] if str(exc) else ""
        raise CheckpointError(f"{source}: the architecture record is malformed ({type(exc).__name__}: {what}); "
                              "re-create the checkpoint") from None
