"""`compress train-teacher` and `compress distill`: one library call each."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from compress.cli.app import app, logger
from compress.cli.options import (COMPILE_HELP, DATA_HELP, HOLDOUT_HELP, LABELS_PER_CLASS_HELP, SHIFT_HELP, SHIFT_SEED_HELP,
                                  SYNC_BN_HELP, WORKERS_HELP, _ints, _progress, _with_method_options)

SAVE_EVERY_HELP = ("Seconds of an epoch between resume states saved in its middle (epochs shorter than this save "
                   "only at their end); --resume then goes on from the last one with the same weights. 0: epoch ends only.")


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
    holdout_per_class: Optional[int] = typer.Option(None, "--holdout-per-class", help=HOLDOUT_HELP),
    shift: Optional[str] = typer.Option(None, "--shift", help=SHIFT_HELP),
    shift_seed: int = typer.Option(0, "--shift-seed", help=SHIFT_SEED_HELP),
    image_size: Optional[int] = typer.Option(None, "--image-size", help="Input size (imagefolder/synthetic)."),
    channels: Optional[int] = typer.Option(None, "--channels", help="Model input channels (1 or 3); grey data is repeated for 3."),
    seed: int = typer.Option(0, "--seed"),
    deterministic: bool = typer.Option(False, "--deterministic", help="Deterministic kernels (slower; bit-exact resume on CPU)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    amp: str = typer.Option("auto", "--amp", help="auto (bf16 on GPU), bf16 or off."),
    compile_mode: str = typer.Option("off", "--compile", help=COMPILE_HELP),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last saved state."),
    save_every: float = typer.Option(300.0, "--save-every", help=SAVE_EVERY_HELP),
    sync_bn: bool = typer.Option(False, "--sync-bn", help=SYNC_BN_HELP),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Train a teacher (or any zoo model) with cross-entropy; writes model.safetensors + JSON to --out."""
    from compress.workflows import train_teacher_run
    from compress.data import DataConfig
    from compress.train import TrainConfig

    cfg = TrainConfig(epochs=epochs, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay,
                      schedule=schedule, milestones=_ints(milestones, "--milestones"), warmup_epochs=warmup,
                      seed=seed, deterministic=deterministic, device=device, amp=amp, compile=compile_mode,
                      save_every_s=save_every)
    data_cfg = DataConfig(name=data, data_dir=data_dir, download=download, batch_size=batch_size,
                          train_limit=train_limit, val_limit=val_limit, image_size=image_size, channels=channels,
                          seed=seed, workers=workers, labels_per_class=labels_per_class, label_fraction=label_fraction,
                          unlabeled_dir=unlabeled_dir, labeled_share=labeled_share, label_seed=label_seed,
                          holdout_per_class=holdout_per_class, shift=shift, shift_seed=shift_seed)
    from compress.parallel import DistContext

    train_teacher_run(model, data_cfg, cfg, out, init=init, label_smoothing=label_smoothing, resume=resume,
                      progress=_progress(progress), dist=DistContext.from_env(sync_batchnorm=sync_bn or None))


@app.command("distill")
@_with_method_options(after="preset")
def distill(
    student: str = typer.Option(..., "--student", "-s", help="Student model, e.g. mobilenetv2, resnet8x4."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder: model.safetensors (deployable student) + JSON (default: runs/STUDENT-from-TEACHER)."),
    teacher: list[str] = typer.Option([], "--teacher", "-t", help="Teacher model name or checkpoint (file or train-teacher folder); repeat for several teachers."),
    teacher_weights: list[str] = typer.Option([], "--teacher-weights", help="Weights per --teacher, same order: a file, or 'imagenet'."),
    method: str = typer.Option("atsc", "--method", help="atsc (default), simkd, kd or none (see `compress list methods`); the options below name the methods they apply to."),
    preset: Optional[str] = typer.Option(None, "--preset", help="Recipe: cifar100, imagenet or fashion-mnist (default: by dataset)."),
    strict: bool = typer.Option(False, "--strict", help="Stop when an adapted teacher keeps less than 1 - --teacher-drop-limit of its top-1."),
    teacher_margin: Optional[float] = typer.Option(None, "--teacher-margin", hidden=True),  # --teacher-drop-limit's old name
    data: Optional[str] = typer.Option(None, "--data", "-d", help=DATA_HELP + " Required with an ImageNet teacher."),
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
    holdout_per_class: Optional[int] = typer.Option(None, "--holdout-per-class", help=HOLDOUT_HELP),
    shift: Optional[str] = typer.Option(None, "--shift", help=SHIFT_HELP),
    shift_seed: int = typer.Option(0, "--shift-seed", help=SHIFT_SEED_HELP),
    image_size: Optional[int] = typer.Option(None, "--image-size", help="Input size (imagefolder/synthetic)."),
    channels: Optional[int] = typer.Option(None, "--channels", help="Model input channels (1 or 3)."),
    seed: int = typer.Option(0, "--seed"),
    deterministic: bool = typer.Option(False, "--deterministic"),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    amp: str = typer.Option("auto", "--amp", help="auto (bf16 on GPU), bf16 or off."),
    compile_mode: str = typer.Option("off", "--compile", help=COMPILE_HELP),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out."),
    save_every: float = typer.Option(300.0, "--save-every", help=SAVE_EVERY_HELP),
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
    from compress.workflows import default_data, default_out

    if data is None:
        data = default_data(teacher, teacher_weights)  # refuses an ImageNet teacher on the 28 px default
    if out is None:
        out = default_out(student, teacher)
        logger.info(f"output folder: {out} (pass --out to choose)")
    training, method_defaults, preset_name = resolve_preset(preset, data, {
        "epochs": epochs, "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay, "schedule": schedule,
        "milestones": _ints(milestones, "--milestones") or None, "warmup_epochs": warmup})
    batch = int(training.pop("batch_size", 128))
    cfg = TrainConfig(**{**training, "milestones": tuple(training.get("milestones", ())), "seed": seed,
                         "deterministic": deterministic, "device": device, "amp": amp, "strict": strict,
                         "compile": compile_mode, "save_every_s": save_every})
    # Explicit options > the preset's method settings > those following the training (ATSC's momentum).
    given = {"teacher_drop_limit": teacher_margin} if teacher_margin is not None else {}
    distill_cfg = DistillConfig.with_defaults(method, given | (settings or {}), training_defaults(cfg) | method_defaults)
    data_cfg = DataConfig(name=data, data_dir=data_dir, download=download, batch_size=batch, train_limit=train_limit,
                          val_limit=val_limit, image_size=image_size, channels=channels, seed=seed, workers=workers,
                          labels_per_class=labels_per_class, label_fraction=label_fraction, unlabeled_dir=unlabeled_dir,
                          labeled_share=labeled_share, label_seed=label_seed,
                          holdout_per_class=holdout_per_class, shift=shift, shift_seed=shift_seed)
    logger.info(f"preset {preset_name}: {cfg.epochs} epochs, batch {batch}, lr {cfg.lr:g} {cfg.schedule}")
    api.distill(student, list(teacher), data_cfg, distill_cfg.method, out, teacher_weights=list(teacher_weights),
                train=cfg, config=distill_cfg, resume=resume, progress=_progress(progress),
                dist=DistContext.from_env(sync_batchnorm=sync_bn or None), log=logger.info)
