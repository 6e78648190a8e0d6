"""``compress export``: checkpoint -> model.onnx (+ model.int8.onnx, model.plan, ...), all checked.

Each backend's step (``compress.export.backends``) runs in table order; a backend that others are
built from is built even when it is not shipped. Everything is written into a hidden staging folder
inside ``out_dir`` and moved into place only when every step has succeeded, so a failure never leaves
a half-finished set of artifacts that looks complete.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from compress.artifacts import ensure_writable_dir, sidecar_path
from compress.errors import ConfigError
from compress.export.backends import BACKENDS, with_sources
from compress.export.base import ExportImages, ExportSource
from compress.output_folder import check_output_path

if TYPE_CHECKING:
    from compress.data import DataBundle, DataConfig
    from compress.record import CheckpointRecord

DEFAULT_DATASET = "fashion-mnist"


def _data_config(record: CheckpointRecord, data_dir: str | None, channels: int, image_size: int,
                 val_limit: int, train_limit: int) -> DataConfig:
    """The dataset the checkpoint records (from ``data_dir`` when given), un-augmented, at the model's input."""
    from compress.data import DataConfig

    recorded = record.run.data if record.run is not None else {}
    data = DataConfig(name=str(recorded.get("name", DEFAULT_DATASET)), data_dir=data_dir or recorded.get("data_dir"))
    sized = data.name in ("imagefolder", "imagenet", "synthetic")
    return replace(data, val_limit=val_limit, train_limit=train_limit, augment=False, channels=channels,
                   image_size=image_size if sized else data.image_size, workers=0)


class _LoadedImages:
    """Every step's images from one loaded dataset: the first N validation images, read now (a bad dataset
    fails before the output folder exists), and the first N training images, read when a step calibrates."""

    def __init__(self, bundle: DataBundle, val: int, calibration: int) -> None:
        from compress.data.loaders import take

        self._bundle, self._calibration_n = bundle, calibration
        val_x, val_y = take(bundle.val, val)
        self._val = (val_x.numpy(), val_y.numpy())
        self._calibration: np.ndarray | None = None

    def __call__(self, val: int, calibration: int, channels: int) -> ExportImages:
        """The student's channels were fixed when the data was loaded: ``channels`` is that count."""
        from compress.data.loaders import take

        if calibration and self._calibration is None:
            self._calibration = take(self._bundle.train, self._calibration_n)[0].numpy()
        calib = self._calibration[:calibration] if calibration and self._calibration is not None else self._val[0][:0]
        return ExportImages(self._val[0][:val], self._val[1][:val], calib)


def _checked_options(build: Sequence[str], options: Mapping[str, Any] | None) -> tuple[list[str], dict[str, Any]]:
    """The backends to build (with what they are built from) and every backend's options, checked."""
    if not build:
        flags = [f"--{backend.flag}" for backend in BACKENDS.values()]
        raise ConfigError(f"nothing to export: pass {', '.join(flags[:-1])} and/or {flags[-1]}")
    order = with_sources(list(build))
    chosen = {name: (options or {}).get(name) or backend.options() for name, backend in BACKENDS.items()}
    for name in order:
        chosen[name].validate()
    for name in order:  # a missing dependency is reported before any export work
        preflight = BACKENDS[name].preflight
        if preflight is not None:
            preflight()
    return order, chosen


def _ship(files: list[Path], out_dir: Path) -> dict[str, str]:
    """Move artifacts into ``out_dir``: artifacts first, then their sidecars, so a sidecar never points at nothing."""
    paths = {}
    for path in files:
        os.replace(path, out_dir / path.name)
        os.replace(sidecar_path(path), sidecar_path(out_dir / path.name))
        paths[path.name] = str(out_dir / path.name)
    return paths


def export_command(
    checkpoint: Path,
    out_dir: Path,
    build: Sequence[str] = ("onnx",),
    options: Mapping[str, Any] | None = None,
    *,
    data_dir: str | None = None,
    trust: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Export a deployable checkpoint: build the backends named in ``build`` (see ``BACKENDS``) with their
    ``options`` (defaults where none are given) and ship their artifacts to ``out_dir``. Parity and
    calibration images come from the dataset the checkpoint was trained on (read from ``data_dir`` if given).

    Returns a summary: the checkpoint, the dataset, each step's checks (``parity``, ``int8``) and the files."""
    from compress.data import load_data
    from compress.deployable import load_deployable

    order, chosen = _checked_options(build, options)  # every option is checked before minutes of work start
    check_output_path(out_dir, [checkpoint, data_dir])  # exporting into the checkpoint's own folder is refused

    def say(message: str) -> None:
        if progress:
            print(message, file=sys.stderr, flush=True)

    module, pre, record = load_deployable(checkpoint, trust=trust)
    needed = [chosen[name].images_needed() for name in order]
    val, calibration = max(max(n[0] for n in needed), 1), max(max(n[1] for n in needed), 1)
    cfg = _data_config(record, data_dir, pre.channels, pre.image_size, val, calibration)
    images = _LoadedImages(load_data(cfg), val, calibration)
    summary: dict[str, Any] = {"checkpoint": str(checkpoint), "dataset": cfg.name}

    # the output folder is created only once every input has been read successfully
    out_dir = ensure_writable_dir(out_dir)
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=out_dir))
    try:
        built: dict[str, Path] = {}
        source = ExportSource(student=lambda: (module, pre), student_sha256=record.sha256,
                              images=images, built=built, options=chosen, cache_dir=out_dir, log=say)
        shipped: list[Path] = []
        for name in order:
            backend = BACKENDS[name]
            result = backend.step(source, chosen[name], staging)
            built[name] = staging / backend.artifact
            summary.update(result.checks)
            if name in build:
                shipped += result.artifacts
        summary["files"] = _ship(shipped, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return summary
