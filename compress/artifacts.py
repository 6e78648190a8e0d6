"""Artifacts on disk: atomic writes, SHA-256 sidecars, safetensors checkpoints.

Every artifact ``X`` gets a sidecar ``X.json`` that records what produced it, from which inputs
(hashes) and with which library versions, plus the artifact's own SHA-256. Files are written to a
temporary name in the same folder and renamed, so a killed process never leaves a half-written
file under the real name; a full disk raises ``DiskFull`` (one line: the path and the space it needs)
instead, and the previous file stays. Temporary names carry the writer's host and pid, so what a killed
process left behind is recognised and swept (``sweep_litter``). Checkpoints are safetensors (tensors
only) + JSON: nothing on load can execute code.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import platform
import re
import secrets
import shutil
import stat
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import compress.structured as structured
from compress.errors import CheckpointError, CompressError, ConfigError, DiskFull, IntegrityError

FORMAT = "compress/1"
MAX_SIDECAR_BYTES = 16 << 20  # real sidecars are a few KB: a larger one is not ours and is not read into memory


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
def output_folder(path: str | os.PathLike[str]) -> Iterator[Path]:
    """``ensure_writable_dir(path)`` for a command's output. If the command fails, the folders created here
    are removed again while they are empty, so a failed command leaves the file system as it was."""
    path = Path(path)
    created = [p for p in (path, *path.parents) if not p.exists()]  # deepest first
    folder = ensure_writable_dir(path)
    try:
        yield folder
    except BaseException:
        for made in created:
            try:
                made.rmdir()  # refuses a folder that is not empty: what was written stays
            except OSError:
                break
        raise


# ---------------------------------------------------------------- full disks

_FULL_DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
# libraries that turn an OSError into their own exception keep only its text (safetensors does)
_FULL_DISK_TEXTS = ("No space left on device", "Disk quota exceeded")


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc``, or an error it was raised from, is a full disk or an exhausted quota."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, OSError) and cause.errno in _FULL_DISK_ERRNOS:
            return True
        if any(text in str(cause) for text in _FULL_DISK_TEXTS):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"


def free_bytes(path: str | os.PathLike[str]) -> int | None:
    """Bytes free on the filesystem that holds (or would hold) ``path``; None when it cannot be asked."""
    path = Path(path)
    existing = next((p for p in (path, *path.parents) if p.exists()), Path("."))
    try:
        return shutil.disk_usage(existing).free
    except OSError:
        return None


def _free_space(path: Path) -> str:
    free = free_bytes(path)
    return "free space unknown" if free is None else f"{human_bytes(free)} free"


def disk_full_error(exc: BaseException, path: str | os.PathLike[str], *, needed: int | None = None,
                    written: int = 0) -> DiskFull | None:
    """The one-line ``DiskFull`` for ``exc`` when a full disk caused it (else None): it names ``path``, the
    space it needs (``needed`` when known, else more than the ``written`` bytes) and the space left."""
    if isinstance(exc, DiskFull) or not is_disk_full(exc):
        return None
    return _disk_full(path, needed, written)


def _disk_full(path: str | os.PathLike[str], needed: int | None, written: int) -> DiskFull:
    path = Path(path)
    need = (f"about {human_bytes(needed)}" if needed else
            f"more than the {human_bytes(written)} written when the disk filled" if written else "more space")
    return DiskFull(f"disk full: writing '{path}' needs {need} ({_free_space(path)} there); free up space or "
                    "choose another output folder (files already there are unchanged)")


# ---------------------------------------------------------------- every write: one line for what went wrong

# Native writers (OpenVINO's C++ serializer) report any failed stream so, without the errno behind it.
_STREAM_FAILURES = ("basic_ios::clear", "iostream error")
_MIN_FREE = 1 << 20  # a failed stream with less than this free (and no size known) is a full disk


def write_error(exc: BaseException, path: str | os.PathLike[str], *, needed: int | None = None, written: int = 0,
                own: tuple[str | os.PathLike[str], ...] = ()) -> CompressError | None:
    """The one line for a failed write of ``path`` (None when ``exc`` is not one): ``DiskFull`` for a full
    disk, by its errno, its text, or a native writer's failed stream where less than ``needed`` is free;
    a ``ConfigError`` naming ``path`` for any other failure of the file system (permissions, a folder where
    the file goes). ``own`` are the other paths the write touches (its temporary file)."""
    if isinstance(exc, DiskFull):
        return None
    if isinstance(exc, OSError) and _is_device(path):  # /dev/full: its "full disk" is no disk to free up
        return ConfigError(f"cannot write '{path}' ({exc.strerror or type(exc).__name__}): choose a writable path")
    full = disk_full_error(exc, path, needed=needed, written=written)
    if full is not None:
        return full
    if isinstance(exc, CompressError):  # an error of ours raised from a full disk was handled above
        return None
    text = str(exc)
    if any(failure in text for failure in _STREAM_FAILURES):
        free = free_bytes(path)
        if free is not None and free < (needed or _MIN_FREE):
            return _disk_full(path, needed, written)
        return ConfigError(f"cannot write '{path}' (the writer's stream failed with {human_bytes(free or 0)} free): "
                           "check that the folder is writable")
    ours = {os.fspath(p) for p in (path, *own)}
    if isinstance(exc, OSError) and (exc.filename is None or os.fspath(exc.filename) in ours):
        reason = exc.strerror or type(exc).__name__
        return ConfigError(f"cannot write '{path}' ({reason}): choose a writable path")
    return None


def _is_device(path: str | os.PathLike[str]) -> bool:
    try:
        return not stat.S_ISREG(os.stat(path).st_mode) and not stat.S_ISDIR(os.stat(path).st_mode)
    except OSError:
        return False


@contextlib.contextmanager
def writing(path: str | os.PathLike[str], needed_bytes: int | None = None) -> Iterator[None]:
    """Run a library's write of ``path`` (OpenVINO's ``save_model``, an append to a summary file): whatever
    fails becomes ``write_error``'s one line."""
    try:
        yield
    except Exception as exc:
        error = write_error(exc, path, needed=needed_bytes)
        if error is None:
            raise
        raise error from None


