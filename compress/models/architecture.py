"""Deployable modules rebuilt from their architecture spec, whatever trained them.

A deployable module implements ``architecture() -> dict``: a JSON spec with a ``type``. Each type has a
builder registered in ``ARCHITECTURES`` (``@ARCHITECTURES.register(type)``) next to the module it
builds, so loading a checkpoint needs the models package only, never the method that trained it.
"""

from __future__ import annotations

from typing import Any, Callable

from torch import nn

from compress.errors import CheckpointError, UnknownNameError
from compress.models.base import ModelSpec
from compress.models.zoo import build_model
from compress.registry import Registry

ARCHITECTURES: Registry[Callable[[dict[str, Any]], nn.Module]] = Registry("architecture")


@ARCHITECTURES.register("classifier")
def build_classifier(arch: dict[str, Any]) -> nn.Module:
    """A zoo model: ``{"type": "classifier", "model": ModelSpec fields}``."""
    return build_model(ModelSpec.from_dict(arch["model"]))


def architecture_of(module: nn.Module) -> dict[str, Any]:
    """The spec that rebuilds ``module``; a module without one cannot be saved as deployable."""
    if not hasattr(module, "architecture"):
        raise TypeError(f"{type(module).__name__} has no architecture() spec and cannot be saved as deployable")
    return module.architecture()  # type: ignore[no-any-return]


def build_architecture(arch: dict[str, Any]) -> nn.Module:
    """A freshly initialised module of the recorded architecture (weights are loaded afterwards)."""
    try:
        builder = ARCHITECTURES.get(str(arch.get("type")))
    except UnknownNameError:
        raise CheckpointError(f"checkpoint has unknown architecture type '{arch.get('type')}'; "
                              "it was written by a newer or foreign tool") from None
    return builder(arch)
