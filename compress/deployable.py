"""Deployable modules on disk: weights + a sidecar recording how to rebuild them, whatever trained them.

The architecture spec (``architecture()``) and its builders live with the models
(``compress.models.architecture``); loading a checkpoint needs nothing else, in particular no
training method, so export and validation never import one.
"""

from __future__ import annotations

import math
import os
from typing import Any

from torch import nn

from compress.artifacts import read_sidecar
from compress.checkpoint import read_weights, save_tensors, tensor_shapes
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


MAX_IMAGE_SIZE = 2048  # px: a recorded input size beyond it is damage, and export would trace at that size


def _check_recorded_input(pre: Preprocessing, path: os.PathLike[str]) -> None:
    """The recorded input is one a model can have: export and validation build tensors of this size."""
    sizes = [pre.image_size] + ([pre.resize_size] if pre.resize_size is not None else [])
    if not all(1 <= size <= MAX_IMAGE_SIZE for size in sizes):
        raise CheckpointError(f"'{path}' records an input size of {sizes} px, outside 1..{MAX_IMAGE_SIZE}: the "
                              "record is damaged or crafted; re-create the checkpoint")
    stats = pre.mean + pre.std
    if pre.channels not in (1, 3) or len(pre.mean) != pre.channels or len(pre.std) != pre.channels \
            or not all(math.isfinite(v) for v in stats) or min(pre.std) <= 0:
        raise CheckpointError(f"'{path}' records unusable preprocessing ({pre.channels} channels, mean "
                              f"{list(pre.mean)}, std {list(pre.std)}); re-create the checkpoint")


def _check_fits(skeleton: nn.Module, shapes: dict[str, tuple[int, ...]], path: os.PathLike[str]) -> None:
    """Every tensor the recorded architecture declares is in the file with the same shape, and no other."""
    declared = {key: tuple(value.shape) for key, value in skeleton.state_dict().items()}
    missing = [key for key in declared if key not in shapes]
    unexpected = [key for key in shapes if key not in declared]
    if missing or unexpected:
        what = f"'{missing[0]}' is missing" if missing else f"'{unexpected[0]}' is unexpected"
        raise CheckpointError(f"'{path}' weights do not fit its recorded architecture ({what}; {len(missing)} "
                              f"missing, {len(unexpected)} unexpected tensors); re-create the checkpoint")
    for key, shape in declared.items():
        if shapes[key] != shape:
            raise CheckpointError(f"'{path}' weights do not fit its recorded architecture ('{key}' is "
                                  f"{list(shapes[key])} in the file, {list(shape)} in the record); "
                                  "re-create the checkpoint")


def load_deployable(path: str | os.PathLike[str], trust: bool = False) -> tuple[nn.Module, Preprocessing, CheckpointRecord]:
    """Rebuild a deployable module from ``path`` (a file or a run folder; eval mode, CPU) with its
    preprocessing and typed record.

    Nothing is allocated from the record before it is checked: the architecture is first built on the
    meta device and compared with the shapes in the safetensors header, so the module that is then built
    is as large as the weights in the file, whatever the record claims. Non-finite weights are refused.
    """
    path = resolve_checkpoint(path)
    record = CheckpointRecord.from_dict(read_sidecar(path, verify=not trust), str(path))
    _check_recorded_input(record.preprocessing, path)
    source = f"'{path}'"
    _check_fits(build_architecture(record.architecture, meta=True, source=source), tensor_shapes(path), path)
    tensors = read_weights(path)
    module = build_architecture(record.architecture, source=source)
    try:
        module.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise CheckpointError(f"'{path}' weights do not fit its recorded architecture ({first[:160]})") from None
    return module.eval(), record.preprocessing, record
