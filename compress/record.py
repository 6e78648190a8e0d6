"""What a training run writes about itself, typed: the file names, a checkpoint's record, the run summary.

A deployable checkpoint ``name.safetensors`` has a sidecar ``name.safetensors.json`` (see
``compress.artifacts``); ``CheckpointRecord`` is that sidecar as a dataclass, so readers use attributes
instead of string keys. The JSON on disk stays exactly what earlier versions wrote (same keys, same key
order), so old checkpoints, the shipped weights and their sidecars load unchanged, and the record also
stored in a checkpoint's safetensors header keeps its bytes (a student's file hash is part of the
refactoring fingerprint in ``benchmarks/behaviour_hashes.sh``).

Who fills which fields: ``compress.artifacts.write_sidecar`` the envelope (format, kind, file, sha256,
inputs, environment); ``compress.deployable.save_deployable`` the module (architecture, preprocessing,
parameters); ``compress.train.fit`` the run (``RunInfo`` from its caller, train_config, epoch, metrics).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compress.artifacts import FORMAT, read_json, read_sidecar
from compress.data.preprocessing import Preprocessing
from compress.errors import CheckpointError

# A training run's folder.
MODEL_FILE = "model.safetensors"  # the deployable module after the last completed epoch
BEST_FILE = "best.safetensors"  # the deployable module at its best validation top-1
STATE_FILE = "state.safetensors"  # everything needed to resume (method, optimizer, RNG, history)
METRICS_FILE = "metrics.jsonl"  # one JSON object per epoch
SUMMARY_FILE = "summary.json"  # the finished run: scores, speed, wall time, what was trained


def resolve_checkpoint(path: str | os.PathLike[str]) -> Path:
    """The checkpoint file a user means: a training run's folder stands for its ``model.safetensors``, and
    the name of a checkpoint shipped with compress (``fashion-mnist-resnet20``) for that file, unless a file
    or folder of that name exists here.

    Nothing is checked here; whatever reads the file reports a missing one with its own context.
    """
    from compress.weights import shipped_path

    path = Path(path)
    if path.is_dir():
        return path / MODEL_FILE
    if not path.exists() and len(path.parts) == 1:  # a bare name, not a path
        return shipped_path(path.name) or path
    return path


@dataclass(frozen=True)
class Scores:
    """The ``metrics`` of a checkpoint: validation scores at the epoch it was saved (percent)."""

    top1: float
    top5: float
    best_top1: float
    best_epoch: int

    def to_dict(self) -> dict[str, Any]:
        return {"top1": self.top1, "top5": self.top5, "best_top1": self.best_top1, "best_epoch": self.best_epoch}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scores:
        return cls(float(data["top1"]), float(data["top5"]), float(data["best_top1"]), int(data["best_epoch"]))


@dataclass(frozen=True)
class RunInfo:
    """What a training run is, as its caller tells ``fit``: recorded in every checkpoint it writes.

    The specs stay plain dicts: each belongs to the module that reads it back (``ModelSpec``, the method's
    config, ``compress.workflows.data_record``). ``teachers`` is None for plain (teacher) training and a
    list, possibly empty, for a distillation.
    """

    role: str  # teacher | student (an extra checkpoint, e.g. ATSC's adapted teacher, carries its own name)
    model: dict[str, Any]  # the trained model's ModelSpec
    method: dict[str, Any]  # the method and its settings ({"name": "none", ...} for plain training)
    data: dict[str, Any]  # what a later stage needs to reload the same data
    teachers: list[dict[str, Any]] | None = None  # the teachers' ModelSpecs (distillation only)
    cost: dict[str, Any] | None = None  # parameters and FLOPs of what is deployed (distillation only)

    def fingerprint(self) -> dict[str, Any]:
        """The settings a resumed run must share with the run it continues."""
        kept = {"model": self.model, "method": self.method, "teachers": self.teachers, "data": self.data}
        return {k: v for k, v in kept.items() if v is not None}

    def to_dict(self) -> dict[str, Any]:
        # Key order as earlier versions wrote it (plain training: data before method), so the record
        # stored in a checkpoint's header, and with it the file's hash, does not change.
        if self.teachers is None:
            return {"role": self.role, "model": self.model, "data": self.data, "method": self.method}
        ordered = {"role": self.role, "model": self.model, "teachers": self.teachers, "method": self.method,
                   "data": self.data, "cost": self.cost}
        return {k: v for k, v in ordered.items() if k != "cost" or v is not None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunInfo | None:
        """The run part of a record, or None for a record without one (a module saved outside ``fit``)."""
        if not all(key in data for key in ("role", "model", "method", "data")):
            return None
        return cls(str(data["role"]), data["model"], data["method"], data["data"], data.get("teachers"),
                   data.get("cost"))


def training_fields(run: RunInfo | None, train_config: dict[str, Any], epoch: int, scores: Scores,
                    role: str | None = None) -> dict[str, Any]:
    """The fields ``fit`` adds to a checkpoint's record after ``epoch`` (``role`` names an extra checkpoint)."""
    fields_ = run.to_dict() if run is not None else {}
    if role is not None:
        fields_["role"] = role  # in place: the key keeps its position
    return {**fields_, "train_config": train_config, "epoch": epoch, "metrics": scores.to_dict()}


_ENVELOPE = ("format", "kind", "file", "sha256", "inputs", "environment")
_RUN_KEYS = ("role", "model", "teachers", "method", "data", "cost")
_BODY = ("architecture", "preprocessing", "parameters", "train_config", "epoch", "metrics")


