"""The pipeline's stages: for each, what its result depends on (``*_inputs``) and how it runs (``*_run``).

``runner.run_pipeline`` decides whether a stage runs; these functions only do the work and report the
files they wrote. Each ``*_inputs`` returns everything the stage's outcome depends on (its recipe
section, upstream artifact hashes), so an unchanged stage is skipped.
"""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path
from typing import Any, Callable

from compress.artifacts import ensure_writable_dir, read_json, sha256_file, sidecar_path, write_json
from compress.errors import DeviceError, MissingDependency
from compress.pipeline.runner import _Done, _read_record, _Run, _Skip
from compress.pipeline.spec import plain

# ---------------------------------------------------------------------------------------------- teacher

def _teacher_checkpoint(value: str) -> Path:
    path = Path(value)
    return path / "model.safetensors" if path.is_dir() else path


def _teacher_inputs(run: _Run) -> dict[str, Any]:
    teachers = []
    for t in run.spec.teachers:
        entry = t.to_dict()
        if t.checkpoint:  # an existing model: its bytes are the input
            entry["checkpoint_sha256"] = sha256_file(_teacher_checkpoint(t.checkpoint))
        if t.weights and Path(t.weights).is_file():  # a weights file, not a name such as 'imagenet'
            entry["weights_sha256"] = sha256_file(t.weights)
        teachers.append(entry)
    return {"data": run.spec.data_dict(), "teachers": teachers}


def _teacher_run(run: _Run) -> _Done:
    from compress.train import METRICS_FILE, MODEL_FILE
    from compress.workflows import train_teacher_run

    outputs: list[Path] = []
    used: list[dict[str, Any]] = []  # what the distill stage passes to distill_run, per teacher
    summaries = []
    for i, t in enumerate(run.spec.teachers):
        if t.checkpoint:
            path = _teacher_checkpoint(t.checkpoint)
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
        summaries.append(f"{t.label}: top-1 {_last_top1(folder):.2f}%" + (" (unchanged)" if outcome == "unchanged" else ""))
    return _Done(outputs, {"teachers": used}, "; ".join(summaries) or "no teachers")


def _last_top1(folder: Path) -> float:
    from compress.validate.report import read_metrics_jsonl

    rows = read_metrics_jsonl(folder / "metrics.jsonl")
    return float(rows[-1]["val_top1"]) if rows else float("nan")


# ---------------------------------------------------------------------------------------------- distill

def _distill_inputs(run: _Run) -> dict[str, Any]:
    return {"data": run.spec.data_dict(), "distill": run.spec.distill.to_dict(), "teachers": run.upstream("teacher"),
            "teacher_sources": run.records["teacher"]["info"]["teachers"]}


def _distill_run(run: _Run) -> _Done:
    from compress.train import METRICS_FILE, MODEL_FILE
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
        methods[method] = run.key(folder)
        summaries.append(f"{method} top-1 {_last_top1(folder):.2f}%" + (" (unchanged)" if outcome == "unchanged" else ""))
    student = run.key(run.stage_dir("distill") / spec.deploy / MODEL_FILE)
    return _Done(outputs, {"deploy": spec.deploy, "student": student, "methods": methods},
                 f"{', '.join(summaries)}; deploying {spec.deploy}")


# ---------------------------------------------------------------------------------------------- export

def _take(loader: Any, limit: int) -> tuple[Any, Any]:
    """The first ``limit`` (images, labels) of a loader, as numpy arrays."""
    from compress.data.loaders import take

    images, labels = take(loader, limit)
    return images.numpy(), labels.numpy()


def _export_data(run: _Run, channels: int, val: int, train: int = 1) -> Any:
    """Un-augmented data for export checks: ``val`` validation images (within the recipe's val_limit) and
    ``train`` training images (calibration)."""
    from compress.data import load_data

    limit = run.spec.data.val_limit
    return load_data(run.data_copy(channels=channels, augment=False, val_limit=min(val, limit) if limit else val,
                                   train_limit=train).without_label_split())


def _student(run: _Run) -> Path:
    return run.path(run.records["distill"]["info"]["student"])


def _onnx_inputs(run: _Run) -> dict[str, Any]:
    onnx = run.spec.export.onnx
    if onnx is None:
        return {"onnx": None}
    return {"onnx": plain(onnx), "data": run.spec.data_dict(), "student": sha256_file(_student(run))}