def check_output_file(path: str | os.PathLike[str], what: str, example: str = "out.txt") -> Path:
    """Refuse, before any work, an output file that cannot be written: a folder, a path under a file, a
    read-only file or folder. ``what`` names the option (``--junit``). Missing folders are fine (created)."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{what} '{path}' is a folder: name a file, e.g. '{path / example}'")
    existing = next((p for p in path.parents if p.exists()), Path("."))
    if not existing.is_dir():
        raise ConfigError(f"{what} '{path}': '{existing}' is a file, not a folder; choose another path")
    target = path if path.exists() else existing
    if not os.access(target, os.W_OK) or not os.access(existing, os.X_OK):
        raise ConfigError(f"{what} '{path}': '{target}' is not writable; choose a writable path")
    return path


# ---------------------------------------------------------------- litter of killed processes

def _host_tag() -> str:
    return hashlib.sha1(platform.node().encode()).hexdigest()[:8]


def owner_tag() -> str:
    """``<host>-<pid>``: put in temporary names so ``sweep_litter`` knows whether their writer still lives."""
    return f"{_host_tag()}-{os.getpid()}"


# hidden names ending in ".<host>-<pid>.<random>.tmp" (atomic writes) or "-<host>-<pid>.<random>.tmp" (staging)
_LITTER = re.compile(r"^\..*[.-](?P<host>[0-9a-f]{8})-(?P<pid>\d{1,9})\.[a-z0-9_]+\.tmp$")


def sweep_litter(folder: str | os.PathLike[str], levels: int = 0) -> list[Path]:
    """Remove what killed compress processes on this machine left in ``folder`` (and ``levels`` of its
    subfolders): temporary files of atomic writes and export staging folders whose process is gone. A live
    process's are kept. Returns what was removed."""
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return []
    removed = []
    for entry in entries:
        match = _LITTER.match(entry.name)
        if match is None:
            if levels > 0 and entry.is_dir() and not entry.is_symlink():
                removed += sweep_litter(entry, levels - 1)
            continue
        if match["host"] != _host_tag() or _process_alive(int(match["pid"])):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


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
        holder = structured.read_json(lock, f"lock '{lock}'", max_bytes=64 << 10)
    except CompressError:  # missing, partly written, or not ours
        return None
    return holder if isinstance(holder, dict) and isinstance(holder.get("pid"), int) else None


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
        try:
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps(me))
        except OSError as exc:
            lock.unlink(missing_ok=True)  # an empty lock would hold the folder for 30 s
            raise disk_full_error(exc, lock) or ConfigError(f"cannot write '{lock}': {exc.strerror}") from None
        break
    else:
        raise ConfigError(f"could not lock '{folder}': other processes keep taking '{lock}'; retry")
    sweep_litter(folder, levels=1)  # what a killed run left here (a pipeline's: in its stage folders)
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


