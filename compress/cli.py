"""The command line. The only module that imports typer; each command is one library call.

User mistakes raise ``CompressError``; ``main`` prints them as one line and exits 1. Click's own
usage errors (missing option, value of the wrong type) are turned into the same one-line form.
"""

from __future__ import annotations

import functools
import inspect
import sys
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

import typer

from compress.errors import CompressError, ConfigError

if TYPE_CHECKING:
    from compress.distill.config import SettingInfo

app = typer.Typer(
    name="compress",
    help="Distil image classifiers (ATSC, SimKD, KD), export them to ONNX / TensorRT, and validate accuracy "
         "and latency at every stage. Start with `compress list models` or `compress train-teacher --help`.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


class ListWhat(str, Enum):
    models = "models"
    datasets = "datasets"
    methods = "methods"
    projectors = "projectors"
    presets = "presets"


def _ints(text: Optional[str], option: str) -> tuple[int, ...]:
    if not text:
        return ()
    try:
        return tuple(int(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        raise ConfigError(f"{option} takes comma-separated whole numbers, e.g. 150,180,210; got '{text}'") from None


@app.command("list")
def list_command(what: ListWhat = typer.Argument(..., help="What to list.")) -> None:
    """List registered models, datasets, distillation methods, projectors or presets."""
    if what is ListWhat.models:
        from compress.models import MODELS

        for name in MODELS.names():
            entry = MODELS.get(name)
            typer.echo(f"{name:22s} {entry.family}")
    elif what is ListWhat.datasets:
        from compress.data import DATASETS

        for name in DATASETS.names():
            typer.echo(f"{name:15s} {DATASETS.get(name).description}")
    elif what is ListWhat.methods:
        from compress.distill import METHODS

        for name in METHODS.names():
            typer.echo(f"{name:8s} {METHODS.get(name).summary}")
    elif what is ListWhat.projectors:
        from compress.distill import PROJECTORS

        for name in PROJECTORS.names():
            typer.echo(name)
    else:
        from compress.distill import PRESETS

        for name in PRESETS.names():
            typer.echo(f"{name:15s} {PRESETS.get(name).get('description', '')}")


# Options shared by the training commands (typer wants them spelled out per command).
COMPILE_HELP = ("torch.compile the training step: off, default, reduce-overhead (adds CUDA graphs; for small, "
                "launch-bound models on a GPU) or max-autotune. The first steps pay the compilation.")
SYNC_BN_HELP = ("Under torchrun on GPUs: BatchNorm statistics over the global batch (SyncBatchNorm) instead of per "
                "GPU; worth it when each GPU gets fewer than ~32 images. Also COMPRESS_SYNC_BN=1.")
WORKERS_HELP = ("DataLoader worker processes for imagefolder data (JPEG decoding); give a GPU about one per 500 "
                "images/s it trains at. Fashion-MNIST and CIFAR need none: they live on the device.")
DATA_HELP = "Dataset: fashion-mnist (default, Debian package), cifar10, cifar100, imagefolder, synthetic."
LABELS_PER_CLASS_HELP = ("Few labels: keep the labels of N training images per class (a fixed, class-balanced subset); the "
                         "other training images become unlabelled. Label terms (cross-entropy) see only labelled images, "
                         "teacher terms (KL, feature MSE) see all; the student alone trains on the labelled ones.")


@app.command("train-teacher")
def train_teacher(
    model: str = typer.Option(..., "--model", "-m", help="Model name, e.g. resnet32x4, resnet50 (see `compress list models`)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder for checkpoints and metrics."),
    data: str = typer.Option("fashion-mnist", "--data", "-d", help=DATA_HELP),
    data_dir: Optional[str] = typer.Option(None, "--data-dir", help="Folder with the dataset files (default: the system copy)."),
    download: bool = typer.Option(False, "--download", help="Download the dataset with torchvision when missing (needs internet)."),
    epochs: int = typer.Option(10, "--epochs", "-e", help="Training epochs."),
    batch_size: int = typer.Option(128, "--batch-size", "-b", help="Global batch size."),
    lr: float = typer.Option(0.05, "--lr", help="Peak learning rate (SGD)."),
    momentum: float = typer.Option(0.9, "--momentum"),
    nesterov: bool = typer.Option(False, "--nesterov/--no-nesterov"),
    weight_decay: float = typer.Option(5e-4, "--weight-decay", "--wd"),
    schedule: str = typer.Option("cosine", "--schedule", help="cosine, multistep or constant."),
    milestones: Optional[str] = typer.Option(None, "--milestones", help="Epochs where multistep divides the lr by 10, e.g. 150,180,210."),
    warmup: float = typer.Option(0.0, "--warmup", help="Linear warm-up epochs."),
    label_smoothing: float = typer.Option(0.0, "--label-smoothing"),
    init: Optional[str] = typer.Option(None, "--init", help="Start from weights: 'imagenet' (torchvision) or a file; a classifier of another size is re-initialised."),
    workers: int = typer.Option(4, "--workers", help=WORKERS_HELP),
    train_limit: Optional[int] = typer.Option(None, "--train-limit", help="Use a fixed subset of N training images."),
    val_limit: Optional[int] = typer.Option(None, "--val-limit", help="Use a fixed subset of N validation images."),
    labels_per_class: Optional[int] = typer.Option(None, "--labels-per-class", help=LABELS_PER_CLASS_HELP),
    label_fraction: Optional[float] = typer.Option(None, "--label-fraction", help="Like --labels-per-class, as a fraction of each class (e.g. 0.02)."),
    unlabeled_dir: Optional[str] = typer.Option(None, "--unlabeled-dir", help="imagefolder: a folder of unlabelled images (any sub-folders) from the deployment domain, used by the teacher-side loss terms."),
    labeled_share: float = typer.Option(0.25, "--labeled-share", help="Share of each batch drawn from the labelled images, for methods that learn from unlabelled ones."),
    label_seed: int = typer.Option(0, "--label-seed", help="Which images keep their labels (independent of --seed)."),
    image_size: Optional[int] = typer.Option(None, "--image-size", help="Input size (imagefolder/synthetic)."),
    channels: Optional[int] = typer.Option(None, "--channels", help="Model input channels (1 or 3); grey data is repeated for 3."),
    seed: int = typer.Option(0, "--seed"),
    deterministic: bool = typer.Option(False, "--deterministic", help="Deterministic kernels (slower; bit-exact resume on CPU)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    amp: str = typer.Option("auto", "--amp", help="auto (bf16 on GPU), bf16 or off."),
    compile_mode: str = typer.Option("off", "--compile", help=COMPILE_HELP),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last completed epoch."),
    sync_bn: bool = typer.Option(False, "--sync-bn", help=SYNC_BN_HELP),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Train a teacher (or any zoo model) with cross-entropy; writes model.safetensors + JSON to --out."""
    from compress.workflows import train_teacher_run
    from compress.data import DataConfig
    from compress.train import TrainConfig

    cfg = TrainConfig(epochs=epochs, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay,
                      schedule=schedule, milestones=_ints(milestones, "--milestones"), warmup_epochs=warmup,
                      seed=seed, deterministic=deterministic, device=device, amp=amp, compile=compile_mode)
    data_cfg = DataConfig(name=data, data_dir=data_dir, download=download, batch_size=batch_size,
                          train_limit=train_limit, val_limit=val_limit, image_size=image_size, channels=channels,
                          seed=seed, workers=workers, labels_per_class=labels_per_class, label_fraction=label_fraction,
                          unlabeled_dir=unlabeled_dir, labeled_share=labeled_share, label_seed=label_seed)
    from compress.parallel import DistContext

    train_teacher_run(model, data_cfg, cfg, out, init=init, label_smoothing=label_smoothing, resume=resume,
                      progress=progress, dist=DistContext.from_env(sync_batchnorm=sync_bn or None))


SETTING_SHORT = {"factor": "-r"}  # one-letter aliases of method-setting options


def _setting_option(name: str, info: SettingInfo) -> inspect.Parameter:
    """The option of one method setting: its name, type and help all from the methods' config fields."""
    from compress.distill.settings import bare_type

    kind, flag = bare_type(info.hint), name.replace("_", "-")
    decls = [f"--{flag}/--no-{flag}" if kind is bool else f"--{flag}"]
    decls += [SETTING_SHORT[name]] if name in SETTING_SHORT else []
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=Optional[kind],
                             default=typer.Option(None, *decls, help=info.help, show_default=False))


def _with_method_options(after: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Adds one option per method setting (``compress.distill.settings_table``) after the option
    ``after``; the values the user gave reach the command as ``settings`` (name -> value)."""
    from compress.distill import settings_table

    table = {name: info for name, info in settings_table().items() if info.follows is None}

    def decorate(command: Callable[..., None]) -> Callable[..., None]:
        params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
                  for p in inspect.signature(command, eval_str=True).parameters.values() if p.name != "settings"]
        at = [p.name for p in params].index(after) + 1
        params[at:at] = [_setting_option(name, info) for name, info in table.items()]

        @functools.wraps(command)
        def wrapper(**kwargs: Any) -> None:
            given = {name: kwargs.pop(name) for name in table}
            command(**kwargs, settings={k: v for k, v in given.items() if v is not None})

        wrapper.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]  # what typer reads
        wrapper.__annotations__ = {}
        return wrapper

    return decorate


@app.command("distill")
@_with_method_options(after="preset")
def distill(
    student: str = typer.Option(..., "--student", "-s", help="Student model, e.g. mobilenetv2, resnet8x4."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder: model.safetensors (deployable student) + JSON."),
    teacher: list[str] = typer.Option([], "--teacher", "-t", help="Teacher model name or checkpoint (file or train-teacher folder); repeat for several teachers."),
    teacher_weights: list[str] = typer.Option([], "--teacher-weights", help="Weights per --teacher, same order: a file, or 'imagenet'."),
    method: str = typer.Option("atsc", "--method", help="atsc (default), simkd, kd or none (see `compress list methods`); the options below name the methods they apply to."),
    preset: Optional[str] = typer.Option(None, "--preset", help="Recipe: cifar100, imagenet or fashion-mnist (default: by dataset)."),
    strict: bool = typer.Option(False, "--strict", help="Stop when an adapted teacher keeps less than 1 - --teacher-drop-limit of its top-1."),
    teacher_margin: Optional[float] = typer.Option(None, "--teacher-margin", hidden=True),  # --teacher-drop-limit's old name
    data: str = typer.Option("fashion-mnist", "--data", "-d", help=DATA_HELP),
    data_dir: Optional[str] = typer.Option(None, "--data-dir", help="Folder with the dataset files."),
    download: bool = typer.Option(False, "--download", help="Download the dataset when missing (needs internet)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", "-e", help="Epochs (default: the preset's)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", "-b", help="Global batch size (default: the preset's; lr scales linearly)."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Peak learning rate (default: the preset's)."),
    weight_decay: Optional[float] = typer.Option(None, "--weight-decay", "--wd"),
    schedule: Optional[str] = typer.Option(None, "--schedule", help="cosine, multistep or constant."),
    milestones: Optional[str] = typer.Option(None, "--milestones", help="Multistep epochs, e.g. 150,180,210."),
    warmup: Optional[float] = typer.Option(None, "--warmup", help="Linear warm-up epochs."),
    workers: int = typer.Option(4, "--workers", help=WORKERS_HELP),
    train_limit: Optional[int] = typer.Option(None, "--train-limit", help="Use a fixed subset of N training images."),
    val_limit: Optional[int] = typer.Option(None, "--val-limit", help="Use a fixed subset of N validation images."),
    labels_per_class: Optional[int] = typer.Option(None, "--labels-per-class", help=LABELS_PER_CLASS_HELP),
    label_fraction: Optional[float] = typer.Option(None, "--label-fraction", help="Like --labels-per-class, as a fraction of each class (e.g. 0.02)."),
    unlabeled_dir: Optional[str] = typer.Option(None, "--unlabeled-dir", help="imagefolder: a folder of unlabelled images (any sub-folders) from the deployment domain, used by the teacher-side loss terms."),
    labeled_share: float = typer.Option(0.25, "--labeled-share", help="Share of each batch drawn from the labelled images, for methods that learn from unlabelled ones."),
    label_seed: int = typer.Option(0, "--label-seed", help="Which images keep their labels (independent of --seed)."),
    image_size: Optional[int] = typer.Option(None, "--image-size", help="Input size (imagefolder/synthetic)."),
    channels: Optional[int] = typer.Option(None, "--channels", help="Model input channels (1 or 3)."),
    seed: int = typer.Option(0, "--seed"),
    deterministic: bool = typer.Option(False, "--deterministic"),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    amp: str = typer.Option("auto", "--amp", help="auto (bf16 on GPU), bf16 or off."),
    compile_mode: str = typer.Option("off", "--compile", help=COMPILE_HELP),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out."),
    sync_bn: bool = typer.Option(False, "--sync-bn", help=SYNC_BN_HELP),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
    settings: Optional[dict[str, Any]] = None,
) -> None:
    """Distil a student from one or more teachers; writes the deployable student (backbone + projector(s) + shared classifier(s))."""
    from compress.data import DataConfig
    from compress.distill import DistillConfig, resolve_preset, training_defaults
    from compress.parallel import DistContext
    from compress.train import TrainConfig
    from compress.workflows import distill_run

    training, method_defaults, preset_name = resolve_preset(preset, data, {
        "epochs": epochs, "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay, "schedule": schedule,
        "milestones": _ints(milestones, "--milestones") or None, "warmup_epochs": warmup})
    batch = int(training.pop("batch_size", 128))
    cfg = TrainConfig(**{**training, "milestones": tuple(training.get("milestones", ())), "seed": seed,
                         "deterministic": deterministic, "device": device, "amp": amp, "strict": strict,
                         "compile": compile_mode})
    # Explicit options > the preset's method settings > those following the training (ATSC's momentum).
    given = {"teacher_drop_limit": teacher_margin} if teacher_margin is not None else {}
    distill_cfg = DistillConfig.with_defaults(method, given | (settings or {}), training_defaults(cfg) | method_defaults)
    data_cfg = DataConfig(name=data, data_dir=data_dir, download=download, batch_size=batch, train_limit=train_limit,
                          val_limit=val_limit, image_size=image_size, channels=channels, seed=seed, workers=workers,
                          labels_per_class=labels_per_class, label_fraction=label_fraction, unlabeled_dir=unlabeled_dir,
                          labeled_share=labeled_share, label_seed=label_seed)
    typer.echo(f"preset {preset_name}: {cfg.epochs} epochs, batch {batch}, lr {cfg.lr:g} {cfg.schedule}", err=True)
    distill_run(student, list(teacher), list(teacher_weights), distill_cfg, data_cfg, cfg, out, resume=resume,
                progress=progress, dist=DistContext.from_env(sync_batchnorm=sync_bn or None))


@app.command("export")
def export(
    checkpoint: Path = typer.Argument(..., help="Deployable checkpoint (model.safetensors) or its run folder."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder (default: CHECKPOINT_DIR/export)."),
    onnx: bool = typer.Option(True, "--onnx/--no-onnx", help="Write model.onnx (fp32), checked against PyTorch."),
    int8: bool = typer.Option(False, "--int8", help="Also write model.int8.onnx (ONNX Runtime static INT8, QDQ)."),
    trt: bool = typer.Option(False, "--trt", help="Also build a TensorRT engine model.plan (needs an NVIDIA GPU + TensorRT)."),
    precision: str = typer.Option("fp16", "--precision", help="TensorRT precision: fp32, fp16 or int8."),
    batch: str = typer.Option("1,8,32", "--batch", help="TensorRT batch profile min,opt,max."),
    calibration: int = typer.Option(512, "--calibration", help="INT8 calibration images (from the training split)."),
    calib_method: str = typer.Option("minmax", "--calib-method", help="INT8 calibration: minmax, entropy or percentile."),
    exporter: str = typer.Option("dynamo", "--exporter", help="torch.onnx exporter: dynamo (default) or torchscript."),
    data_dir: Optional[str] = typer.Option(None, "--data-dir", help="Dataset folder for parity/calibration images."),
    workspace_mb: int = typer.Option(1024, "--workspace-mb", help="TensorRT builder workspace limit."),
    trust: bool = typer.Option(False, "--trust", help="Use a checkpoint whose hash does not match its sidecar."),
) -> None:
    """Export a distilled student to ONNX (parity-checked), ONNX INT8 and/or a TensorRT engine."""
    import json

    from compress.export.command import export_command

    folder = checkpoint if checkpoint.is_dir() else checkpoint.parent
    summary = export_command(checkpoint, out or folder / "export", onnx=onnx, int8=int8, trt=trt, precision=precision,
                             batch=batch, calibration=calibration, calib_method=calib_method, exporter=exporter,
                             data=_export_data(checkpoint, data_dir), trust=trust, workspace_mb=workspace_mb)
    typer.echo(json.dumps(summary.get("files", {}), indent=2))


def _export_data(checkpoint: Path, data_dir: Optional[str]):  # type: ignore[no-untyped-def]
    """The dataset recorded with the checkpoint, optionally from another folder."""
    if data_dir is None:
        return None
    from compress.artifacts import read_sidecar
    from compress.data import DataConfig

    path = checkpoint / "model.safetensors" if checkpoint.is_dir() else checkpoint
    record = read_sidecar(path, verify=False).get("data", {})
    return DataConfig(name=record.get("name", "fashion-mnist"), data_dir=data_dir)


def _stage_name(path: Path, taken: set[str]) -> str:
    name = {".onnx": "int8" if path.name.endswith(".int8.onnx") else "onnx", ".plan": "tensorrt",
            ".engine": "tensorrt", ".safetensors": "pytorch"}.get(path.suffix, path.stem)
    base, i = name, 2
    while name in taken:
        name, i = f"{base}{i}", i + 1
    return name


@app.command("validate")
def validate(
    artifacts: list[Path] = typer.Argument(..., help="Checkpoint(s) (.safetensors), ONNX model(s), TensorRT engine(s)."),
    reference: Optional[Path] = typer.Option(None, "--reference", help="Reference artifact for agreement and speed-up (default: the first PyTorch checkpoint, else the first artifact)."),
    data: str = typer.Option("fashion-mnist", "--data", "-d", help=DATA_HELP),
    data_dir: Optional[str] = typer.Option(None, "--data-dir"),
    val_limit: Optional[int] = typer.Option(None, "--val-limit", help="Validate on a fixed subset of N images."),
    batch_sizes: str = typer.Option("1,32", "--batch-sizes", help="Latency batch sizes."),
    threads: str = typer.Option("2", "--threads", help="CPU thread counts to time."),
    duration: float = typer.Option(2.0, "--duration", help="Seconds of timed runs per engine, batch size and thread count."),
    provider: str = typer.Option("cpu", "--provider", help="ONNX Runtime execution provider: cpu, cuda or tensorrt."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write report.json/md/png here."),
    min_agreement: Optional[float] = typer.Option(None, "--min-agreement", help="Gate: top-1 agreement with the reference, percent."),
    max_top1_drop: Optional[float] = typer.Option(None, "--max-top1-drop", help="Gate: top-1 drop vs the reference, points."),
    max_p90_ms: Optional[float] = typer.Option(None, "--max-p90-ms", help="Gate: p90 latency at batch 1, ms."),
    min_speedup: Optional[float] = typer.Option(None, "--min-speedup", help="Gate: speed-up vs the reference at batch 1, measured in the same run."),
    min_top1: Optional[float] = typer.Option(None, "--min-top1", help="Gate: top-1 floor, percent."),
    no_latency: bool = typer.Option(False, "--no-latency", help="Accuracy and agreement only."),
    trust: bool = typer.Option(False, "--trust", help="Use artifacts whose hash does not match their sidecar."),
) -> None:
    """Accuracy, agreement and latency of artifacts against a reference, with optional gates (exit 1 on failure)."""
    from compress.data import DataConfig
    from compress.validate import GateSpec, check_gates, gate_table, validate_artifacts, write_report

    paths = list(artifacts) + ([reference] if reference and reference not in artifacts else [])
    names: dict[str, Path] = {}
    for path in paths:
        names[_stage_name(path, set(names))] = path
    if reference is not None:
        ref_name = next(n for n, p in names.items() if p == reference)
    else:
        ref_name = next((n for n, p in names.items() if p.suffix == ".safetensors"), next(iter(names)))
    gate_values = {"min_agreement": min_agreement, "max_top1_drop": max_top1_drop, "max_p90_ms": max_p90_ms,
                   "min_speedup": min_speedup, "min_top1": min_top1}
    gates = GateSpec(**{k: v for k, v in gate_values.items() if v is not None}) if any(
        v is not None for v in gate_values.values()) else None
    result = validate_artifacts({n: str(p) for n, p in names.items()},
                                DataConfig(name=data, data_dir=data_dir, val_limit=val_limit), ref_name,
                                _ints(batch_sizes, "--batch-sizes") or (1,), _ints(threads, "--threads") or (2,),
                                duration, gates, trust, providers={n: provider for n in names if n != "pytorch"},
                                measure_latency=not no_latency)
    from compress.validate import render_markdown

    typer.echo(render_markdown(result))
    if out is not None:
        paths_written = write_report(result, out)
        typer.echo(f"report: {paths_written.markdown}")
    if result.gates:
        failed = gate_table(result.gates)
        if failed:
            typer.echo(failed, err=True)
        check_gates(result.gates)


@app.command("run")
def run(
    recipe: Path = typer.Argument(..., help="Pipeline recipe (YAML), e.g. pipelines/fashion_mnist.yaml."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run folder (default: runs/<recipe name>)."),
    from_stage: Optional[str] = typer.Option(None, "--from", help="Re-run this stage and everything after it."),
    until_stage: Optional[str] = typer.Option(None, "--until", help="Stop after this stage."),
    force: bool = typer.Option(False, "--force", help="Re-run every selected stage even if its inputs are unchanged."),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Run a staged pipeline: teacher(s) -> distill -> ONNX -> INT8 -> TensorRT -> validate -> report.

    Stages whose inputs are unchanged are skipped; a killed run resumes where it stopped. Gates that
    fail print a table and exit 1 (after the report is written)."""
    from compress.pipeline import run_pipeline

    result = run_pipeline(recipe, out=out, from_stage=from_stage, until_stage=until_stage, force=force,
                          progress=progress)
    typer.echo(f"run folder: {result.run_dir}" + (f"\nreport: {result.report}" if result.report else ""))


def main(argv: Optional[list[str]] = None) -> None:
    try:
        app(args=argv, standalone_mode=False)
    except CompressError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except typer.Abort:
        typer.echo("error: aborted", err=True)
        sys.exit(130)
    except typer.TyperException as exc:  # typer's usage errors (it vendors click)
        if type(exc).__name__ == "NoArgsIsHelpError":  # bare `compress`: show the help, not an error
            typer.echo(exc.format_message())
            sys.exit(0)
        args = sys.argv[1:] if argv is None else argv
        command = next((a for a in args if not a.startswith("-")), "")
        where = f"compress {command} --help" if command else "compress --help"
        typer.echo(f"error: {exc.format_message()} (see `{where}`)", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        typer.echo("error: interrupted; finished epochs are saved, continue with --resume", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
