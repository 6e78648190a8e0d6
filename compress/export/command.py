"""``compress export``: checkpoint -> model.onnx (+ model.int8.onnx, model.xml, model.plan, ...), all checked.

Each backend's step (``compress.export.backends``) runs in table order; a backend that others are
built from is built even when it is not shipped. Everything is written into a hidden staging folder
inside ``out_dir`` and moved into place only when every step has succeeded, so a failure never leaves
a half-finished set of artifacts that looks complete. ``--target`` is the exception that proves it: there a
candidate that fails is a row of the table ("not built: why"), and only the winners are shipped. A staging
folder left by a killed export is removed by the next export into the same folder; a failed export removes
the folder it created.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from compress.artifacts import (atomic_write_text, disk_full_error, new_temp_folder, output_folder, owner_tag,
                                sweep_litter, write_json)
from compress.errors import ConfigError, ExportError
from compress.export.backends import BACKENDS, artifact_files, with_sources
from compress.export.base import ExportImages, ExportSource, StepResult
from compress.export.memory import check_fits, images_bytes
from compress.export.target import Selection, TargetOptions, choose_target, gated_options, target_backends
from compress.logs import get_logger
from compress.output_folder import check_output_path

logger = get_logger(__name__)

if TYPE_CHECKING:
    from compress.data import DataBundle, DataConfig
    from compress.record import CheckpointRecord

DEFAULT_DATASET = "fashion-mnist"


def _data_config(record: CheckpointRecord, data_dir: str | None, channels: int, image_size: int,
                 val_limit: int, train_limit: int) -> DataConfig:
    """The dataset the checkpoint records (from ``data_dir`` when given), un-augmented, at the model's input."""
    from compress.data import DataConfig

    recorded = record.run.data if record.run is not None else {}
    # the images its device's camera delivers (a recorded shift), calibrated and compared on like in training
    data = DataConfig(name=str(recorded.get("name", DEFAULT_DATASET)), data_dir=data_dir or recorded.get("data_dir"),
                      shift=recorded.get("shift"), shift_seed=recorded.get("shift_seed", 0))
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
    """Move artifacts into ``out_dir``, each with the files it needs (an IR's .bin) and last its sidecar, so a
    sidecar never points at nothing."""
    paths = {}
    for path in files:
        for part in artifact_files(path):
            os.replace(part, out_dir / part.name)
        paths[path.name] = str(out_dir / path.name)
    return paths


def _run_steps(order: list[str], source: ExportSource, chosen: Mapping[str, Any], staging: Path,
               summary: dict[str, Any], tolerate: bool) -> tuple[dict[str, StepResult], dict[str, str]]:
    """Every step, in table order: (results by backend, backend -> why it was not built). ``tolerate``: a
    backend whose step fails (an accuracy gate it cannot meet, a graph it cannot convert) is recorded and what
    is built from it skipped; the first backend, which all others are built from, must still succeed."""
    results: dict[str, StepResult] = {}
    failed: dict[str, str] = {}
    for name in order:
        backend = BACKENDS[name]
        lost = [upstream for upstream in backend.built_from if upstream in failed]
        if lost:
            failed[name] = f"built from {lost[0]}, which was not built"
            continue
        try:
            result = backend.step(source, chosen[name], staging)
        except ExportError as exc:
            if not tolerate or not backend.built_from:
                raise
            failed[name] = str(exc)
            source.log(f"{name}: not built ({exc})")
            continue
        source.built[name] = staging / backend.artifact
        summary.update(result.checks)
        results[name] = result
    return results, failed


def _write_target(selection: Any, out_dir: Path) -> dict[str, str]:
    """The target's table beside the models it chose: ``target.md`` to read, ``target.json`` to parse."""
    atomic_write_text(out_dir / "target.md", selection.to_markdown())
    write_json(out_dir / "target.json", selection.to_dict())
    return {name: str(out_dir / name) for name in ("target.md", "target.json")}


