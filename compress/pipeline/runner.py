"""``run_pipeline``: a recipe's stages in order (``stages.STAGES``), each one skipped when nothing it
depends on changed: teacher(s), distillation, one stage per export backend, validation, the report.

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
is written; a failed gate raises ``GateFailed`` (``compress run`` exits 3), unless the caller asks for
the verdict in the result instead (``raise_on_failed_gates=False``) to publish it first.
"""

from __future__ import annotations

import difflib
import time
from pathlib import Path
from typing import Callable

from compress.artifacts import ensure_writable_dir, folder_lock, write_json
from compress.errors import ConfigError, Interrupted
from compress.logs import get_logger
from compress.pipeline.context import (RECORD, PipelineResult, RunContext, SkipStage, StageDone, StageOutcome, digest,
                                       read_record)
from compress.pipeline.fields import plain
from compress.pipeline.spec import PipelineSpec, load_recipe
from compress.pipeline.stages import STAGE_TABLE, STAGES, Stage, judged_validation, teacher_checkpoint
from compress.registry import normalize

logger = get_logger(__name__)


def stage_index(name: str, option: str) -> int:
    """The position of a stage given by name (``export_onnx`` and ``Export-ONNX`` work too)."""
    wanted = normalize(name)
    for i, stage in enumerate(STAGES):
        if normalize(stage) == wanted:
            return i
    close = difflib.get_close_matches(name, STAGES, n=1, cutoff=0.5)
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise ConfigError(f"{option} '{name}' is not a stage: {hint}stages are {', '.join(STAGES)}")


def _line(prefix: str, summary: str, status: str) -> str:
    """``[3/7] export-onnx: model.onnx, parity ... (skipped: unchanged)``"""
    return f"{prefix}: {summary} ({status})" if summary else f"{prefix}: {status}"


