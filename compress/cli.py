"""The command line. The only module that imports typer; each command is one library call.

User mistakes raise ``CompressError``; ``main`` prints them as one line and exits 1. Click's own
usage errors (missing option, value of the wrong type) are turned into the same one-line form.
"""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from compress.errors import CompressError, ConfigError

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
DATA_HELP = "Dataset: fashion-mnist (default, Debian package), cifar10, cifar100, imagefolder, synthetic."


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
    train_limit: Optional[int] = typer.Option(None, "--train-limit", help="Use a fixed subset of N training images."),
    val_limit: Optional[int] = typer.Option(None, "--val-limit", help="Use a fixed subset of N validation images."),
    image_size: Optional[int] = typer.Option(None, "--image-size", help="Input size (imagefolder/synthetic)."),
    channels: Optional[int] = typer.Option(None, "--channels", help="Model input channels (1 or 3); grey data is repeated for 3."),
    seed: int = typer.Option(0, "--seed"),
    deterministic: bool = typer.Option(False, "--deterministic", help="Deterministic kernels (slower; bit-exact resume on CPU)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    amp: str = typer.Option("auto", "--amp", help="auto (bf16 on GPU), bf16 or off."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last completed epoch."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Train a teacher (or any zoo model) with cross-entropy; writes model.safetensors + JSON to --out."""
    from compress.workflows import train_teacher_run
    from compress.data import DataConfig
    from compress.train import TrainConfig

    cfg = TrainConfig(epochs=epochs, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay,
                      schedule=schedule, milestones=_ints(milestones, "--milestones"), warmup_epochs=warmup,
                      seed=seed, deterministic=deterministic, device=device, amp=amp)
    data_cfg = DataConfig(name=data, data_dir=data_dir, download=download, batch_size=batch_size,
                          train_limit=train_limit, val_limit=val_limit, image_size=image_size, channels=channels,
                          seed=seed)
    train_teacher_run(model, data_cfg, cfg, out, init=init, label_smoothing=label_smoothing, resume=resume,
                      progress=progress)


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