def _measure_candidates(target: TargetOptions, source: ExportSource, built: list[str], module: Any,
                        images: ExportImages, not_built: dict[str, str]) -> Selection:
    """``--target``: every candidate built, timed side by side and judged; which to ship at each batch size."""
    source.log(f"measuring {', '.join(built)} side by side ({target.threads} threads, batch "
               f"{', '.join(map(str, target.batch_sizes))}) ...")
    return choose_target(source.built, module, images.val_x, images.val_y, target, not_built)


def export_command(
    checkpoint: Path,
    out_dir: Path,
    build: Sequence[str] = ("onnx",),
    options: Mapping[str, Any] | None = None,
    *,
    target: TargetOptions | None = None,
    data_dir: str | None = None,
    trust: bool = False,
    progress: bool = True,
    data: DataConfig | None = None,
) -> dict[str, Any]:
    """Export a deployable checkpoint: build the backends named in ``build`` (see ``BACKENDS``) with their
    ``options`` (defaults where none are given) and ship their artifacts to ``out_dir``. Parity and
    calibration images come from the dataset the checkpoint was trained on (read from ``data_dir`` if given),
    or from ``data`` (e.g. the user's own images, ``compress.data.user.UserData``).

    With ``target`` (``--target cpu``) ``build`` is not used: every backend that runs on this CPU is built,
    all are measured side by side, and only the fastest within the accuracy gate at each batch size is
    shipped, with the whole table in ``target.md`` / ``target.json`` (``compress.export.target``).

    Returns a summary: the checkpoint, the dataset, each step's checks (``parity``, ``int8``, ...), the
    target's selection when one was asked for, and the files."""
    from compress.data import load_data
    from compress.deployable import load_deployable

    unavailable: dict[str, str] = {}
    if target is not None:
        target.validate()
        build, unavailable = target_backends(target)
        options = gated_options(options or {}, target)
    order, chosen = _checked_options(build, options)  # every option is checked before minutes of work start
    check_output_path(out_dir, [checkpoint, data_dir])  # exporting into the checkpoint's own folder is refused

    def say(message: str) -> None:
        if progress:
            logger.info(message)

    module, pre, record = load_deployable(checkpoint, trust=trust)
    needed = [chosen[name].images_needed() for name in order] + ([target.images_needed()] if target else [])
    val, calibration = max(max(n[0] for n in needed), 1), max(max(n[1] for n in needed), 1)
    cfg = _data_config(record, data_dir, pre.channels, pre.image_size, val, calibration) if data is None else \
        replace(data.for_model(pre.to_dict()), val_limit=val, train_limit=calibration, augment=False)
    check_fits(images_bytes(val + calibration, pre.channels, pre.image_size),
               f"holding {val} validation and {calibration} calibration images at {pre.image_size} px",
               "lower --calibration and the steps' eval_images")
    images = _LoadedImages(load_data(cfg), val, calibration)
    summary: dict[str, Any] = {"checkpoint": str(checkpoint), "dataset": cfg.name}

    # the output folder is created only once every input has been read successfully
    with output_folder(out_dir) as out_dir:
        sweep_litter(out_dir)  # what killed exports left (their staging folders)
        # the umask's mode, as the files it holds; the owner tag lets a later sweep tell a dead export's folder
        staging = new_temp_folder(out_dir, prefix=f".export-{owner_tag()}.", suffix=".tmp")
        try:
            source = ExportSource(student=lambda: (module, pre), student_sha256=record.sha256,
                                  images=images, built={}, options=chosen, cache_dir=out_dir, log=say)
            results, failed = _run_steps(order, source, chosen, staging, summary, tolerate=target is not None)
            selection = None if target is None else _measure_candidates(
                target, source, list(results), module, images(target.eval_images, 0, pre.channels),
                {**unavailable, **failed})
            ship = [name for name in order if name in build] if selection is None else selection.shipped
            summary["files"] = _ship([path for name in ship for path in results[name].artifacts], out_dir)
            if selection is not None:
                summary["target"] = selection.to_dict()
                summary["files"].update(_write_target(selection, out_dir))
        except Exception as exc:  # a full disk inside a step would read as that step's own failure
            full = disk_full_error(exc, staging)
            if full is None:
                raise
            raise full from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return summary