def _onnx_run(run: _Run) -> _Done:
    import torch

    from compress.deployable import load_deployable
    from compress.export.onnx import check_parity, export_onnx

    spec = run.spec.export.onnx
    if spec is None:
        raise _Skip("not in the recipe")
    student = _student(run)
    module, pre, _ = load_deployable(student)
    val_x, _ = _take(_export_data(run, pre.channels, spec.parity_images).val, spec.parity_images)
    folder = ensure_writable_dir(run.stage_dir("export-onnx"))
    path = export_onnx(module, pre, folder / "model.onnx", exporter=spec.exporter, opset=spec.opset,
                       inputs={"checkpoint": sha256_file(student)})
    parity = check_parity(module, path, torch.from_numpy(val_x))  # raises ExportError when they disagree
    write_json(folder / "parity.json", parity.to_dict())
    return _Done([path, sidecar_path(path), folder / "parity.json"], {"channels": pre.channels},
                 f"model.onnx, parity: max |Δlogit| {parity.max_abs_diff:.2g}, agreement {parity.top1_agreement:.2%}")


def _int8_inputs(run: _Run) -> dict[str, Any]:
    int8 = run.spec.export.int8
    if int8 is None:
        return {"int8": None}
    return {"int8": plain(int8), "data": run.spec.data_dict(), "onnx": run.upstream("export-onnx")}


def _int8_run(run: _Run) -> _Done:
    from compress.export.quantize import QuantConfig, compare_int8, quantize_int8

    spec = run.spec.export.int8
    if spec is None:
        raise _Skip("not in the recipe")
    onnx = run.output_of("export-onnx", "model.onnx")
    bundle = _export_data(run, run.records["export-onnx"]["info"]["channels"], spec.eval_images, spec.calibration)
    calibration, _ = _take(bundle.train, spec.calibration)
    val_x, val_y = _take(bundle.val, spec.eval_images)
    folder = ensure_writable_dir(run.stage_dir("int8"))
    path = quantize_int8(onnx, folder / "model.int8.onnx", calibration, QuantConfig(method=spec.method))
    # the stage's own accuracy check; latency is measured properly (interleaved, all engines) by validate
    report = compare_int8(onnx, path, val_x, val_y, batch_sizes=(1,), rounds=2)
    write_json(folder / "int8.json", report.to_dict())
    return _Done([path, sidecar_path(path), folder / "int8.json"], {},
                 f"model.int8.onnx, top-1 {report.int8_accuracy:.2%} vs fp32 {report.fp32_accuracy:.2%} "
                 f"on {report.n} images")


def _machine() -> dict[str, bool]:
    """What decides whether TensorRT can run here (part of its stage's inputs: a GPU appearing re-runs it)."""
    import torch

    return {"cuda": bool(torch.cuda.is_available()), "tensorrt": importlib.util.find_spec("tensorrt") is not None}


def _tensorrt_inputs(run: _Run) -> dict[str, Any]:
    trt = run.spec.export.tensorrt
    if trt is None:
        return {"tensorrt": None}
    inputs = {"tensorrt": plain(trt), "onnx": run.upstream("export-onnx"), "machine": _machine()}
    if trt.precision == "int8":
        inputs["data"] = run.spec.data_dict()  # the calibration images
    return inputs


def _tensorrt_run(run: _Run) -> _Done:
    spec = run.spec.export.tensorrt
    if spec is None:
        raise _Skip("not in the recipe")
    machine = _machine()
    if not machine["cuda"]:
        raise _Skip("TensorRT needs an NVIDIA GPU and none is visible here")
    if not machine["tensorrt"]:
        raise _Skip("TensorRT is not installed (pip install 'compress[trt]')")
    from compress.export.quantize import QuantConfig, quantize_int8
    from compress.export.tensorrt import build_engine

    onnx = run.output_of("export-onnx", "model.onnx")
    folder = ensure_writable_dir(run.stage_dir("tensorrt"))
    outputs = []
    source = onnx
    if spec.precision == "int8":
        # TensorRT takes symmetric signed Q/DQ only: a quantization of its own, not the ONNX Runtime one
        bundle = _export_data(run, run.records["export-onnx"]["info"]["channels"], 1, spec.calibration)
        calibration, _ = _take(bundle.train, spec.calibration)
        method = run.spec.export.int8.method if run.spec.export.int8 else "minmax"
        source = quantize_int8(onnx, folder / "model.trt-int8.onnx", calibration, QuantConfig.for_tensorrt(method))
        outputs += [source, sidecar_path(source)]
    try:
        engine = build_engine(source, folder / "model.plan", precision=spec.precision, batch=spec.batch,
                              workspace_mb=spec.workspace_mb, timing_cache_path=folder / "timing.cache")
    except (MissingDependency, DeviceError) as exc:
        raise _Skip(str(exc)) from None
    outputs += [engine, sidecar_path(engine)]
    return _Done(outputs, {}, f"model.plan ({spec.precision}, batch {','.join(map(str, spec.batch))})")


