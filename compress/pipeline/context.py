"""The run context and result types shared by the pipeline's stages and its runner.

Imports go one way: ``context`` <- ``stages`` <- ``runner``. A stage function takes a ``RunContext``
and returns ``StageDone`` (or raises ``SkipStage``); the runner decides which stages run and writes
their records (``RECORD`` in each stage folder, ``UNIT`` in each trained model's folder).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from compress.artifacts import read_json, read_sidecar, sha256_file, write_json
from compress.data import DataConfig
from compress.errors import CheckpointError, CompressError, ConfigError
from compress.pipeline.fields import plain
from compress.pipeline.spec import PipelineSpec
from compress.record import METRICS_FILE, MODEL_FILE, STATE_FILE

RECORD = "stage.json"  # in each stage folder, written when the stage has finished
UNIT = "unit.json"  # in each trained model's folder: its inputs' hash, and whether it finished


class SkipStage(Exception):
    """Raised by a stage that cannot or need not run here; the message is the reason."""


@dataclass
class StageOutcome:
    name: str
    status: str  # "ran" | "unchanged" | "skipped" | "kept" (before --from)
    reason: str = ""  # for "skipped"
    summary: str = ""  # one line: what the stage produced
    wall_s: float = 0.0


@dataclass
class PipelineResult:
    run_dir: Path
    stages: list[StageOutcome] = field(default_factory=list)
    validation: Any = None  # ValidationResult with the recipe's gates judged, when validate has run
    report: Path | None = None  # report.md

    def outcome(self, name: str) -> StageOutcome:
        return next(s for s in self.stages if s.name == name)


@dataclass
class StageDone:
    """What a stage hands back: its output files (run-relative keys), facts for later stages, a summary line."""

    outputs: list[Path]
    info: dict[str, Any] = field(default_factory=dict)
    summary: str = ""


def digest(obj: Any) -> str:
    """SHA-256 of a JSON-ready value, independent of key order."""
    text = json.dumps(plain(obj), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def read_record(path: Path) -> dict[str, Any] | None:
    """A record, or None when it is missing or unreadable (a stage that never finished)."""
    try:
        record = read_json(path)
    except CompressError:
        return None
    return record if isinstance(record, dict) else None


class RunContext:
    """One pipeline run: its recipe, its folder, the records of the stages so far, and file helpers."""

    def __init__(self, spec: PipelineSpec, run_dir: Path, *, force: bool, progress: bool,
                 log: Callable[[str], None]) -> None:
        self.spec = spec
        self.run_dir = run_dir
        self.force = force
        self.progress = progress
        self.log = log
        self.records: dict[str, dict[str, Any]] = {}

    # ------------------------------------------------------------------ files and hashes

    def key(self, path: Path) -> str:
        """Run-relative when inside the run folder (the folder can move), absolute otherwise."""
        try:
            return path.resolve().relative_to(self.run_dir.resolve()).as_posix()
        except ValueError:
            return str(path.resolve())

    def path(self, key: str) -> Path:
        return Path(key) if Path(key).is_absolute() else self.run_dir / key

    def hashes(self, paths: list[Path]) -> dict[str, str]:
        return {self.key(p): sha256_file(p) for p in paths}

    def verified(self, record: dict[str, Any]) -> bool:
        """Every output of ``record`` exists with the recorded hash."""
        for key, sha in record.get("outputs", {}).items():
            path = self.path(key)
            if not path.is_file() or sha256_file(path) != sha:
                return False
        return True

    def stage_dir(self, stage: str) -> Path:
        return self.run_dir / stage

    def output_of(self, stage: str, name: str) -> Path:
        """The path of an upstream stage's output file named ``name`` (e.g. model.onnx)."""
        for key in self.records[stage].get("outputs", {}):
            if Path(key).name == name:
                return self.path(key)
        raise ConfigError(f"stage '{stage}' has no '{name}' in its record: re-run it with --from {stage}")

    def upstream(self, stage: str) -> dict[str, Any]:
        """What a later stage's hash sees of ``stage``: its outputs' hashes, or why it was skipped."""
        record = self.records[stage]
        if record["status"] == "skipped":
            return {"skipped": record["reason"]}
        return record["outputs"]

    def data_copy(self, **changes: Any) -> DataConfig:
        """A fresh DataConfig: the library may fill in fields (channels), the recipe must not change."""
        return dataclasses.replace(copy.deepcopy(self.spec.data), **changes)

    # ------------------------------------------------------------------ trained models

    def train_unit(self, folder: Path, inputs: dict[str, Any], epochs: int, train: Callable[[bool], Any]) -> str:
        """Train one model in ``folder`` unless it is already trained with these ``inputs``.

        Returns "unchanged", "resumed" or "trained". A model interrupted with the same inputs resumes from
        its last completed epoch; different inputs start over in an emptied folder."""
        from compress.validate.report import read_metrics_jsonl

        key = digest(inputs)
        record = read_record(folder / UNIT) or {}
        same = record.get("inputs_sha256") == key
        if same and record.get("done") and not self.force and self._model_intact(folder):
            return "unchanged"
        outcome = "trained"
        if same and not record.get("done") and (folder / STATE_FILE).exists():
            # fit writes model, metrics, then state: a metrics file with every epoch means the model is final
            finished = (folder / METRICS_FILE).exists() and len(read_metrics_jsonl(folder / METRICS_FILE)) >= epochs
            outcome = "resumed"
            if not finished:
                try:
                    train(True)
                except CheckpointError as exc:
                    # a state this version cannot read (e.g. written by an older one): start over
                    self.log(f"  cannot resume '{folder}' ({exc}); training it again from the start")
                    outcome = "trained"
        if outcome == "trained":
            if folder.exists():
                shutil.rmtree(folder)
            folder.mkdir(parents=True)
            write_json(folder / UNIT, {"inputs_sha256": key, "done": False, "inputs": plain(inputs)})
            train(False)
        if not (folder / MODEL_FILE).exists():
            raise ConfigError(f"training in '{folder}' ended without {MODEL_FILE}: re-run the pipeline")
        write_json(folder / UNIT, {"inputs_sha256": key, "done": True, "inputs": plain(inputs)})
        return outcome

    @staticmethod
    def _model_intact(folder: Path) -> bool:

        try:
            read_sidecar(folder / MODEL_FILE, verify=True)
        except CheckpointError:
            return False
        return (folder / METRICS_FILE).exists()
