"""The command line. The only module that imports typer; each command is one library call.

Results go to stdout (``--json`` where a command prints one), diagnostics to stderr through ``logging``
(``compress.logs``: ``-v``/``-q``, ``--log-file``). User mistakes raise ``CompressError``; ``main`` prints
them as one line and exits with the error's code (``compress.errors.EXIT_CODES``): 1 the run failed,
2 a usage error (click's own, such as a missing option or a value of the wrong type, in the same
one-line form), 3 a gate failed, 130 interrupted by Ctrl-C.
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
import sys
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, TypeVar

import typer
from typer.core import TyperGroup

from compress import logs
from compress.errors import EXIT_CODES, CompressError, Interrupted, UsageError
from compress.export.backends import BACKENDS
from compress.validate.gates import GATES

Command = TypeVar("Command", bound=Callable[..., Any])

if TYPE_CHECKING:
    from compress.distill.config import SettingInfo
    from compress.validate import GateResult

logger = logs.get_logger(__name__)
EXIT_HELP = "Exit codes: " + "; ".join(f"{code} {meaning}" for code, meaning in EXIT_CODES.items()) + "."

class _Interrupt(Exception):
    """Carries Ctrl-C from a command to ``main``; typer would turn a ``KeyboardInterrupt`` into a bare 130."""

    def __init__(self, stop: KeyboardInterrupt) -> None:
        super().__init__(str(stop))
        self.stop = stop


class _Commands(TyperGroup):
    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as stop:
            raise _Interrupt(stop) from None


app = typer.Typer(
    cls=_Commands,
    name="compress",
    help="Distil image classifiers (ATSC, SimKD, KD), export them to ONNX / TensorRT, and validate accuracy "
         "and latency at every stage. Start with `compress list models` or `compress train-teacher --help`. "
         "Results go to stdout, diagnostics to stderr.",
    epilog=EXIT_HELP,
    add_completion=True,  # --install-completion / --show-completion
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _show_version(value: bool) -> None:
    if value:
        from compress import __version__

        typer.echo(f"compress {__version__}")
        raise typer.Exit()


@app.callback()
def common_options(
    ctx: typer.Context,
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, show_default=False, help="Also debug lines on stderr."),
    quiet: int = typer.Option(0, "--quiet", "-q", count=True, show_default=False,
                              help="Only warnings and errors on stderr, no progress bars; -qq: errors only."),
    log_file: Optional[Path] = typer.Option(None, "--log-file", help="Also write every log line, with its time, to this "
                                                                     "file (appended), whatever -v/-q say."),
    version: bool = typer.Option(False, "--version", callback=_show_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """Options for every command; they come before the command: `compress -q --log-file run.log run ...`."""
    try:
        logs.configure(logs.level_for(verbose, quiet), log_file)
    except OSError as exc:
        raise UsageError(f"--log-file: cannot write '{log_file}' ({exc.strerror}): choose a writable path") from None
    from compress import __version__

    logger.debug(f"compress {__version__}, command {ctx.invoked_subcommand}, Python {sys.version.split()[0]}")


def _progress(wanted: bool) -> bool:
    """Progress bars are diagnostics too: -q hides them."""
    return wanted and logs.stderr_level() <= logging.INFO


JSON_HELP = "Print the result as JSON on stdout (diagnostics stay on stderr)."
JUNIT_HELP = "Write the gates as JUnit XML to FILE: one test case per gate and stage (CI test reports)."
SUMMARY_HELP = "Append the gates as a GitHub-flavoured Markdown table to FILE, e.g. \"$GITHUB_STEP_SUMMARY\"."


def _publish(suite: str, gates: list[GateResult], junit: Optional[Path], summary: Optional[Path]) -> None:
    from compress.validate import publish_gates

    publish_gates({suite: gates}, junit, summary, name=f"{suite} (compress gates)")
    for path in (junit, summary):
        if path is not None:
            logger.info(f"gates: {path}")


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
        raise UsageError(f"{option} takes comma-separated whole numbers, e.g. 150,180,210; got '{text}'") from None


def _with_options(extra: list[inspect.Parameter], after: str) -> Callable[[Command], Command]:
    """Insert options built from a table into a command's signature, after parameter ``after``; typer reads
    the signature and passes them as keyword arguments. A new export backend or gate needs no edit here."""

    def add(command: Command) -> Command:
        signature = inspect.signature(command)
        own = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        at = [p.name for p in own].index(after) + 1
        command.__signature__ = signature.replace(parameters=own[:at] + extra + own[at:])  # type: ignore[attr-defined]
        return command

    return add


def _option(name: str, annotation: Any, default: Any) -> inspect.Parameter:
    # positional-or-keyword like typer's own options; typer passes every option by keyword
    return inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default, annotation=annotation)


# `compress export --onnx/--no-onnx --int8 --trt ...`: one flag per export backend
BACKEND_FLAGS = [_option(b.name, bool, typer.Option(b.default, f"--{b.flag}/--no-{b.flag}" if b.default else f"--{b.flag}",
                                                    help=b.help)) for b in BACKENDS.values()]
# `compress validate --min-agreement 99.9 ...`: one option per gate
GATE_OPTIONS = [_option(g.name, Optional[float], typer.Option(None, f"--{g.name.replace('_', '-')}", help=f"Gate: {g.help}"))
                for g in GATES.values()]


def _listing(what: ListWhat) -> list[tuple[str, str]]:
    """(name, description) of every registered entry of a kind."""
    if what is ListWhat.models:
        from compress.models.zoo import model_listing

        return [(name, f"{source:12s} {family}") for name, source, family in model_listing()]
    if what is ListWhat.datasets:
        from compress.data import DATASETS

        return [(name, DATASETS.get(name).description) for name in DATASETS.names()]
    if what is ListWhat.methods:
        from compress.distill import METHODS

        return [(name, METHODS.get(name).summary) for name in METHODS.names()]
    if what is ListWhat.projectors:
        from compress.distill import PROJECTORS

        return [(name, "") for name in PROJECTORS.names()]
    from compress.distill import PRESETS

    return [(name, PRESETS.get(name).get("description", "")) for name in PRESETS.names()]


@app.command("schema")
def schema(markdown: bool = typer.Option(False, "--markdown", help="Print the reference of every key with its type, default and meaning (docs/recipes.md) instead.")) -> None:
    """Print the JSON Schema of a pipeline recipe, generated from the config classes (for editors and CI checks)."""
    from compress.pipeline.schema import recipe_markdown, recipe_schema

    typer.echo(recipe_markdown() if markdown else json.dumps(recipe_schema(), indent=2), nl=not markdown)


@app.command("list")
def list_command(what: ListWhat = typer.Argument(..., help="What to list."),
                 json_output: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """List registered models, datasets, distillation methods, projectors or presets."""
    rows = _listing(what)
    if json_output:
        typer.echo(json.dumps([{"name": name, "description": text} for name, text in rows], indent=2))
        return
    width = max((len(name) for name, _ in rows), default=0) + 2
    for name, text in rows:
        typer.echo(f"{name:{width}s}{text}".rstrip())


# Options shared by the training commands (typer wants them spelled out per command).
MODEL_FACTORY_HELP = ("For a student built from your code (compress.model): its factory as package.module:function. "
                      "compress imports it (and runs it) only when you pass it here, never from a checkpoint.")
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
                      progress=_progress(progress), dist=DistContext.from_env(sync_batchnorm=sync_bn or None))


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
    from compress import api
    from compress.train import TrainConfig

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
    logger.info(f"preset {preset_name}: {cfg.epochs} epochs, batch {batch}, lr {cfg.lr:g} {cfg.schedule}")
    api.distill(student, list(teacher), data_cfg, distill_cfg.method, out, teacher_weights=list(teacher_weights),
                train=cfg, config=distill_cfg, resume=resume, progress=_progress(progress),
                dist=DistContext.from_env(sync_batchnorm=sync_bn or None), log=logger.info)


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


BASELINE_HELP = ("A report.json of an earlier validation (compress validate --out, compress run): fail when a stage's "
                 "top-1 dropped or its speed-up over the reference shrank by more than the baseline gates allow.")


@app.command("validate", epilog=EXIT_HELP)
@_with_options(GATE_OPTIONS, after="out")
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

    given = {gate: value for gate, value in thresholds.items() if value is not None}
    needs_baseline = [name for name in given if GATES[name].baseline]
    if needs_baseline and baseline is None:
        raise UsageError(f"--{needs_baseline[0].replace('_', '-')} compares with a stored report: add --baseline "
                         "REPORT.json")
    stored = read_result(baseline, "--baseline") if baseline is not None else None  # before minutes of work
    names, ref_name = artifact_names(artifacts, reference)
    result = api.validate(names, DataConfig(name=data, data_dir=data_dir, val_limit=val_limit), ref_name,
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


@app.command("run", epilog=EXIT_HELP)
def run(
    recipe: Path = typer.Argument(..., help="Pipeline recipe (YAML), e.g. pipelines/fashion_mnist.yaml."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run folder (default: runs/<recipe name>)."),
    from_stage: Optional[str] = typer.Option(None, "--from", help="Re-run this stage and everything after it."),
    until_stage: Optional[str] = typer.Option(None, "--until", help="Stop after this stage."),
    force: bool = typer.Option(False, "--force", help="Re-run every selected stage even if its inputs are unchanged."),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
    junit: Optional[Path] = typer.Option(None, "--junit", help=JUNIT_HELP),
    summary: Optional[Path] = typer.Option(None, "--summary", help=SUMMARY_HELP),
    json_output: bool = typer.Option(False, "--json", help=JSON_HELP),
    overrides: list[str] = typer.Option([], "--set", metavar="KEY=VALUE", help="Change a recipe key: --set distill.train.epochs=4 (a YAML value: --set validate.batch_sizes=[1,8]); repeatable. Keys: docs/recipes.md."),
) -> None:
    """Run a staged pipeline: teacher(s) -> distill -> export (ONNX, INT8, TensorRT) -> validate -> report.

    Stages whose inputs are unchanged are skipped; a killed or interrupted run resumes where it stopped.
    A failed gate of any stage prints a table and exits 3, once every artifact and report is written."""
    from compress.pipeline import load_recipe, run_pipeline
    from compress.validate import check_gates

    result = run_pipeline(load_recipe(recipe, overrides), out=out, from_stage=from_stage, until_stage=until_stage, force=force,
                          progress=_progress(progress), raise_on_failed_gates=False)
    gates = result.validation.gates if result.validation is not None else []
    _publish(recipe.stem, gates, junit, summary)
    if json_output:
        typer.echo(json.dumps({"run_dir": str(result.run_dir), "report": str(result.report) if result.report else None,
                               "passed": not any(g.status == "fail" for g in gates),
                               "stages": [vars(stage) for stage in result.stages],
                               "gates": [g.to_dict() for g in gates]}, indent=2))
    else:
        typer.echo(f"run folder: {result.run_dir}" + (f"\nreport: {result.report}" if result.report else ""))
    check_gates(gates)


def _command(args: list[str]) -> str:
    """The command named in ``args`` (the first word that is neither an option nor a global option's value)."""
    words = iter(args)
    for word in words:
        if word == "--log-file":
            next(words, None)
        elif not word.startswith("-"):
            return word
    return ""


def _interrupted(command: str, stop: BaseException | None) -> str:
    """One line: what Ctrl-C stopped, and how to go on from there."""
    what = str(stop) if isinstance(stop, Interrupted) else f"compress {command} stopped".replace("  ", " ")
    if command == "run":
        how = "run the same command again: finished stages are kept and training continues from its last saved epoch"
    elif isinstance(stop, Interrupted) and stop.resumable:
        how = "continue from the last saved epoch with the same command and --resume"
    else:
        how = "run the same command again"
    return f"interrupted: {what}; {how}"


def main(argv: Optional[list[str]] = None) -> None:
    """The ``compress`` command: run it, and turn what it raised into one line and an exit code (``EXIT_CODES``)."""
    args = sys.argv[1:] if argv is None else list(argv)
    logs.configure()  # the defaults until the common options are read: a usage error is logged like any other
    try:
        # typer returns 0 after --help and --version, and 130 for a Ctrl-C while it parses the command line
        code = app(args=args, prog_name="compress", standalone_mode=False)
        if code == 130:
            logger.error(_interrupted(_command(args), None))
    except _Interrupt as interrupt:  # Ctrl-C in a command
        logger.error(_interrupted(_command(args), interrupt.stop))
        code = 130
    except CompressError as exc:
        logger.error(str(exc))
        code = exc.exit_code
    except (KeyboardInterrupt, typer.Abort):  # Ctrl-C before typer took over (while importing), or an aborted prompt
        logger.error(_interrupted(_command(args), None))
        code = 130
    except typer.TyperException as exc:  # typer's usage errors (it vendors click): exit 2 like click
        if type(exc).__name__ == "NoArgsIsHelpError":  # bare `compress`: show the help, not an error
            typer.echo(exc.format_message())
            sys.exit(0)
        command = _command(args)
        where = f"compress {command} --help" if command else "compress --help"
        one_line = " ".join(exc.format_message().split())  # click lists choices on lines of their own
        logger.error(f"{one_line} (see `{where}`)")
        code = exc.exit_code
    if isinstance(code, int) and code != 0:  # success returns, as a console script's entry point may
        sys.exit(code)


if __name__ == "__main__":
    main()