def new_temp_folder(folder: Path, prefix: str, suffix: str = "") -> Path:
    """Create an empty folder under a fresh name in ``folder``, with the umask's mode."""
    return _fresh_name(folder, prefix, suffix, lambda path: os.mkdir(path, 0o777))


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], needed_bytes: int | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it over ``path`` only if the block succeeds.

    A full disk raises ``DiskFull`` naming ``path`` and the space it needs (``needed_bytes``, when the
    caller knows it); any other failure of the file system one ``ConfigError`` naming ``path`` (never the
    hidden temporary name). The temporary name carries ``owner_tag()``, so ``sweep_litter`` can tell a killed
    writer's leftover from a live one's.
    """
    path = Path(path)
    tmp_path: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp_path = new_temp_file(path.parent, prefix=f".{path.name}.{owner_tag()}.")
        mode = stat.S_IMODE(tmp_path.stat().st_mode)  # what the umask allows
        yield tmp_path
        with open(tmp_path, "rb") as f:  # make the bytes durable before they get the real name
            os.fsync(f.fileno())
        os.chmod(tmp_path, mode)  # a writer may have replaced the file with a private one (safetensors does)
        os.replace(tmp_path, path)
    except Exception as exc:
        error = write_error(exc, path, needed=needed_bytes, written=_discard(tmp_path),  # free space after it
                            own=(path.parent, *([tmp_path] if tmp_path is not None else [])))
        if error is None:
            raise
        raise error from None
    finally:
        _discard(tmp_path)


def _discard(tmp: Path | None) -> int:
    """Remove a temporary file; the bytes it had (0 if there is none)."""
    if tmp is None or not tmp.exists():
        return 0
    size = tmp.stat().st_size
    tmp.unlink()
    return size


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def json_text(data: Any) -> str:
    """How every JSON artifact is written: indented, keys in the given order, one trailing newline."""
    return json.dumps(data, indent=2, sort_keys=False, default=str) + "\n"


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    atomic_write_text(path, json_text(data))


def read_json(path: str | os.PathLike[str], max_bytes: int = structured.MAX_BYTES) -> Any:
    """A JSON file of ours (a sidecar, a record), read within ``compress.structured``'s limits."""
    return structured.read_json(path, f"'{path}'", max_bytes=max_bytes, fix="delete it and re-create the artifact")


def environment() -> dict[str, str]:
    """Library versions and host, recorded in every sidecar and report."""
    env = {"python": sys.version.split()[0], "platform": platform.platform(), "machine": platform.machine()}
    for module in ("torch", "torchvision", "onnx", "onnxruntime", "tensorrt", "numpy"):
        mod = sys.modules.get(module)
        if mod is not None:
            env[module] = str(getattr(mod, "__version__", "?"))
    from compress.version import __version__

    env["compress"] = __version__
    return env


def sidecar_record(
    artifact: str | os.PathLike[str],
    kind: str,
    meta: dict[str, Any] | None = None,
    inputs: dict[str, str] | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    """The sidecar of ``artifact``: its hash, its inputs' hashes and the environment. ``name`` is the
    artifact's file name when its bytes are still at a temporary path."""
    return {
        "format": FORMAT,
        "kind": kind,
        "file": name or Path(artifact).name,
        "sha256": sha256_file(artifact),
        "inputs": inputs or {},
        "environment": environment(),
        **(meta or {}),
    }


def write_sidecar(
    artifact: str | os.PathLike[str],
    kind: str,
    meta: dict[str, Any] | None = None,
    inputs: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Write ``artifact.json`` with the artifact's hash, its inputs' hashes and the environment."""
    record = sidecar_record(artifact, kind, meta, inputs)
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
    record = read_json(side, MAX_SIDECAR_BYTES)
    if not isinstance(record, dict):
        raise IntegrityError(f"'{side}' does not hold a sidecar record (a JSON object); re-create the artifact")
    if verify and record.get("sha256") != sha256_file(artifact):
        raise IntegrityError(
            f"'{artifact}' does not match the hash in '{side.name}' (modified or partly written); "
            "re-create it, or pass --trust to use it anyway"
        )
    return record
