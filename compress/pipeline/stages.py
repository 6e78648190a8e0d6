"""The pipeline's stages in one table: for each, what its result depends on (``inputs``) and how it runs.

``runner.run_pipeline`` decides whether a stage runs; these functions only do the work and report the
files they wrote. Each ``inputs`` returns everything the stage's outcome depends on (its recipe
section, upstream artifact hashes), so an unchanged stage is skipped. The export stages come from the
backend table (``compress.export.backends``): one stage per backend, each calling that backend's step,
the same function ``compress export`` calls.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable

import numpy as np

from compress.artifacts import atomic_write_text, ensure_writable_dir, read_json, sha256_file, sidecar_path, write_json
from compress.errors import DeviceError, MissingDependency
from compress.export.backends import BACKENDS, artifact_files, artifact_sha256
from compress.export.base import ExportBackend, ExportImages, ExportSource
from compress.pipeline.context import RunContext, SkipStage, StageDone
from compress.pipeline.distill_table import best_val_top1, last_top1, report_rows
from compress.pipeline.fields import plain
from compress.pipeline.sections import REFERENCE
from compress.pipeline.spec import DEPLOY_BEST_VAL
from compress.record import BEST_FILE, METRICS_FILE, MODEL_FILE, resolve_checkpoint

# ---------------------------------------------------------------------------------------------- teacher

def teacher_checkpoint(value: str) -> Path:
    """A teacher given as a checkpoint: the file, or the model file in the run folder given."""
    return resolve_checkpoint(value)


def _teacher_inputs(run: RunContext) -> dict[str, Any]:
    teachers = []
    for t in run.spec.teachers:
        entry = t.to_dict()
        if t.checkpoint:  # an existing model: its bytes are the input
            entry["checkpoint_sha256"] = sha256_file(teacher_checkpoint(t.checkpoint))
        if t.weights and Path(t.weights).is_file():  # a weights file, not a name such as 'imagenet'
            entry["weights_sha256"] = sha256_file(t.weights)
        teachers.append(entry)
    return {"data": run.spec.data_dict(), "teachers": teachers}


def _teacher_run(run: RunContext) -> StageDone:
    from compress.workflows import train_teacher_run

    outputs: list[Path] = []
    used: list[dict[str, Any]] = []  # what the distill stage passes to distill_run, per teacher
    summaries = []
    for i, t in enumerate(run.spec.teachers):
        if t.checkpoint:
            path = teacher_checkpoint(t.checkpoint)
            outputs.append(path)
            used.append({"name": run.key(path), "weights": None, "label": t.label, "dir": None})
            summaries.append(f"{t.label}: given checkpoint")
            continue
        if t.train is None:  # zoo model with given weights, loaded by the distill stage
            used.append({"name": t.model, "weights": t.weights, "label": t.label, "dir": None})
            summaries.append(f"{t.label}: {t.weights} weights")
            continue
        folder = run.stage_dir("teacher") / f"{i + 1}-{t.model}"
        train = t.train
        data = run.data_copy(batch_size=train.batch_size)

        def fit_teacher(resume: bool, t=t, train=train, data=data, folder=folder) -> Any:
            return train_teacher_run(t.model, data, copy.deepcopy(train.config), folder, init=t.weights,  # type: ignore[arg-type]
                                     label_smoothing=t.label_smoothing, resume=resume, progress=run.progress)

        run.log(f"  teacher {i + 1}: {t.model}, {train.config.epochs} epochs, batch {train.batch_size}")
        outcome = run.train_unit(folder, {"data": run.spec.data_dict(), "teacher": t.to_dict()}, train.config.epochs,
                                 fit_teacher)
        outputs += [folder / MODEL_FILE, sidecar_path(folder / MODEL_FILE), folder / METRICS_FILE]
        used.append({"name": run.key(folder / MODEL_FILE), "weights": None, "label": t.label, "dir": run.key(folder)})
        summaries.append(f"{t.label}: top-1 {last_top1(folder):.2f}%" + (" (unchanged)" if outcome == "unchanged" else ""))
    return StageDone(outputs, {"teachers": used}, "; ".join(summaries) or "no teachers")


# ---------------------------------------------------------------------------------------------- distill

def _distill_inputs(run: RunContext) -> dict[str, Any]:
    return {"data": run.spec.data_dict(), "distill": run.spec.distill.to_dict(), "teachers": run.upstream("teacher"),
            "teacher_sources": run.records["teacher"]["info"]["teachers"]}


def _distill_run(run: RunContext) -> StageDone:
    from compress.workflows import distill_run

    spec = run.spec.distill
    teachers = run.records["teacher"]["info"]["teachers"]
    names = [str(run.path(t["name"])) if t["weights"] is None else t["name"] for t in teachers]
    weights = [t["weights"] or "" for t in teachers] if any(t["weights"] for t in teachers) else []
    outputs: list[Path] = []
    summaries = []
    methods: dict[str, str] = {}
    for method in spec.methods:
        folder = run.stage_dir("distill") / method
        config = spec.config_for(method)
        data = run.data_copy(batch_size=spec.train.batch_size)

        def fit_student(resume: bool, config=config, data=data, folder=folder) -> Any:
            return distill_run(spec.student, names, weights, config, data, copy.deepcopy(spec.train.config), folder,
                               resume=resume, progress=run.progress, log=run.log)

        run.log(f"  {method}: {spec.student}, {spec.train.config.epochs} epochs, batch {spec.train.batch_size}")
        unit_inputs = {"data": run.spec.data_dict(), "student": spec.student, "method": config.to_dict(),
                       "train": spec.train.to_dict(), "teachers": run.upstream("teacher"), "teacher_sources": teachers}
        outcome = run.train_unit(folder, unit_inputs, spec.train.config.epochs, fit_student)
        outputs += [folder / MODEL_FILE, sidecar_path(folder / MODEL_FILE), folder / METRICS_FILE]
        if run.spec.data.holdout_per_class is not None:  # the epoch chosen on validation is what may ship
            outputs += [folder / BEST_FILE, sidecar_path(folder / BEST_FILE)]
        methods[method] = run.key(folder)
        summaries.append(f"{method} top-1 {last_top1(folder):.2f}%" + (" (unchanged)" if outcome == "unchanged" else ""))
    deploy, why = _deployed_run(run, spec)
    # With a held-out validation split the epoch is chosen on it too: best.safetensors is that epoch's student.
    chosen = BEST_FILE if run.spec.data.holdout_per_class is not None else MODEL_FILE
    student = run.key(run.stage_dir("distill") / deploy / chosen)
    return StageDone(outputs, {"deploy": deploy, "student": student, "methods": methods},
                     f"{', '.join(summaries)}; deploying {deploy}{why}")


def _deployed_run(run: RunContext, spec: Any) -> tuple[str, str]:
    """The run to deploy and why: the recipe's choice, or (``best-val``) the run whose best epoch scored
    highest on the held-out validation split (the first of the recipe's order on a tie); the test split
    plays no part."""
    if spec.deploy != DEPLOY_BEST_VAL:
        return spec.deploy, ""
    scores = {method: best_val_top1(run.stage_dir("distill") / method) for method in spec.methods}
    best = max(spec.methods, key=lambda m: scores[m])
    return best, f" (best validation top-1, {scores[best]:.2f}%, of {len(scores)} runs)"


# ---------------------------------------------------------------------------------------------- export

def _student(run: RunContext) -> Path:
    return run.path(run.records["distill"]["info"]["student"])


def _load_student(run: RunContext) -> Any:
    from compress.deployable import load_deployable

    module, preprocessing, _ = load_deployable(_student(run))
    return module, preprocessing


def _export_images(run: RunContext, val: int, calibration: int, channels: int) -> ExportImages:
    """Un-augmented images for an export step: the first ``val`` validation images (within the recipe's
    val_limit) and the first ``calibration`` training images, with every label (none hidden)."""
    from compress.data import load_data
    from compress.data.loaders import take

    limit = run.spec.data.val_limit
    wanted = max(val, 1)
    bundle = load_data(run.data_copy(channels=channels, augment=False, train_limit=max(calibration, 1),
                                     val_limit=min(wanted, limit) if limit else wanted).without_label_split())
    calib = take(bundle.train, calibration)[0].numpy() if calibration else np.zeros((0,), np.float32)
    if not val:
        return ExportImages(np.zeros((0,), np.float32), np.zeros((0,), np.int64), calib)
    val_x, val_y = take(bundle.val, val)
    return ExportImages(val_x.numpy(), val_y.numpy(), calib)


def _export_inputs(backend: ExportBackend, run: RunContext) -> dict[str, Any]:
    options = run.spec.export.of(backend.name)
    if options is None:
        return {backend.name: None}
    inputs: dict[str, Any] = {backend.name: plain(options)}
    if any(options.images_needed()):
        inputs["data"] = run.spec.data_dict()
    if not backend.built_from:
        inputs["student"] = sha256_file(_student(run))
    for source in backend.built_from:
        inputs[source] = run.upstream(BACKENDS[source].stage)
    if backend.machine is not None:  # a GPU appearing re-runs the stage
        inputs["machine"] = backend.machine().facts
    return inputs


def _export_run(backend: ExportBackend, run: RunContext) -> StageDone:
    options = run.spec.export.of(backend.name)
    if options is None:
        raise SkipStage("not in the recipe")
    missing = backend.machine().missing if backend.machine is not None else ""
    if missing:
        raise SkipStage(missing)
    folder = ensure_writable_dir(run.stage_dir(backend.stage))
    built = {name: run.output_of(BACKENDS[name].stage, BACKENDS[name].artifact) for name in backend.built_from}
    source = ExportSource(student=partial(_load_student, run), student_sha256=sha256_file(_student(run)),
                          images=partial(_export_images, run), built=built, options=run.spec.export.options,
                          cache_dir=folder, full_checks=False)  # the validate stage times every artifact
    try:
        result = backend.step(source, options, folder)
    except (MissingDependency, DeviceError) as exc:
        if backend.machine is None:
            raise
        raise SkipStage(str(exc)) from None  # e.g. a TensorRT that cannot use this GPU
    outputs = [path for artifact in result.artifacts for path in artifact_files(artifact)]
    for name, check in result.checks.items():
        write_json(folder / f"{name}.json", check)
        outputs.append(folder / f"{name}.json")
    return StageDone(outputs, {}, result.summary)


# ---------------------------------------------------------------------------------------------- target

def _target_inputs(run: RunContext) -> dict[str, Any]:
    target = run.spec.export.target
    if target is None:
        return {"target": None}
    return {"target": plain(target), "data": run.spec.data_dict(), "student": sha256_file(_student(run)),
            "built": {name: run.upstream(BACKENDS[name].stage) for name in run.spec.export.options}}


def _target_run(run: RunContext) -> StageDone:
    """The export stages' CPU artifacts measured side by side; the winner per batch size, and the table."""
    from compress.export.target import choose_target

    target = run.spec.export.target
    if target is None:
        raise SkipStage("not in the recipe")
    files, not_built = {}, {}
    for name in run.spec.export.options:
        backend = BACKENDS[name]
        if not backend.cpu_threads:
            continue
        record = run.records[backend.stage]
        if record["status"] == "skipped":
            not_built[name] = record["reason"]
        else:
            files[name] = run.output_of(backend.stage, backend.artifact)
    module, preprocessing = _load_student(run)
    images = _export_images(run, target.eval_images, 0, preprocessing.channels)
    selection = choose_target(files, module, images.val_x, images.val_y, target, not_built)
    folder = ensure_writable_dir(run.stage_dir("target"))
    atomic_write_text(folder / "target.md", selection.to_markdown())
    write_json(folder / "target.json", selection.to_dict())
    picks = ", ".join(f"batch {pick.batch}: {pick.name}" for pick in selection.picks)
    return StageDone([folder / "target.md", folder / "target.json"], {"shipped": selection.shipped}, picks)


# ---------------------------------------------------------------------------------------------- validate

def _artifacts(run: RunContext) -> tuple[dict[str, Path], dict[str, str]]:
    """Validated stage -> artifact path, and stage -> why it was skipped."""
    paths, skipped = {REFERENCE: _student(run)}, {}
    for name in run.spec.validated_stages:
        if name == REFERENCE:
            continue
        backend = BACKENDS[name]
        record = run.records[backend.stage]
        if record["status"] == "skipped":
            skipped[name] = record["reason"]
        else:
            paths[name] = run.output_of(backend.stage, backend.artifact)
    return paths, skipped


def _validate_inputs(run: RunContext) -> dict[str, Any]:
    paths, skipped = _artifacts(run)
    settings = run.spec.validation.to_dict()
    for judged in ("gates", "baseline"):  # judged from the measurements by the report stage: nothing re-measured
        settings.pop(judged)
    return {"validate": settings, "data": run.spec.data_dict(),
            "artifacts": {name: artifact_sha256(path) for name, path in paths.items()}, "skipped": skipped}


def _validate_run(run: RunContext) -> StageDone:
    from compress.validate import StageResult, validate_artifacts

    spec = run.spec.validation
    paths, skipped = _artifacts(run)
    data = run.data_copy(augment=False, val_limit=spec.val_limit or run.spec.data.val_limit).without_label_split()
    result = validate_artifacts(paths, data, reference=REFERENCE, batch_sizes=spec.batch_sizes, threads=spec.threads,
                                duration_s=spec.duration_s, providers=spec.providers)
    for name, reason in skipped.items():
        result.stages[name] = StageResult(name, "", "", status="skipped", reason=reason)
    folder = ensure_writable_dir(run.stage_dir("validate"))
    write_json(folder / "validation.json", result.to_dict())
    parts = []
    for name, stage in result.stages.items():
        if stage.skipped:
            parts.append(f"{name} skipped")
        elif stage.accuracy is not None:
            parts.append(f"{name} top-1 {stage.accuracy.top1:.2f}%")
    return StageDone([folder / "validation.json"], {}, ", ".join(parts))


# ---------------------------------------------------------------------------------------------- report

def _report_inputs(run: RunContext) -> dict[str, Any]:
    baseline = run.spec.validation.baseline  # its content is an input: a new baseline re-judges the gates
    return {"report": plain(run.spec.report), "gates": plain(run.spec.validation.gates),
            **({"baseline": sha256_file(baseline)} if baseline else {}),
            "validation": run.upstream("validate"), "teacher": run.upstream("teacher"),
            "distill": run.upstream("distill"),
            "data": run.spec.data_dict()}  # the regime sentence describes it


def _teacher_top1(run: RunContext) -> float | None:
    """The best teacher's recorded top-1 (a given checkpoint's, or one trained here): the sanity gate says how
    far below it the student is. Teachers given as zoo weights have no record."""
    from compress.errors import CompressError
    from compress.record import CheckpointRecord

    scores = []
    for t in (run.records.get("teacher") or {}).get("info", {}).get("teachers", []):
        if t.get("weights") is None:
            try:
                metrics = CheckpointRecord.read(run.path(t["name"]), verify=False).metrics
            except CompressError:
                continue
            if metrics is not None:
                scores.append(metrics.top1)
    return max(scores, default=None)


def judged_validation(run: RunContext) -> Any:
    """The measurements of the validate stage with the recipe's gates judged on them (and on its baseline)."""
    from compress.validate import ValidationResult, evaluate_gates, read_result

    result = ValidationResult.from_dict(read_json(run.output_of("validate", "validation.json")))
    result.teacher_top1 = _teacher_top1(run)
    path = run.spec.validation.baseline
    baseline = read_result(path, "validate.baseline") if path else None
    result.gates = evaluate_gates(result, run.spec.validation.parsed_gates, baseline)
    return result


def _report_run(run: RunContext) -> StageDone:
    from compress.validate import write_report

    result = judged_validation(run)
    rows, curves, regime = report_rows(run)
    title = run.spec.report.title or f"Pipeline report: {run.spec.name}"
    paths = write_report(result, run.run_dir, distillation=rows, curves=curves, png=run.spec.report.png, title=title,
                         regime=regime)
    outputs = [paths.json, paths.markdown] + ([paths.png] if paths.png else [])
    verdict = "all gates passed" if result.passed else f"{len(result.failures)} gate(s) failed"
    return StageDone(outputs, {}, f"{run.key(paths.markdown)} ({verdict})" if result.gates else run.key(paths.markdown))


# ---------------------------------------------------------------------------------------------- the table

@dataclass(frozen=True)
class Stage:
    name: str  # also its folder in the run
    inputs: Callable[[RunContext], dict[str, Any]]  # everything its outcome depends on (hashed)
    run: Callable[[RunContext], StageDone]


def _export_stage(backend: ExportBackend) -> Stage:
    return Stage(backend.stage, partial(_export_inputs, backend), partial(_export_run, backend))


STAGE_TABLE: tuple[Stage, ...] = (
    Stage("teacher", _teacher_inputs, _teacher_run),
    Stage("distill", _distill_inputs, _distill_run),
    *(_export_stage(backend) for backend in BACKENDS.values()),
    Stage("target", _target_inputs, _target_run),
    Stage("validate", _validate_inputs, _validate_run),
    Stage("report", _report_inputs, _report_run),
)
STAGES = tuple(stage.name for stage in STAGE_TABLE)  # in the order they run
