"""Refuse model files that do not match the SHA-256 recorded in their ``<file>.json`` sidecar.

The sidecar format is the one ``compress`` writes (``{"sha256": ..., ...}``); it is re-implemented
here because ``deploy`` must not import ``compress`` (which imports torch).
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


def read_sidecar(path: Path, trust: bool) -> dict[str, Any]:
    """The sidecar record of ``path``; verified unless ``trust`` ({} when trusted and absent or unreadable)."""
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
    if not trust and record.get("sha256") != sha256_file(path):
        raise DeployError(f"'{path}' does not match the SHA-256 in '{side.name}' (modified or partly copied); "
                          "copy it again, or pass trust=True (--trust) to use it anyway")
    return record