def _run_stage(run: RunContext, index: int, stage: Stage, mode: str) -> StageOutcome:
    """``mode``: "keep" (before --from), "force" or "auto" (skip when unchanged)."""
    prefix = f"[{index + 1}/{len(STAGES)}] {stage.name}"
    folder = run.stage_dir(stage.name)
    inputs = stage.inputs(run)
    key = digest(inputs)
    old = read_record(folder / RECORD)
    if mode == "keep":
        if old is None or old.get("status") not in ("done", "skipped") or not run.verified(old):
            raise ConfigError(f"--from: stage '{stage.name}' has no complete result in '{run.run_dir}': run without "
                              "--from first, or start from an earlier stage")
        run.records[stage.name] = old
        note = "; its inputs changed since, kept as it is because of --from" if old["inputs_sha256"] != key else ""
        run.log(_line(prefix, old.get("summary", ""), f"kept: before --from{note}"))
        return StageOutcome(stage.name, "kept", old.get("reason", ""), old.get("summary", ""))
    if mode == "auto" and old is not None and old.get("inputs_sha256") == key and run.verified(old):
        run.records[stage.name] = old
        what = f"skipped: {old['reason']}; unchanged" if old["status"] == "skipped" else "skipped: unchanged"
        run.log(_line(prefix, old.get("summary", ""), what))
        return StageOutcome(stage.name, "unchanged", old.get("reason", ""), old.get("summary", ""))

    # Drop the old record first: from here on the stage's files may be half rewritten.
    (folder / RECORD).unlink(missing_ok=True)
    run.log(f"{prefix}: running ...")
    started = time.perf_counter()
    try:
        done = stage.run(run)
        status, reason = "done", ""
    except SkipStage as skip:
        done, status, reason = StageDone([]), "skipped", str(skip)
    except KeyboardInterrupt as stop:  # Ctrl-C: say where; finished stages and saved epochs are kept
        detail = f": {stop}" if isinstance(stop, Interrupted) else ""
        raise Interrupted(f"stage {stage.name} of '{run.run_dir}' was interrupted{detail}", resumable=True) from None
    wall = time.perf_counter() - started
    record = {"stage": stage.name, "status": status, "reason": reason, "inputs_sha256": key, "inputs": plain(inputs),
              "outputs": run.hashes(done.outputs), "info": done.info, "summary": done.summary,
              "wall_s": round(wall, 2), "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
    ensure_writable_dir(folder)
    write_json(folder / RECORD, record)
    run.records[stage.name] = record
    tail = f"skipped: {reason}" if status == "skipped" else f"done in {wall:.1f} s"
    run.log(_line(prefix, done.summary, tail))
    return StageOutcome(stage.name, "skipped" if status == "skipped" else "ran", reason, done.summary, wall)


# ---------------------------------------------------------------------------------------------- entry point

def _preflight(spec: PipelineSpec) -> None:
    """Checks on the file system that parsing leaves out (a recipe parses anywhere; it runs where its files are)."""
    for i, t in enumerate(spec.teachers):
        if t.checkpoint and not teacher_checkpoint(t.checkpoint).is_file():
            raise ConfigError(f"teachers[{i}].checkpoint: '{t.checkpoint}' does not exist (relative paths are from "
                              "the current folder; shipped checkpoints go by name, see `compress list models`): "
                              "train it first or fix the path")
    baseline = spec.validation.baseline
    if baseline and not Path(baseline).is_file():
        raise ConfigError(f"validate.baseline: '{baseline}' does not exist (relative paths are from the current "
                          "folder): pass the report.json of an earlier run")


def run_pipeline(recipe: str | Path | PipelineSpec, *, out: str | Path | None = None, from_stage: str | None = None,
                 until_stage: str | None = None, force: bool = False, progress: bool = True,
                 log: Callable[[str], None] | None = None, raise_on_failed_gates: bool = True) -> PipelineResult:
    """Run a recipe (a YAML path or a parsed spec) in ``out`` (default ``runs/<name>``).

    ``from_stage`` re-runs that stage and every later one, using the earlier stages' results as they are;
    ``until_stage`` stops after that stage; ``force`` re-runs every selected stage even when unchanged.
    Raises ``ConfigError`` for a bad recipe (before anything runs) and ``GateFailed`` when a gate failed
    (after the report is written; the gate table goes to the log first). With ``raise_on_failed_gates``
    False the judged gates are only returned (``result.validation.gates``), for the caller to act on.
    """
    log = log or logger.info
    spec = recipe if isinstance(recipe, PipelineSpec) else load_recipe(recipe)
    first = stage_index(from_stage, "--from") if from_stage else 0
    last = stage_index(until_stage, "--until") if until_stage else len(STAGES) - 1
    if first > last:
        raise ConfigError(f"--from {STAGES[first]} comes after --until {STAGES[last]}: stages run in the order "
                          f"{', '.join(STAGES)}")
    _preflight(spec)
    run_dir = ensure_writable_dir(Path(out) if out is not None else Path("runs") / spec.name)
    with folder_lock(run_dir):  # two pipelines in one folder would overwrite each other's stages
        result = _run_stages(spec, run_dir, first, last, force, from_stage, progress, log)
    if raise_on_failed_gates and result.validation is not None:
        from compress.validate import check_gates

        check_gates(result.validation.gates)
    return result


def _run_stages(spec: PipelineSpec, run_dir: Path, first: int, last: int, force: bool, from_stage: str | None,
                progress: bool, log: Callable[[str], None]) -> PipelineResult:
    from compress.validate import gate_table

    write_json(run_dir / "recipe.json", {"source": spec.source, **spec.to_dict()})  # what this run was asked to do
    log(f"pipeline {spec.name}: {run_dir}")
    # --from X re-runs X fully: its trained models too, not only the stage around them
    run = RunContext(spec, run_dir, force=force or from_stage is not None, progress=progress, log=log)
    result = PipelineResult(run_dir)
    for index, stage in enumerate(STAGE_TABLE[:last + 1]):
        mode = "keep" if index < first else "force" if (force or from_stage) else "auto"
        result.stages.append(_run_stage(run, index, stage, mode))

    if "report" in run.records:
        result.report = run.output_of("report", "report.md")
    if "validate" in run.records:
        result.validation = judged_validation(run)
        gates = result.validation.gates
        if gates:
            log("gates:\n" + gate_table(gates, statuses=("pass", "fail", "skipped")))
        if result.validation.failures:
            log(gate_table(gates))  # what failed, by how much
    return result


__all__ = ["PipelineResult", "StageOutcome", "STAGES", "run_pipeline", "stage_index"]
