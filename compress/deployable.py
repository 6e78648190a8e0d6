"""Deployable modules on disk: rebuilt from their architecture spec, whatever trained them.

A deployable module implements ``architecture() -> dict`` (a JSON spec with a ``type``). Builders for
each type are registered in ``ARCHITECTURES``; ``load_deployable`` rebuilds the module and loads its
weights, so export and validation never need to know the training method.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from torch import nn

from compress.checkpoint import load_tensors, save_tensors
from compress.data.preprocessing import Preprocessing
from compress.errors import CheckpointError, UnknownNameError
from compress.models import ClassifierModel, ModelSpec, build_model, count_parameters
from compress.registry import Registry

ARCHITECTURES: Registry[Callable[[dict[str, Any]], nn.Module]] = Registry("architecture")


def classifier_architecture(model: ClassifierModel) -> dict[str, Any]:
    return {"type": "classifier", "model": model.spec.to_dict()}


ARCHITECTURES.add("classifier", lambda arch: build_model(ModelSpec.from_dict(arch["model"])))


def architecture_of(module: nn.Module) -> dict[str, Any]:
    if isinstance(module, ClassifierModel):
        return classifier_architecture(module)
    if hasattr(module, "architecture"):
        return module.architecture()  # type: ignore[no-any-return]
    raise TypeError(f"{type(module).__name__} has no architecture() spec and cannot be saved as deployable")


def build_architecture(arch: dict[str, Any]) -> nn.Module:
    import compress.distill  # noqa: F401  (registers the distilled-student architectures)

    try:
        builder = ARCHITECTURES.get(str(arch.get("type")))
    except UnknownNameError:
        raise CheckpointError(f"checkpoint has unknown architecture type '{arch.get('type')}'; "
                              "it was written by a newer or foreign tool") from None
    return builder(arch)


def save_deployable(path: str | os.PathLike[str], module: nn.Module, preprocessing: Preprocessing,
                    meta: dict[str, Any] | None = None, inputs: dict[str, str] | None = None) -> dict[str, Any]:
    """Save weights + sidecar (architecture, preprocessing, parameter count, metrics, hashes)."""
    record = {
        "architecture": architecture_of(module),
        "preprocessing": preprocessing.to_dict(),
        "parameters": count_parameters(module),
        **(meta or {}),
    }
    return save_tensors(path, module.state_dict(), "deployable", record, inputs)


def load_deployable(path: str | os.PathLike[str], trust: bool = False) -> tuple[nn.Module, Preprocessing, dict[str, Any]]:
    """Rebuild a deployable module from ``path`` (eval mode, CPU) with its preprocessing and sidecar."""
    path = Path(path)
    if path.is_dir():
        path = path / "model.safetensors"
    tensors, record = load_tensors(path, verify=not trust)
    if "architecture" not in record or "preprocessing" not in record:
        raise CheckpointError(f"'{path}' is not a deployable checkpoint (no architecture/preprocessing in its sidecar)")
    module = build_architecture(record["architecture"])
    try:
        module.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise CheckpointError(f"'{path}' weights do not fit its recorded architecture ({first[:160]})") from None
    return module.eval(), Preprocessing.from_dict(record["preprocessing"]), record
