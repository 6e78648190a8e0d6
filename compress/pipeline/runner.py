"""``run_pipeline``: a recipe's stages in order, each one skipped when nothing it depends on changed.

    teacher -> distill -> export-onnx -> int8 -> tensorrt -> validate -> report

Every stage writes its artifacts under ``RUN/<stage>/`` and then, last, ``RUN/<stage>/stage.json``:
the hash of its inputs (its recipe section plus the SHA-256 of every upstream artifact it uses) and the
SHA-256 of every file it produced. A stage is skipped ("unchanged") when the hash of its inputs is the
one recorded and its outputs still match their hashes; otherwise it runs again, and so does everything
downstream, because its outputs' hashes are part of their inputs. Because the record is written last, a
killed stage is never taken for done. Training stages go further: each trained model (a teacher, one
distillation method) has its own folder with ``unit.json``, and a model interrupted mid-training resumes
from its ``state.safetensors`` with the same settings instead of starting over.

A stage this machine cannot run (TensorRT without a GPU) is recorded as ``skipped: <reason>``; the later
stages go on, and its gates are reported as skipped, never as passed. Gates are judged after the report
is written; a failed gate raises ``GateFailed`` so that ``compress run`` exits 1.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from compress.artifacts import ensure_writable_dir, folder_lock, sha256_file, write_json
from compress.errors import ConfigError
from compress.pipeline.spec import STAGES, PipelineSpec, load_recipe, plain
from compress.registry import normalize

RECORD = "stage.json"  # in each stage folder, written when the stage has finished
UNIT = "unit.json"  # in each trained model's folder: its inputs' hash, and whether it finished
REPORT_FILES = ("report.json", "report.md", "report.png")


class _Skip(Exception):
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
class _Done:
    """What a stage hands back: its output files (run-relative keys), facts for later stages, a summary line."""

    outputs: list[Path]
    info: dict[str, Any] = field(default_factory=dict)
    summary: str = ""


def digest(obj: Any) -> str:
    """SHA-256 of a JSON-ready value, independent of key order."""
    text = json.dumps(plain(obj), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _read_record(path: Path) -> dict[str, Any] | None:
    """A record, or None when it is missing or unreadable (a stage that never finished)."""
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) else None


def stage_index(name: str, option: str) -> int:
    """The position of a stage given by name (``export_onnx`` and ``Export-ONNX`` work too)."""
    wanted = normalize(name)
    for i, stage in enumerate(STAGES):
        if normalize(stage) == wanted:
            return i
    import difflib

    close = difflib.get_close_matches(name, STAGES, n=1, cutoff=0.5)
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise ConfigError(f"{option} '{name}' is not a stage: {hint}stages are {', '.join(STAGES)}")


def _line(prefix: str, summary: str, status: str) -> str:
    """``[3/7] export-onnx: model.onnx, parity ... (skipped: unchanged)``"""
    return f"{prefix}: {summary} ({status})" if summary else f"{prefix}: {status}"


class _Run:
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

    def data_copy(self, **changes: Any) -> Any:
        """A fresh DataConfig: the library may fill in fields (channels), the recipe must not change."""
        return dataclasses.replace(copy.deepcopy(self.spec.data), **changes)

    # ------------------------------------------------------------------ the stage loop

    def run_stage(self, index: int, stage: str, mode: str) -> StageOutcome:
        """``mode``: "keep" (before --from), "force" or "auto" (skip when unchanged)."""
        prefix = f"[{index + 1}/{len(STAGES)}] {stage}"
        folder = self.stage_dir(stage)
        from compress.pipeline.stages import STAGE_FUNCTIONS  # the stages import this module's types

        inputs_fn, run_fn = STAGE_FUNCTIONS[stage]
        inputs = inputs_fn(self)
        key = digest(inputs)
        old = _read_record(folder / RECORD)
        if mode == "keep":
            if old is None or old.get("status") not in ("done", "skipped") or not self.verified(old):
                raise ConfigError(f"--from: stage '{stage}' has no complete result in '{self.run_dir}': run without "
                                  "--from first, or start from an earlier stage")
            self.records[stage] = old
            note = "; its inputs changed since, kept as it is because of --from" if old["inputs_sha256"] != key else ""
            self.log(_line(prefix, old.get("summary", ""), f"kept: before --from{note}"))
            return StageOutcome(stage, "kept", old.get("reason", ""), old.get("summary", ""))
        if mode == "auto" and old is not None and old.get("inputs_sha256") == key and self.verified(old):
            self.records[stage] = old
            what = f"skipped: {old['reason']}; unchanged" if old["status"] == "skipped" else "skipped: unchanged"
            self.log(_line(prefix, old.get("summary", ""), what))
            return StageOutcome(stage, "unchanged", old.get("reason", ""), old.get("summary", ""))

        # Drop the old record first: from here on the stage's files may be half rewritten.
        (folder / RECORD).unlink(missing_ok=True)
        self.log(f"{prefix}: running ...")
        started = time.perf_counter()
        try:
            done = run_fn(self)
            status, reason = "done", ""
        except _Skip as skip:
            done, status, reason = _Done([]), "skipped", str(skip)
        wall = time.perf_counter() - started
        record = {"stage": stage, "status": status, "reason": reason, "inputs_sha256": key, "inputs": plain(inputs),
                  "outputs": self.hashes(done.outputs), "info": done.info, "summary": done.summary,
                  "wall_s": round(wall, 2), "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
        ensure_writable_dir(folder)
        write_json(folder / RECORD, record)
        self.records[stage] = record
        tail = f"skipped: {reason}" if status == "skipped" else f"done in {wall:.1f} s"
        self.log(_line(prefix, done.summary, tail))
        return StageOutcome(stage, "skipped" if status == "skipped" else "ran", reason, done.summary, wall)

    # ------------------------------------------------------------------ trained models

    def train_unit(self, folder: Path, inputs: dict[str, Any], epochs: int, train: Callable[[bool], Any]) -> str:
        """Train one model in ``folder`` unless it is already trained with these ``inputs``.

        Returns "unchanged", "resumed" or "trained". A model interrupted with the same inputs resumes from
        its last completed epoch; different inputs start over in an emptied folder."""
        from compress.errors import CheckpointError
        from compress.train import METRICS_FILE, MODEL_FILE, STATE_FILE
        from compress.validate.report import read_metrics_jsonl

        key = digest(inputs)
        record = _read_record(folder / UNIT) or {}
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
        from compress.artifacts import read_sidecar
        from compress.errors import CheckpointError
        from compress.train import METRICS_FILE, MODEL_FILE

        try:
            read_sidecar(folder / MODEL_FILE, verify=True)
        except CheckpointError:
            return False
        return (folder / METRICS_FILE).exists()


# ---------------------------------------------------------------------------------------------- entry point

def _preflight(spec: PipelineSpec) -> None:
    from compress.pipeline.stages import _teacher_checkpoint

    """Checks on the file system that parsing leaves out (a recipe parses anywhere; it runs where its files are)."""
    for i, t in enumerate(spec.teachers):
        if t.checkpoint and not _teacher_checkpoint(t.checkpoint).is_file():
            raise ConfigError(f"teachers[{i}].checkpoint: '{t.checkpoint}' does not exist (relative paths are from "
                              "the current folder): train it first or fix the path")


def run_pipeline(recipe: str | Path | PipelineSpec, *, out: str | Path | None = None, from_stage: str | None = None,
                 until_stage: str | None = None, force: bool = False, progress: bool = True,
                 log: Callable[[str], None] | None = None) -> PipelineResult:
    """Run a recipe (a YAML path or a parsed spec) in ``out`` (default ``runs/<name>``).

    ``from_stage`` re-runs that stage and every later one, using the earlier stages' results as they are;
    ``until_stage`` stops after that stage; ``force`` re-runs every selected stage even when unchanged.
    Raises ``ConfigError`` for a bad recipe (before anything runs) and ``GateFailed`` when a gate failed
    (after the report is written; the gate table goes to the log first).
    """
    log = log or (lambda message: print(message, file=sys.stderr, flush=True))
    spec = recipe if isinstance(recipe, PipelineSpec) else load_recipe(recipe)
    first = stage_index(from_stage, "--from") if from_stage else 0
    last = stage_index(until_stage, "--until") if until_stage else len(STAGES) - 1
    if first > last:
        raise ConfigError(f"--from {STAGES[first]} comes after --until {STAGES[last]}: stages run in the order "
                          f"{', '.join(STAGES)}")
    _preflight(spec)
    run_dir = ensure_writable_dir(Path(out) if out is not None else Path("runs") / spec.name)
    with folder_lock(run_dir):  # two pipelines in one folder would overwrite each other's stages
        return _run_stages(spec, run_dir, first, last, force, from_stage, progress, log)


def _run_stages(spec: PipelineSpec, run_dir: Path, first: int, last: int, force: bool, from_stage: str | None,
                progress: bool, log: Callable[[str], None]) -> PipelineResult:
    from compress.errors import GateFailed
    from compress.validate import check_gates, gate_table

    write_json(run_dir / "recipe.json", {"source": spec.source, **spec.to_dict()})  # what this run was asked to do
    log(f"pipeline {spec.name}: {run_dir}")
    # --from X re-runs X fully: its trained models too, not only the stage around them
    run = _Run(spec, run_dir, force=force or from_stage is not None, progress=progress, log=log)
    result = PipelineResult(run_dir)
    for index, stage in enumerate(STAGES[:last + 1]):
        mode = "keep" if index < first else "force" if (force or from_stage) else "auto"
        result.stages.append(run.run_stage(index, stage, mode))

    if "report" in run.records:
        result.report = run.output_of("report", "report.md")
    if "validate" in run.records:
        from compress.pipeline.stages import _judged_validation

        result.validation = _judged_validation(run)
        gates = result.validation.gates
        if gates:
            log("gates:\n" + gate_table(gates, statuses=("pass", "fail", "skipped")))
        try:
            check_gates(gates)
        except GateFailed:
            log(gate_table(gates))  # what failed, by how much
            raise
    return result


__all__ = ["PipelineResult", "StageOutcome", "STAGES", "run_pipeline", "digest", "stage_index"]