@dataclass(frozen=True)
class CheckpointRecord:
    """A deployable checkpoint's sidecar, typed. ``extra`` keeps keys this version does not know."""

    architecture: dict[str, Any]  # the spec ``compress.deployable`` rebuilds the module from
    preprocessing: Preprocessing
    parameters: int | None = None
    run: RunInfo | None = None  # None: saved outside a training run
    train_config: dict[str, Any] | None = None
    epoch: int | None = None
    metrics: Scores | None = None
    format: str = FORMAT
    kind: str = "deployable"
    file: str = ""
    sha256: str = ""
    inputs: dict[str, str] = field(default_factory=dict)  # input name -> SHA-256 (or source)
    environment: dict[str, str] = field(default_factory=dict)  # library versions that wrote it
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def dataset(self) -> str | None:
        """The dataset name it was trained on, when recorded."""
        return None if self.run is None else self.run.data.get("name")

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "checkpoint") -> CheckpointRecord:
        missing = [key for key in ("architecture", "preprocessing") if key not in data]
        if missing:
            raise CheckpointError(f"'{source}' is not a deployable checkpoint (no {'/'.join(missing)} in its "
                                  "sidecar); pass a checkpoint written by compress train-teacher or distill")
        run = RunInfo.from_dict(data)
        known = set(_ENVELOPE) | set(_BODY) | (set(_RUN_KEYS) if run is not None else set())
        try:
            return cls(
                architecture=data["architecture"], preprocessing=Preprocessing.from_dict(data["preprocessing"]),
                parameters=data.get("parameters"), run=run, train_config=data.get("train_config"),
                epoch=data.get("epoch"), metrics=Scores.from_dict(data["metrics"]) if data.get("metrics") else None,
                format=data.get("format", FORMAT), kind=data.get("kind", "deployable"), file=data.get("file", ""),
                sha256=data.get("sha256", ""), inputs=dict(data.get("inputs", {})),
                environment=dict(data.get("environment", {})),
                extra={k: v for k, v in data.items() if k not in known},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"'{source}' has a malformed record (bad or missing {exc} in its sidecar); "
                                  "re-create the checkpoint") from None

    def to_dict(self) -> dict[str, Any]:
        """The sidecar's JSON, keys in the order ``write_sidecar`` and ``fit`` write them."""
        data: dict[str, Any] = {"format": self.format, "kind": self.kind, "file": self.file, "sha256": self.sha256,
                                "inputs": self.inputs, "environment": self.environment,
                                "architecture": self.architecture, "preprocessing": self.preprocessing.to_dict()}
        if self.parameters is not None:
            data["parameters"] = self.parameters
        if self.run is not None:
            data.update(self.run.to_dict())
        for key, value in (("train_config", self.train_config), ("epoch", self.epoch),
                           ("metrics", self.metrics.to_dict() if self.metrics else None)):
            if value is not None:
                data[key] = value
        return {**data, **self.extra}

    @classmethod
    def read(cls, path: str | os.PathLike[str], verify: bool = True) -> CheckpointRecord:
        """The record of the checkpoint at ``path`` (a file, or a run folder); ``verify`` checks its hash."""
        path = resolve_checkpoint(path)
        return cls.from_dict(read_sidecar(path, verify=verify), str(path))


@dataclass(frozen=True)
class RunSummary:
    """``summary.json``: a finished run's scores, speed and wall time, with what was trained."""

    best_top1: float
    best_epoch: int
    last_top1: float
    last_top5: float
    epochs: int
    train_images_per_s: float
    wall_seconds: float
    model_sha256: str
    run: RunInfo | None = None
    train_config: dict[str, Any] | None = None
    # What the val_* / best_* scores were measured on: "holdout" (training images held out, and then the
    # test split was read once, at the end, with the best epoch's weights: test_*) or "test" (the test split).
    validation: str = "test"
    test_top1: float | None = None
    test_top5: float | None = None
    test_epoch: int | None = None  # the epoch whose weights the test scores are of (the best on validation)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "best_top1": self.best_top1, "best_epoch": self.best_epoch, "last_top1": self.last_top1,
            "last_top5": self.last_top5, "epochs": self.epochs, "train_images_per_s": self.train_images_per_s,
            "wall_seconds": self.wall_seconds, "model_sha256": self.model_sha256, "validation": self.validation}
        if self.test_top1 is not None:
            data |= {"test_top1": self.test_top1, "test_top5": self.test_top5, "test_epoch": self.test_epoch}
        if self.run is not None:
            data.update(self.run.to_dict())
        if self.train_config is not None:
            data["train_config"] = self.train_config
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSummary:
        return cls(float(data["best_top1"]), int(data["best_epoch"]), float(data["last_top1"]),
                   float(data["last_top5"]), int(data["epochs"]), float(data["train_images_per_s"]),
                   float(data["wall_seconds"]), str(data["model_sha256"]), RunInfo.from_dict(data),
                   data.get("train_config"), str(data.get("validation", "test")), _optional(data, "test_top1", float),
                   _optional(data, "test_top5", float), _optional(data, "test_epoch", int))

    @classmethod
    def read(cls, folder: str | os.PathLike[str]) -> RunSummary:
        """The summary of the finished run in ``folder``."""
        path = Path(folder) / SUMMARY_FILE
        try:
            return cls.from_dict(read_json(path))
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"'{path}' is not a run summary (bad or missing {exc}); "
                                  "re-run the training") from None


def _optional(data: dict[str, Any], key: str, kind: type) -> Any:
    return None if data.get(key) is None else kind(data[key])


__all__ = ["BEST_FILE", "METRICS_FILE", "MODEL_FILE", "STATE_FILE", "SUMMARY_FILE", "CheckpointRecord", "RunInfo",
           "RunSummary", "Scores", "resolve_checkpoint", "training_fields"]
