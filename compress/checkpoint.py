"""Checkpoints: safetensors for tensors, JSON for everything else. Never pickles.

A checkpoint ``name.safetensors`` holds the tensors; its sidecar ``name.safetensors.json`` holds the
architecture spec (enough to rebuild the module without knowing how it was trained), preprocessing,
classes, metrics and hashes. Nested states (optimizer) are flattened to ``prefix.path.to.tensor`` keys
with their non-tensor skeleton in JSON.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from compress.artifacts import atomic_path, read_sidecar, sidecar_path, sidecar_record, write_json
from compress.errors import CheckpointError
from compress.structured import parse_json

_TENSOR = "__tensor__"


def flatten_state(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Move every tensor of a nested dict/list into ``tensors``; return the JSON-able skeleton."""
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj.detach().cpu().contiguous()
        return {_TENSOR: prefix}
    if isinstance(obj, dict):
        return {"__dict__": [[flatten_state(k, f"{prefix}.k{i}", tensors), flatten_state(v, f"{prefix}.{i}", tensors)]
                             for i, (k, v) in enumerate(obj.items())]}
    if isinstance(obj, (list, tuple)):
        kind = "__list__" if isinstance(obj, list) else "__tuple__"
        return {kind: [flatten_state(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} in a checkpoint")


def unflatten_state(skeleton: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(skeleton, dict):
        if _TENSOR in skeleton:
            return tensors[skeleton[_TENSOR]]
        if "__dict__" in skeleton:
            return {unflatten_state(k, tensors): unflatten_state(v, tensors) for k, v in skeleton["__dict__"]}
        if "__list__" in skeleton:
            return [unflatten_state(v, tensors) for v in skeleton["__list__"]]
        if "__tuple__" in skeleton:
            return tuple(unflatten_state(v, tensors) for v in skeleton["__tuple__"])
    return skeleton


def save_tensors(
    path: str | os.PathLike[str],
    tensors: dict[str, torch.Tensor],
    kind: str,
    meta: dict[str, Any] | None = None,
    inputs: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Write tensors atomically as safetensors, then the sidecar. Returns the sidecar record."""
    from safetensors.torch import save_file

    path = Path(path)
    # safetensors refuses tensors that share storage; clone those views once.
    seen: dict[int, str] = {}
    clean: dict[str, torch.Tensor] = {}
    for key, value in tensors.items():
        value = value.detach().cpu().contiguous()
        ptr = value.untyped_storage().data_ptr() if value.numel() else -1
        clean[key] = value.clone() if ptr in seen and ptr != -1 else value
        seen[ptr] = key
    # The record also goes into the safetensors header: the file stays self-describing if a crash
    # lands between the sidecar's rename and its own (two files cannot be renamed atomically together).
    header = {"format": "compress/1", "kind": kind, "record": json.dumps({**(meta or {}), "inputs": inputs or {}},
                                                                          default=str)}
    # data + header (the record, and per tensor its name, dtype, shape and offsets)
    needed = sum(t.numel() * t.element_size() + len(k) + 64 for k, t in clean.items()) + len(json.dumps(header))
    with atomic_path(path, needed_bytes=needed) as tmp:
        save_file(clean, str(tmp), metadata=header)
        # The sidecar is written while the tensors still have their temporary name: a full disk then
        # leaves the previous pair as it was, never new tensors beside an old sidecar.
        record = sidecar_record(tmp, kind, meta, inputs, name=path.name)
        write_json(sidecar_path(path), record)
    return record


def tensor_shapes(path: str | os.PathLike[str]) -> dict[str, tuple[int, ...]]:
    """Every tensor's shape from the safetensors header alone: nothing is loaded (the header is capped at
    100 MB by safetensors, and its offsets are checked against the file's size)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"'{path}' is not a readable safetensors checkpoint ({exc}); re-create it") from None


def check_finite(tensors: dict[str, torch.Tensor], source: str | os.PathLike[str]) -> None:
    """Refuse weights holding NaN or Inf: a model computed from them is meaningless, whatever it scores."""
    for key, value in tensors.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            bad = int((~torch.isfinite(value)).sum())
            raise CheckpointError(f"'{source}' holds non-finite weights ({bad} NaN/Inf values in '{key}'): "
                                  "the run that wrote it diverged or the file was altered; use an earlier checkpoint")


def read_weights(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file, all finite (see ``check_finite``)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"'{path}' is not a readable safetensors checkpoint ({exc}); re-create it") from None
    check_finite(tensors, path)
    return tensors


def load_tensors(path: str | os.PathLike[str], verify: bool = True) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Load a safetensors checkpoint (finite weights only) and its verified sidecar."""
    path = Path(path)
    record = read_sidecar(path, verify=verify)
    return read_weights(path), record


def load_self_described(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Load tensors and the record stored in the file's own header (no sidecar needed).

    For files whose consistency safetensors itself guarantees (the header indexes every byte, so a
    truncated file does not load) and that only this tool writes, such as the resume state.
    """
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"'{path}' does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
        tensors = load_file(str(path))
        record = parse_json(header["record"], f"'{path}' record", fix="delete it to start over")
    except (SafetensorError, OSError, ValueError, KeyError) as exc:
        raise CheckpointError(f"'{path}' is not a readable compress checkpoint ({type(exc).__name__}: {exc}); "
                              "delete it to start over") from None
    if not isinstance(record, dict):
        raise CheckpointError(f"'{path}' is not a compress checkpoint (its record is not a JSON object); "
                              "delete it to start over")
    return tensors, record


# Where training scripts put the weights inside a checkpoint dict, most common first: Lightning and
# timm's train.py (``state_dict``), many repos (``model``, ``module``, ``net``), EMA copies last, so a file
# holding both gives the raw weights.
NESTED_KEYS = ("state_dict", "model", "module", "net", "network", "ema", "model_ema", "state_dict_ema")


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def find_state_dict(obj: Any, source: str) -> dict[str, torch.Tensor]:
    """The name -> tensor mapping inside a loaded checkpoint: the object itself, or a dict nested under one
    of ``NESTED_KEYS`` (searched one level deeper too, e.g. ``{"model": {"state_dict": ...}}``).

    Non-tensor entries beside the weights (``num_batches_tracked`` ints, metadata) are dropped.
    """
    if _is_state_dict(obj):
        return obj
    if isinstance(obj, dict):
        for key in NESTED_KEYS:
            inner = obj.get(key)
            if _is_state_dict(inner):
                return inner
            if isinstance(inner, dict):
                for nested in NESTED_KEYS:
                    if _is_state_dict(inner.get(nested)):
                        return inner[nested]
        tensors = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
        if len(tensors) > len(obj) / 2:  # a state dict with a few stray metadata entries
            return tensors
        keys = ", ".join(repr(k) for k in list(obj)[:6])
        raise CheckpointError(f"'{source}' holds no state_dict (name -> tensor) at the top or under "
                              f"{'/'.join(NESTED_KEYS[:3])}/...; its keys are {keys}: save model.state_dict()")
    raise CheckpointError(f"'{source}' holds a {type(obj).__name__}, not a state_dict (name -> tensor); "
                          "save model.state_dict()")


def _torch_load(path: Path) -> Any:
    """``torch.load`` that only unpickles tensors and plain containers (plus argparse.Namespace, which
    timm's train.py stores as ``args`` and which only sets attributes), so a crafted file cannot run code."""
    import argparse

    with torch.serialization.safe_globals([argparse.Namespace]):
        return torch.load(path, map_location="cpu", weights_only=True)


def load_external_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """A third-party weights file: safetensors, or a PyTorch file loaded with ``weights_only=True``, as users
    have them (a plain state dict, or one nested in a training checkpoint, see ``find_state_dict``).

    ``weights_only`` makes torch's unpickler refuse anything but tensors and plain containers, so a
    crafted file cannot run code; such a file is reported, not loaded.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"weights file '{path}' does not exist: check the path")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"'{path}' is not a readable safetensors file ({exc})") from None
        check_finite(state, path)
        return state
    try:
        state = _torch_load(path)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError, ... for bad files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "weights_only" in str(exc) or "Unsupported global" in str(exc):
            raise CheckpointError(
                f"refused to load '{path}': it contains Python objects that could run code ({first[:120]}); "
                "save a plain state_dict (or safetensors) instead"
            ) from None
        raise CheckpointError(f"'{path}' is not a readable PyTorch weights file ({first[:160]})") from None
    state = find_state_dict(state, str(path))
    check_finite(state, path)
    return state