# ---------------------------------------------------------------------------------------------- validate

_PRODUCER = {"onnx": ("export-onnx", "model.onnx"), "int8": ("int8", "model.int8.onnx"),
             "tensorrt": ("tensorrt", "model.plan")}


def _artifacts(run: _Run) -> tuple[dict[str, Path], dict[str, str]]:
    """Validated stage -> artifact path, and stage -> why it was skipped."""
    paths, skipped = {"student": _student(run)}, {}
    for name in run.spec.validated_stages:
        if name == "student":
            continue
        stage, file = _PRODUCER[name]
        record = run.records[stage]
        if record["status"] == "skipped":
            skipped[name] = record["reason"]
        else:
            paths[name] = run.output_of(stage, file)
    return paths, skipped


def _validate_inputs(run: _Run) -> dict[str, Any]:
    paths, skipped = _artifacts(run)
    settings = run.spec.validate.to_dict()
    settings.pop("gates")  # judged from the measurements by the report stage: a new threshold re-measures nothing
    return {"validate": settings, "data": run.spec.data_dict(),
            "artifacts": {name: sha256_file(path) for name, path in paths.items()}, "skipped": skipped}


def _validate_run(run: _Run) -> _Done:
    from compress.validate import StageResult, validate_artifacts

    spec = run.spec.validate
    paths, skipped = _artifacts(run)
    data = run.data_copy(augment=False, val_limit=spec.val_limit or run.spec.data.val_limit).without_label_split()
    result = validate_artifacts(paths, data, reference="student", batch_sizes=spec.batch_sizes, threads=spec.threads,
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
    return _Done([folder / "validation.json"], {}, ", ".join(parts))


# ---------------------------------------------------------------------------------------------- report

def _report_inputs(run: _Run) -> dict[str, Any]:
    return {"report": plain(run.spec.report), "gates": plain(run.spec.validate.gates),
            "validation": run.upstream("validate"), "teacher": run.upstream("teacher"),
            "distill": run.upstream("distill"),
            "data": run.spec.data_dict()}  # the regime sentence describes it


def _training_summary(folder: Path, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """A training run's columns of the table, from its per-epoch ``rows`` and its summary.json."""
    summary = _read_record(folder / "summary.json") or {}
    return {"epochs": len(rows), "top-1 (%)": rows[-1]["val_top1"] if rows else None,
            "best top-1 (%)": max((r["val_top1"] for r in rows), default=None),
            "top-5 (%)": rows[-1].get("val_top5") if rows else None,
            "train img/s": summary.get("train_images_per_s"), "wall (s)": summary.get("wall_seconds")}


def _checkpoint_summary(sidecar: dict[str, Any]) -> dict[str, Any]:
    """A given teacher's columns, from its checkpoint's sidecar: it was trained elsewhere, its epochs'
    metrics are not in this run folder."""
    metrics = sidecar.get("metrics") or {}
    return {"epochs": sidecar.get("epoch"), "top-1 (%)": metrics.get("top1"), "best top-1 (%)": metrics.get("best_top1"),
            "top-5 (%)": metrics.get("top5"), "train img/s": None, "wall (s)": None}


def _sidecar_or_empty(path: Path) -> dict[str, Any]:
    """The sidecar of a model file, unverified (the teacher stage hashed the file), or {} without one."""
    from compress.artifacts import read_sidecar
    from compress.errors import CheckpointError

    try:
        return read_sidecar(path, verify=False)
    except CheckpointError:  # a foreign checkpoint, used with --trust: its numbers are unknown here
        return {}


def _table_row(run_name: str, model: str, role: str, summary: dict[str, Any], delta: float | None = None,
               teacher_after: float | None = None) -> dict[str, Any]:
    """A row of the distillation table, columns in one order for teachers and students (the first row
    sets the table's header): the comparison columns right after top-1, where the eye is."""
    from compress.validate.report import DELTA_ALONE, ROLE, RUN, TEACHER_AFTER, TOP1

    ordered = {RUN: run_name, "model": model, ROLE: role, "epochs": summary["epochs"], TOP1: summary[TOP1],
               DELTA_ALONE: delta, TEACHER_AFTER: teacher_after}
    return {**ordered, **{k: v for k, v in summary.items() if k not in ordered}}


def _student_alone(run: _Run, names: list[str]) -> str | None:
    """The run the Δ column is measured against: the student trained on labels alone (method none,
    no label smoothing, which would be a regulariser of its own)."""
    spec = run.spec.distill
    return next((name for name in names
                 if spec.method_of(name) == "none" and spec.config_for(name).label_smoothing == 0), None)


def _teacher_start_top1(student_curves: list[list[dict[str, Any]]]) -> float | None:
    """A teacher's top-1 as the distill stage measured it before distilling (recorded by ATSC runs): the
    only number there is for a teacher given as zoo weights."""
    for rows in student_curves:
        if rows and rows[0].get("teacher_top1_start") is not None:
            return float(rows[0]["teacher_top1_start"])
    return None


def _report_rows(run: _Run) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]], str]:
    """The distillation table (every teacher, then every run), the training curves and the regime sentence."""
    from compress.train import MODEL_FILE
    from compress.validate.report import TEACHER_ROLE, TeacherFacts, describe_regime, read_metrics_jsonl, student_role

    info = run.records["distill"]["info"]
    student_curves = {name: read_metrics_jsonl(run.path(key) / "metrics.jsonl") for name, key in info["methods"].items()}
    teachers = run.records["teacher"]["info"]["teachers"]
    rows, curves, facts = [], {}, []
    for t, spec in zip(teachers, run.spec.teachers):
        name, model = f"teacher {spec.label}", spec.label  # the recipe's current name for it
        if t["dir"] is not None:  # trained here: its epochs are in the run folder
            folder = run.path(t["dir"])
            curves[name] = read_metrics_jsonl(folder / "metrics.jsonl")
            summary = _training_summary(folder, curves[name])
            data = _sidecar_or_empty(folder / MODEL_FILE).get("data") or run.spec.data_dict()
        elif t["weights"] is None:  # a given checkpoint: its sidecar has what it was trained on and scored
            sidecar = _sidecar_or_empty(run.path(t["name"]))
            summary, data = _checkpoint_summary(sidecar), sidecar.get("data")
            model = (sidecar.get("model") or {}).get("name") or model  # the label is only its folder's name
        else:  # zoo weights: measured before distillation, when one teacher makes the number its own
            start = _teacher_start_top1(list(student_curves.values())) if len(teachers) == 1 else None
            summary = {"epochs": None, "top-1 (%)": start, "best top-1 (%)": None, "top-5 (%)": None,
                       "train img/s": None, "wall (s)": None}
            data = None
        rows.append(_table_row(name, model, TEACHER_ROLE, summary))
        facts.append(TeacherFacts(model, summary["top-1 (%)"], data, t["weights"]))

    alone = _student_alone(run, list(student_curves))
    alone_top1 = student_curves[alone][-1]["val_top1"] if alone and student_curves[alone] else None
    for method, metrics in student_curves.items():
        summary = _training_summary(run.path(info["methods"][method]), metrics)
        top1 = summary["top-1 (%)"]
        delta = top1 - alone_top1 if top1 is not None and alone_top1 is not None else None
        # only a method that adapts its teacher (ATSC) records it; the others leave it as it was
        after = metrics[-1].get("teacher_top1") if metrics else None
        role = student_role(deployed=method == info["deploy"], alone=method == alone)
        rows.append(_table_row(method, run.spec.distill.student, role, summary, delta, after))
        curves[method] = metrics
    return rows, curves, describe_regime(run.spec.data, facts)


