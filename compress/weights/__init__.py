"""Checkpoints shipped inside the package, addressable by name wherever a checkpoint is taken.

``--teacher fashion-mnist-resnet20`` and a recipe's ``teachers: [{checkpoint: fashion-mnist-resnet20}]``
name the shipped file, so commands and copied recipes work from any folder and from a pip install (the
files are package data: see ``[tool.setuptools.package-data]`` in pyproject.toml). Each file keeps its
sidecar, whose hash is checked when it is loaded, like any other checkpoint.

Light on purpose: ``compress list models`` reads this table without importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from compress.artifacts import read_sidecar
from compress.errors import CheckpointError


@dataclass(frozen=True)
class Shipped:
    name: str  # what users type
    file: str  # in this folder, next to its sidecar ``file.json``
    summary: str  # what it is, for listings (its accuracy is read from the sidecar)


SHIPPED: dict[str, Shipped] = {s.name: s for s in (
    Shipped("fashion-mnist-resnet20", "fashion-mnist-resnet20.safetensors",
            "resnet20 teacher, Fashion-MNIST 28 px grey, trained on all 60,000 labels"),
)}


def shipped_path(name: str) -> Path | None:
    """The file of the shipped checkpoint called ``name`` (case does not matter), or None if there is none."""
    entry = SHIPPED.get(name.strip().lower())
    if entry is None:
        return None
    folder = resources.files(__name__)
    if not isinstance(folder, Path):  # installed as a zip: the runtimes need a real file
        raise CheckpointError(f"shipped checkpoint '{entry.name}' is inside a zip archive: install compress "
                              "unpacked (pip install, not a zipapp) to use it")
    return folder / entry.file


def shipped_top1(name: str) -> float | None:
    """The validation top-1 recorded in a shipped checkpoint's sidecar (percent)."""
    path = shipped_path(name)
    metrics = read_sidecar(path, verify=False).get("metrics") if path is not None else None
    top1 = metrics.get("top1") if isinstance(metrics, dict) else None
    return float(top1) if isinstance(top1, (int, float)) else None


def shipped_listing() -> list[tuple[str, str]]:
    """(name, description with its recorded top-1) of every shipped checkpoint, for `compress list models`."""
    rows = []
    for entry in SHIPPED.values():
        top1 = shipped_top1(entry.name)
        rows.append((entry.name, entry.summary + (f"; {top1:.2f} % top-1" if top1 is not None else "")))
    return rows


__all__ = ["SHIPPED", "Shipped", "shipped_listing", "shipped_path", "shipped_top1"]
