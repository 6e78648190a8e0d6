"""Artifacts on disk: atomic writes, SHA-256 sidecars, safetensors checkpoints.

Every artifact ``X`` gets a sidecar ``X.json`` that records what produced it, from which inputs
(hashes) and with which library versions, plus the artifact's own SHA-256. Files are written to a
temporary name in the same folder and renamed, so a killed process never leaves a half-written
file under the real name. Checkpoints are safetensors (tensors only) + JSON: nothing on load can
execute code.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

from compress.errors import CheckpointError, ConfigError, IntegrityError

FORMAT = "compress/1"


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def sidecar_path(path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".json")


def ensure_writable_dir(path: str | os.PathLike[str]) -> Path:
    """Create ``path`` (and parents) or explain in one line why it cannot be an output folder."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"output path '{path}' is a file, not a folder: pass a folder path")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create output folder '{path}': {exc.strerror}; choose a writable path") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"output folder '{path}' is not writable: choose another path or fix its permissions")
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it over ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as f:  # make the bytes durable before they get the real name
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def read_json(path: str | os.PathLike[str]) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"'{path}' does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"'{path}' is not valid JSON ({exc}); delete it and re-create the artifact") from None


def environment() -> dict[str, str]:
    """Library versions and host, recorded in every sidecar and report."""
    env = {"python": sys.version.split()[0], "platform": platform.platform(), "machine": platform.machine()}
    for module in ("torch", "torchvision", "onnx", "onnxruntime", "tensorrt", "numpy"):
        mod = sys.modules.get(module)
        if mod is not None:
            env[module] = str(getattr(mod, "__version__", "?"))
    from compress import __version__

    env["compress"] = __version__
    return env


def write_sidecar(
    artifact: str | os.PathLike[str],
    kind: str,
    meta: dict[str, Any] | None = None,
    inputs: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Write ``artifact.json`` with the artifact's hash, its inputs' hashes and the environment."""
    record = {
        "format": FORMAT,
        "kind": kind,
        "file": Path(artifact).name,
        "sha256": sha256_file(artifact),
        "inputs": inputs or {},
        "environment": environment(),
        **(meta or {}),
    }
    write_json(sidecar_path(artifact), record)
    return record


def read_sidecar(artifact: str | os.PathLike[str], verify: bool = True) -> dict[str, Any]:
    """Read ``artifact.json``; with ``verify`` refuse an artifact whose hash differs from the record."""
    artifact = Path(artifact)
    if not artifact.exists():
        raise CheckpointError(f"'{artifact}' does not exist: check the path")
    side = sidecar_path(artifact)
    if not side.exists():
        raise IntegrityError(
            f"'{artifact}' has no sidecar '{side.name}' (incomplete write or foreign file); "
            "re-create it, or pass --trust to use it anyway"
        )
    record = read_json(side)
    if verify and record.get("sha256") != sha256_file(artifact):
        raise IntegrityError(
            f"'{artifact}' does not match the hash in '{side.name}' (modified or partly written); "
            "re-create it, or pass --trust to use it anyway"
        )
    return record
