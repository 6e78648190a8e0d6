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
import importlib.util
import json
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from compress.artifacts import ensure_writable_dir, read_json, sha256_file, sidecar_path, write_json
from compress.errors import ConfigError, DeviceError, MissingDependency
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
                                   train_limit=train))


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
    data = run.data_copy(augment=False, val_limit=spec.val_limit or run.spec.data.val_limit)
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
            "distill": run.upstream("distill")}


def _training_summary(folder: Path) -> dict[str, Any]:
    from compress.validate.report import read_metrics_jsonl

    rows = read_metrics_jsonl(folder / "metrics.jsonl")
    summary = _read_record(folder / "summary.json") or {}
    return {"epochs": len(rows), "top-1 (%)": rows[-1]["val_top1"] if rows else None,
            "best top-1 (%)": max((r["val_top1"] for r in rows), default=None),
            "top-5 (%)": rows[-1].get("val_top5") if rows else None,
            "train img/s": summary.get("train_images_per_s"), "wall (s)": summary.get("wall_seconds")}


def _report_rows(run: _Run) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """The distillation table (teachers trained here, then every method) and the training curves."""
    from compress.validate.report import read_metrics_jsonl

    rows, curves = [], {}
    for t in run.records["teacher"]["info"]["teachers"]:
        if t["dir"] is None:
            continue
        folder = run.path(t["dir"])
        rows.append({"run": f"teacher {t['label']}", "model": t["label"], "role": "teacher", **_training_summary(folder)})
        curves[f"teacher {t['label']}"] = read_metrics_jsonl(folder / "metrics.jsonl")
    info = run.records["distill"]["info"]
    for method, key in info["methods"].items():
        folder = run.path(key)
        role = "student (deployed)" if method == info["deploy"] else "student"
        rows.append({"run": method, "model": run.spec.distill.student, "role": role, **_training_summary(folder)})
        curves[method] = read_metrics_jsonl(folder / "metrics.jsonl")
    return rows, curves


def _judged_validation(run: _Run) -> Any:
    """The measurements of the validate stage with the recipe's gates judged on them."""
    from compress.validate import ValidationResult, evaluate_gates

    result = ValidationResult.from_dict(read_json(run.output_of("validate", "validation.json")))
    result.gates = evaluate_gates(result, run.spec.validate.parsed_gates)
    return result


def _report_run(run: _Run) -> _Done:
    from compress.validate import write_report

    result = _judged_validation(run)
    rows, curves = _report_rows(run)
    title = run.spec.report.title or f"Pipeline report: {run.spec.name}"
    paths = write_report(result, run.run_dir, distillation=rows, curves=curves, png=run.spec.report.png, title=title)
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


# ---------------------------------------------------------------------------------------------- entry point

def _preflight(spec: PipelineSpec) -> None:
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
    from compress.errors import GateFailed
    from compress.validate import check_gates, gate_table

    log = log or (lambda message: print(message, file=sys.stderr, flush=True))
    spec = recipe if isinstance(recipe, PipelineSpec) else load_recipe(recipe)
    first = stage_index(from_stage, "--from") if from_stage else 0
    last = stage_index(until_stage, "--until") if until_stage else len(STAGES) - 1
    if first > last:
        raise ConfigError(f"--from {STAGES[first]} comes after --until {STAGES[last]}: stages run in the order "
                          f"{', '.join(STAGES)}")
    _preflight(spec)
    run_dir = ensure_writable_dir(Path(out) if out is not None else Path("runs") / spec.name)
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
