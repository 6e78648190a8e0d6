"""`compress export` and `compress validate`: one library call each, gates published for CI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

from compress.errors import UsageError
from compress.validate.gates import GATES

from compress.cli.app import EXIT_HELP, app, logger
from compress.cli.options import BACKEND_FLAGS, BASELINE_HELP, DATA_HELP, GATE_OPTIONS, JSON_HELP, JUNIT_HELP, MODEL_FACTORY_HELP, SHIFT_HELP, SHIFT_SEED_HELP, SUMMARY_HELP, _ints, _publish, _with_options


@app.command("export")
@_with_options(BACKEND_FLAGS, after="out")
def export(
    checkpoint: Path = typer.Argument(..., help="Deployable checkpoint (model.safetensors) or its run folder."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder (default: CHECKPOINT_DIR/export)."),
    precision: str = typer.Option("fp16", "--precision", help="TensorRT precision: fp32, fp16 or int8."),
    batch: str = typer.Option("1,8,32", "--batch", help="TensorRT batch profile min,opt,max."),
    calibration: int = typer.Option(512, "--calibration", help="INT8 calibration images (from the training split)."),
    calib_method: str = typer.Option("minmax", "--calib-method", help="INT8 calibration: minmax, entropy or percentile."),
    exporter: str = typer.Option("dynamo", "--exporter", help="torch.onnx exporter: dynamo (default) or torchscript."),
    data_dir: Optional[str] = typer.Option(None, "--data-dir", help="Dataset folder for parity/calibration images."),
    workspace_mb: int = typer.Option(1024, "--workspace-mb", help="TensorRT builder workspace limit."),
    int8_max_drop: Optional[float] = typer.Option(
        None, "--int8-max-drop", help="INT8 may lose at most this many top-1 points against fp32: calibration methods "
        "are compared and the most sensitive layers kept in float until it does (or the export fails)."),
    target: Optional[str] = typer.Option(
        None, "--target", help="cpu: build every backend this CPU runs (ONNX Runtime and OpenVINO, fp32 and INT8), "
        "time them side by side and ship only the fastest within --max-top1-drop at each of --batch-sizes; "
        "target.md shows the table. The backend flags are then not needed."),
    batch_sizes: str = typer.Option("1,32", "--batch-sizes", help="--target: batch sizes to pick a winner for."),
    threads: int = typer.Option(2, "--threads", help="--target: CPU threads the deployed model gets."),
    max_top1_drop: float = typer.Option(1.0, "--max-top1-drop",
                                        help="--target: top-1 points a candidate may lose against the student."),
    trust: bool = typer.Option(False, "--trust", help="Use a checkpoint whose hash does not match its sidecar."),
    model_factory: Optional[str] = typer.Option(None, "--model-factory", help=MODEL_FACTORY_HELP),
    **build: bool,
) -> None:
    """Export a distilled student to ONNX (parity-checked), ONNX INT8, OpenVINO and/or a TensorRT engine, or
    let --target cpu measure them all and ship the fastest."""
    from compress import api
    from compress.export import Int8Options, OnnxOptions, TensorRTOptions, parse_batch
    from compress.export.target import TargetOptions

    chosen = [name for name, wanted in build.items() if wanted]
    options: dict[str, Any] = {"onnx": OnnxOptions(exporter=exporter),
                               "int8": Int8Options(calibration=calibration, method=calib_method,
                                                   max_top1_drop=int8_max_drop)}
    if "tensorrt" in chosen:  # the profile is read only when an engine is built
        profile = parse_batch(batch)
        options["tensorrt"] = TensorRTOptions(precision=precision, batch=(profile.min, profile.opt, profile.max),
                                              workspace_mb=workspace_mb, calibration=calibration)
    goal = None if target is None else TargetOptions(device=target, batch_sizes=_ints(batch_sizes, "--batch-sizes"),
                                                     threads=threads, max_top1_drop=max_top1_drop)
    folder = checkpoint if checkpoint.is_dir() else checkpoint.parent
    summary = api.export(checkpoint, out or folder / "export", chosen, options, target=goal, data_dir=data_dir,
                         trust=trust, model_factory=model_factory, progress=True)
    if goal is not None:
        typer.echo(Path(summary["files"]["target.md"]).read_text(), err=True)
    typer.echo(json.dumps(summary.get("files", {}), indent=2))


@app.command("validate", epilog=EXIT_HELP)
@_with_options(GATE_OPTIONS, after="out")
def validate(
    artifacts: list[Path] = typer.Argument(..., help="Checkpoint(s) (.safetensors), ONNX model(s), TensorRT engine(s)."),
    reference: Optional[Path] = typer.Option(None, "--reference", help="Reference artifact for agreement and speed-up (default: the first PyTorch checkpoint, else the first artifact)."),
    data: str = typer.Option("fashion-mnist", "--data", "-d", help=DATA_HELP),
    data_dir: Optional[str] = typer.Option(None, "--data-dir"),
    val_limit: Optional[int] = typer.Option(None, "--val-limit", help="Validate on a fixed subset of N images."),
    shift: Optional[str] = typer.Option(None, "--shift", help=SHIFT_HELP),
    shift_seed: int = typer.Option(0, "--shift-seed", help=SHIFT_SEED_HELP),
    batch_sizes: str = typer.Option("1,32", "--batch-sizes", help="Latency batch sizes."),
    threads: str = typer.Option("2", "--threads", help="CPU thread counts to time."),
    duration: float = typer.Option(2.0, "--duration", help="Seconds of timed runs per engine, batch size and thread count."),
    provider: str = typer.Option("cpu", "--provider", help="ONNX Runtime execution provider: cpu, cuda or tensorrt."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write report.json/md/png here."),
    baseline: Optional[Path] = typer.Option(None, "--baseline", help=BASELINE_HELP),
    no_latency: bool = typer.Option(False, "--no-latency", help="Accuracy and agreement only."),
    trust: bool = typer.Option(False, "--trust", help="Use artifacts whose hash does not match their sidecar."),
    model_factory: Optional[str] = typer.Option(None, "--model-factory", help=MODEL_FACTORY_HELP),
    junit: Optional[Path] = typer.Option(None, "--junit", help=JUNIT_HELP),
    summary: Optional[Path] = typer.Option(None, "--summary", help=SUMMARY_HELP),
    json_output: bool = typer.Option(False, "--json", help=JSON_HELP),
    **thresholds: Optional[float],
) -> None:
    """Accuracy, agreement and latency of artifacts against a reference, with optional gates (exit 3 when one fails)."""
    from compress import api
    from compress.data import DataConfig
    from compress.validate import GateSpec, artifact_names, check_gates, gate_table, read_result, render_markdown, write_report

    from compress.validate.ci_report import check_gate_outputs

    check_gate_outputs(junit, summary)  # before minutes of work, not after
    given = {gate: value for gate, value in thresholds.items() if value is not None}
    needs_baseline = [name for name in given if GATES[name].baseline]
    if needs_baseline and baseline is None:
        raise UsageError(f"--{needs_baseline[0].replace('_', '-')} compares with a stored report: add --baseline "
                         "REPORT.json")
    stored = read_result(baseline, "--baseline") if baseline is not None else None  # before minutes of work
    names, ref_name = artifact_names(artifacts, reference)
    result = api.validate(names, DataConfig(name=data, data_dir=data_dir, val_limit=val_limit, shift=shift,
                                                     shift_seed=shift_seed), ref_name,
                          batch_sizes=_ints(batch_sizes, "--batch-sizes") or (1,),
                          threads=_ints(threads, "--threads") or (2,), duration_s=duration,
                          gates=GateSpec(**given) if given else None, trust=trust,
                          providers={n: provider for n in names if n != "pytorch"}, measure_latency=not no_latency,
                          model_factory=model_factory, baseline=stored)
    report = write_report(result, out).markdown if out is not None else None
    _publish("validate", result.gates, junit, summary)
    if json_output:
        typer.echo(json.dumps({**result.to_dict(), "report": str(report) if report else None}, indent=2))
    else:
        typer.echo(render_markdown(result) + (f"\nreport: {report}" if report else ""))
    if result.failures:
        logger.info("gates that failed:\n" + gate_table(result.gates))
    check_gates(result.gates)
