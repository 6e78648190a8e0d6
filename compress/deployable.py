"""Deployable modules on disk: weights + a sidecar recording how to rebuild them, whatever trained them.

The architecture spec (``architecture()``) and its builders live with the models
(``compress.models.architecture``); loading a checkpoint needs nothing else, in particular no
training method, so export and validation never import one.
"""

from __future__ import annotations

import os
from typing import Any

from torch import nn

from compress.checkpoint import load_tensors, save_tensors
from compress.data.preprocessing import Preprocessing
from compress.errors import CheckpointError
from compress.models import architecture_of, build_architecture, count_parameters
from compress.record import CheckpointRecord, resolve_checkpoint


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


def load_deployable(path: str | os.PathLike[str], trust: bool = False) -> tuple[nn.Module, Preprocessing, CheckpointRecord]:
    """Rebuild a deployable module from ``path`` (a file or a run folder; eval mode, CPU) with its
    preprocessing and typed record."""
    path = resolve_checkpoint(path)
    tensors, raw = load_tensors(path, verify=not trust)
    record = CheckpointRecord.from_dict(raw, str(path))
    module = build_architecture(record.architecture)
    try:
        module.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise CheckpointError(f"'{path}' weights do not fit its recorded architecture ({first[:160]})") from None
    return module.eval(), record.preprocessing, record