def _judged_validation(run: _Run) -> Any:
    """The measurements of the validate stage with the recipe's gates judged on them."""
    from compress.validate import ValidationResult, evaluate_gates

    result = ValidationResult.from_dict(read_json(run.output_of("validate", "validation.json")))
    result.gates = evaluate_gates(result, run.spec.validate.parsed_gates)
    return result


def _report_run(run: _Run) -> _Done:
    from compress.validate import write_report

    result = _judged_validation(run)
    rows, curves, regime = _report_rows(run)
    title = run.spec.report.title or f"Pipeline report: {run.spec.name}"
    paths = write_report(result, run.run_dir, distillation=rows, curves=curves, png=run.spec.report.png, title=title,
                         regime=regime)
    outputs = [paths.json, paths.markdown] + ([paths.png] if paths.png else [])
    verdict = "all gates passed" if result.passed else f"{len(result.failures)} gate(s) failed"
    return _Done(outputs, {}, f"{run.key(paths.markdown)} ({verdict})" if result.gates else run.key(paths.markdown))


STAGE_FUNCTIONS: dict[str, tuple[Callable[[_Run], dict[str, Any]], Callable[[_Run], _Done]]] = {
    "teacher": (_teacher_inputs, _teacher_run),
    "distill": (_distill_inputs, _distill_run),
    "export-onnx": (_onnx_inputs, _onnx_run),
    "int8": (_int8_inputs, _int8_run),
    "tensorrt": (_tensorrt_inputs, _tensorrt_run),
    "validate": (_validate_inputs, _validate_run),
    "report": (_report_inputs, _report_run),
}
