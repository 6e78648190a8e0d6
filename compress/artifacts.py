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
import secrets
import stat
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

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


LOCK_FILE = ".compress.lock"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: existence check only
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _lock_holder(lock: Path) -> dict[str, Any] | None:
    try:
        holder = json.loads(lock.read_text())
        return holder if isinstance(holder, dict) and isinstance(holder.get("pid"), int) else None
    except (OSError, ValueError):
        return None


def _busy_error(folder: Path) -> ConfigError | None:
    """The error to raise when a live process holds ``folder``; None when it is free (a stale lock is removed)."""
    lock = folder / LOCK_FILE
    if not lock.exists():
        return None
    holder = _lock_holder(lock)
    if holder is None:
        # written within a moment of its creation: empty/unreadable for long means a crash mid-write
        try:
            stale = time.time() - lock.stat().st_mtime > 30
        except FileNotFoundError:
            return None
    else:
        stale = holder.get("host") == platform.node() and not _process_alive(holder["pid"])
    if stale:
        lock.unlink(missing_ok=True)
        return None
    who = "another process" if holder is None else (
        f"process {holder['pid']} on {holder.get('host')} since {holder.get('since')}")
    return ConfigError(f"'{folder}' is in use by {who}: wait for that run to finish or choose another output "
                       f"folder (if no such run exists, delete '{lock}')")


def check_folder_free(folder: str | os.PathLike[str]) -> None:
    """Fail early, before other checks, when another live process holds ``folder`` (see ``folder_lock``)."""
    error = _busy_error(Path(folder))
    if error is not None:
        raise error


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike[str]) -> Iterator[None]:
    """Hold ``folder`` (which must exist) for this process while the block runs.

    A second compress process writing into the same folder fails at once with one line naming the
    holder, instead of both overwriting each other's checkpoints. A lock left by a killed process on
    this machine is taken over; one held from another host (a shared filesystem) cannot be checked
    and is reported with how to clear it. Taking over is best effort: two processes that find the same
    stale lock in the same instant could both proceed (a window of microseconds after a crash).
    """
    folder = Path(folder)
    lock = folder / LOCK_FILE
    me = {"pid": os.getpid(), "host": platform.node(), "since": time.strftime("%Y-%m-%d %H:%M:%S"),
          "command": " ".join(sys.argv)[:300]}
    for _ in range(3):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)  # atomic: one creator wins
        except FileExistsError:
            check_folder_free(folder)  # raises for a live holder, clears a stale lock
            continue
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(me))
        break
    else:
        raise ConfigError(f"could not lock '{folder}': other processes keep taking '{lock}'; retry")
    try:
        yield
    finally:
        holder = _lock_holder(lock)
        if holder is not None and holder["pid"] == me["pid"] and holder.get("host") == me["host"]:
            lock.unlink(missing_ok=True)


def _fresh_name(folder: Path, prefix: str, suffix: str, create: Callable[[Path], None]) -> Path:
    """``create`` a path under a random name in ``folder``, retrying the rare name that is taken."""
    for _ in range(100):
        candidate = folder / f"{prefix}{secrets.token_hex(6)}{suffix}"
        try:
            create(candidate)
            return candidate
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name '{prefix}*{suffix}' in '{folder}'")


# Files and folders get the modes the user's umask allows (0666 / 0777 minus the umask), like any file the
# user creates: ``tempfile.mkstemp``/``mkdtemp`` would give 0600 / 0700 whatever the umask, and a rename
# keeps the mode, so a team sharing a runs folder or a CI artifact store could not read the artifacts.
# ``os.open``/``os.mkdir`` with the full mode let the kernel apply the umask: no need to read it (which
# means setting it, process-wide, racing other threads).
def new_temp_file(folder: Path, prefix: str, suffix: str = ".tmp") -> Path:
    """Create an empty file under a fresh name in ``folder``, with the umask's mode."""
    return _fresh_name(folder, prefix, suffix, lambda path: os.close(
        os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)))


def new_temp_folder(folder: Path, prefix: str) -> Path:
    """Create an empty folder under a fresh name in ``folder``, with the umask's mode."""
    return _fresh_name(folder, prefix, "", lambda path: os.mkdir(path, 0o777))


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it over ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = new_temp_file(path.parent, prefix=f".{path.name}.")
    mode = stat.S_IMODE(tmp_path.stat().st_mode)  # what the umask allows
    try:
        yield tmp_path
        with open(tmp_path, "rb") as f:  # make the bytes durable before they get the real name
            os.fsync(f.fileno())
        os.chmod(tmp_path, mode)  # a writer may have replaced the file with a private one (safetensors does)
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
