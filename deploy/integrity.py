"""Refuse model files that do not match the SHA-256 recorded in their ``<file>.json`` sidecar.

The sidecar format is the one ``compress`` writes (``{"sha256": ..., ...}``); it is re-implemented
here because ``deploy`` must not import ``compress`` (which imports torch).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from deploy.errors import DeployError


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def read_sidecar(path: Path, trust: bool) -> dict[str, Any]:
    """The sidecar record of ``path``; verified unless ``trust`` ({} when trusted and absent)."""
    side = path.with_name(path.name + ".json")
    if not side.exists():
        if trust:
            return {}
        raise DeployError(f"'{path}' has no sidecar '{side.name}' to verify it against; "
                          "copy the sidecar along with the model, or pass trust=True (--trust)")
    try:
        record = json.loads(side.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        if trust:
            return {}
        raise DeployError(f"sidecar '{side}' is not valid JSON; copy it again or pass trust=True (--trust)") from None
    if not trust and record.get("sha256") != sha256_file(path):
        raise DeployError(f"'{path}' does not match the SHA-256 in '{side.name}' (modified or partly copied); "
                          "copy it again, or pass trust=True (--trust) to use it anyway")
    return record
