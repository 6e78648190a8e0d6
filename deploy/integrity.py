"""Refuse model files that do not match the SHA-256 recorded in their ``<file>.json`` sidecar.

The sidecar format is the one ``compress`` writes (``{"sha256": ..., ...}``); it is re-implemented
here because ``deploy`` must not import ``compress`` (which imports torch).

The hash must cover the bytes the runtime reads, not a file the sidecar names: so the runners are
handed the very bytes that were hashed (``read_model_bytes``), and a file the runtime finds on its
own (an OpenVINO IR's ``.bin``) is derived the way the runtime derives it, never taken from the sidecar.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from deploy.errors import DeployError
from deploy.metadata import MAX_METADATA_CHARS, parse_json


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


MAX_MODEL_BYTES = 2 << 30  # an ONNX file cannot exceed 2 GiB (protobuf); edge engines and IRs are far smaller


def read_model_bytes(path: Path) -> bytes:
    """The whole file, bounded: the runners load these bytes, the very ones whose hash was checked."""
    size = path.stat().st_size
    if size > MAX_MODEL_BYTES:
        raise DeployError(f"model file '{path}' is {size >> 20} MiB, more than the {MAX_MODEL_BYTES >> 30} GiB "
                          "an edge model file can be; check the path")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DeployError(f"cannot read model file '{path}': {exc.strerror or exc}") from None


def _read_record(side: Path) -> dict[str, Any]:
    """The sidecar's JSON object; a FIFO, a huge file or a list/string is refused, not read or indexed."""
    if not side.is_file():
        raise DeployError(f"sidecar '{side}' is not a regular file; copy the sidecar written with the model")
    if side.stat().st_size > MAX_METADATA_CHARS:
        raise DeployError(f"sidecar '{side}' is {side.stat().st_size} bytes, far more than a sidecar holds; "
                          "copy the sidecar written with the model")
    try:
        text = side.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DeployError(f"sidecar '{side}' is not UTF-8 text; copy the sidecar written with the model") from None
    record = parse_json(text, f"sidecar '{side}'")
    if not isinstance(record, dict):
        raise DeployError(f"sidecar '{side}' holds a JSON {type(record).__name__}, not the object compress writes; "
                          "copy the sidecar written with the model")
    return record


def read_sidecar(path: Path, trust: bool, content: bytes | None = None) -> dict[str, Any]:
    """The sidecar record of ``path``; verified unless ``trust`` ({} when trusted and absent or unreadable).
    ``content``: the file's bytes as already read for the runtime; the hash is then taken of them."""
    side = path.with_name(path.name + ".json")
    if not side.exists():
        if trust:
            return {}
        raise DeployError(f"'{path}' has no sidecar '{side.name}' to verify it against; "
                          "copy the sidecar along with the model, or pass trust=True (--trust)")
    try:
        record = _read_record(side)
    except DeployError as exc:
        if trust:
            return {}
        raise DeployError(f"{exc}, or pass trust=True (--trust)") from None
    actual = hashlib.sha256(content).hexdigest() if content is not None else sha256_file(path)
    if not trust and record.get("sha256") != actual:
        raise DeployError(f"'{path}' does not match the SHA-256 in '{side.name}' (modified or partly copied); "
                          "copy it again, or pass trust=True (--trust) to use it anyway")
    return record
