"""Whether a command may write into an output folder: checked before anything is read or written.

The folder must be a folder (or not exist yet), writable, and hold none of the command's inputs:
distilling into the teacher's own folder would replace the teacher, exporting into a checkpoint's
folder would mix the export with the run that made it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from compress.errors import ConfigError


def check_output_path(out: Path, inputs: Iterable[object] = ()) -> None:
    """Raise a ConfigError if ``out`` cannot be the output folder of a command reading ``inputs``.

    ``inputs`` are paths (files or folders) the command reads; names that are not on disk (a zoo
    model, ``imagenet``), ``None`` and objects that are not paths (modules passed from Python) are ignored."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output path '{out}' is a file, not a folder: pass a folder path to --out")
    parent = next((p for p in [out, *out.parents] if p.exists()), None)
    if parent is not None and not os.access(parent, os.W_OK):
        raise ConfigError(f"cannot write to '{out}' ('{parent}' is not writable): choose another --out")
    paths = [Path(p) for p in inputs if isinstance(p, (str, os.PathLike))]  # modules from Python are not files
    held = next((p for p in paths if _inside(p, out)), None)
    if held is not None:
        raise ConfigError(f"output folder '{out}' holds the input '{held}': writing there could replace it; "
                          "choose another --out")


def _inside(path: Path, folder: Path) -> bool:
    """``path`` exists and is ``folder`` or lies under it (symbolic links followed)."""
    try:
        return path.exists() and path.resolve().is_relative_to(folder.resolve())
    except (OSError, ValueError):  # a name too long to be a path, or not a path at all: not a file on disk
        return False


__all__ = ["check_output_path"]
