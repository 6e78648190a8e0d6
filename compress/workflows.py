"""What each CLI command / pipeline stage does, as plain library calls: check inputs, build, train.

Every check that can fail on user input runs before anything is written, so a mistake leaves the
output folder as it was.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any, Callable, Sequence, Union

import torch
from torch import nn

from compress.artifacts import check_folder_free, sha256_file
from compress.data import DataBundle, DataConfig, load_data
from compress.distill import METHODS, DistillConfig, build_method
from compress.models.cost import deployed_cost, format_cost
from compress.distill.base import Supervised
from compress.errors import ConfigError, UsageError
from compress.logs import get_logger
from compress.models import ClassifierModel, ModelSpec, build_model, canonical_name, make_spec
from compress.models.weights import load_weights
from compress.output_folder import check_output_path
from compress.parallel import DistContext
from compress.record import MODEL_FILE, CheckpointRecord, RunInfo, resolve_checkpoint
from compress.train import FitResult, TrainConfig, evaluate, fit
from compress.train_config import resolve_device, seed_everything

logger = get_logger(__name__)


def data_record(cfg: DataConfig) -> dict[str, Any]:
    """What a later stage needs to reload the same data (recorded in sidecars)."""
    record = {"name": cfg.name, "data_dir": cfg.data_dir, "train_limit": cfg.train_limit, "val_limit": cfg.val_limit,
              "image_size": cfg.image_size}
    if cfg.partly_labeled:  # which labels the run could see (part of the resume fingerprint)
        record |= {"labels_per_class": cfg.labels_per_class, "label_fraction": cfg.label_fraction,
                   "unlabeled_dir": cfg.unlabeled_dir, "labeled_share": cfg.labeled_share, "label_seed": cfg.label_seed}
    # Only when set, so the records (and resume fingerprints) of runs without them stay as they were
    if cfg.holdout_per_class is not None:  # which images were held out is chosen by label_seed
        record |= {"holdout_per_class": cfg.holdout_per_class, "label_seed": cfg.label_seed}
    if cfg.shift is not None:
        record |= {"shift": cfg.shift, "shift_seed": cfg.shift_seed}
    return record


def prepare(data_cfg: DataConfig, train_cfg: TrainConfig, out: Path, dist: DistContext | None = None,
            inputs: Sequence[str | Path | None] = ()) -> tuple[torch.device, DataBundle]:
    """Check the settings and the output folder (which must hold none of ``inputs``, nor the data), seed,
    and load the data."""
    data_cfg.validate()  # first: a batch size out of range is named as such, not as the lr it scales
    train_cfg.validate()
    check_output_path(out, [*inputs, data_cfg.data_dir, data_cfg.unlabeled_dir])
    dist = dist or DistContext.single()
    if dist.is_main:  # a folder another run holds is the one line, before the data is read and described
        check_folder_free(out)
    # seed before any model is built, so --seed fixes the initial weights too (same on every rank)
    seed_everything(train_cfg.seed, train_cfg.deterministic)
    device = resolve_device(dist.device(train_cfg.device))
    channels_last = train_cfg.channels_last if train_cfg.channels_last is not None else device.type == "cuda"
    train_cfg.channels_last = channels_last
    data = load_data(data_cfg, device=device, channels_last=channels_last, rank=dist.rank, world_size=dist.world_size)
    # always said: a default dataset picked silently is how an ImageNet teacher met Fashion-MNIST
    dist.main_only(logger.info)(f"data: {data.info.name}, {data.train.num_samples:,} training and "
                                f"{data.val.num_samples:,} validation images, {data.num_classes} classes, "
                                f"{data.image_size} px, {data.preprocessing.channels} channel(s)")
    return device, data


DEFAULT_DATA = "fashion-mnist"  # what `compress distill` trains on when --data is not given
IMAGENET_WEIGHTS = ("imagenet", "pretrained", "torchvision")  # the names load_weights reads as torchvision's


def _imagenet_teacher(name: str, weights: str | None) -> bool:
    """Whether a teacher's weights are ImageNet's: named so, or a torchvision zoo model (whose only weights
    are ImageNet's) given without a file."""
    if weights is not None:
        return weights.lower() in IMAGENET_WEIGHTS or (name.startswith("timm:") and not Path(weights).exists())
    if _teacher_checkpoint(name) is not None:
        return False
    from compress.models.zoo import MODELS, TORCHVISION_PREFIX

    bare = name.removeprefix(TORCHVISION_PREFIX)
    return bare in MODELS and not MODELS.get(bare).cifar_style


def default_data(teachers: Sequence[str], teacher_weights: Sequence[str]) -> str:
    """The dataset when none is given: Fashion-MNIST, unless a teacher is an ImageNet model, which needs the
    user's images (training it against 28 px grey Fashion-MNIST would run, and mean nothing)."""
    for i, name in enumerate(teachers):
        weights = teacher_weights[i] if i < len(teacher_weights) else None
        if _imagenet_teacher(name, weights):
            weights_hint = "" if weights else " (and --teacher-weights imagenet or FILE)"
            raise UsageError(f"teacher '{name}' is an ImageNet model but no --data was given (the default, "
                             f"{DEFAULT_DATA}, is 28 px grey): pass your images, e.g. --data imagefolder "
                             f"--data-dir DIR{weights_hint}")
    return DEFAULT_DATA


def _label(value: str) -> str:
    """A model or teacher as a folder-name part: a checkpoint by its file stem or run folder."""
    path = Path(value)
    if path.suffix == ".safetensors":
        value = path.parent.name if path.name == MODEL_FILE else path.stem
    elif len(path.parts) > 1:
        value = path.name
    return re.sub(r"[^A-Za-z0-9._+-]+", "-", value).strip("-.") or "model"


def default_out(student: str, teachers: Sequence[str]) -> Path:
    """Where `compress distill` writes when --out is not given: runs/<student>-from-<teacher>[+<teacher>],
    or runs/<student>-alone without a teacher."""
    source = "-from-" + "+".join(_label(t) for t in teachers) if teachers else "-alone"
    return Path("runs") / (_label(student) + source)


def train_teacher_run(model_name: str, data_cfg: DataConfig, train_cfg: TrainConfig, out: Path, *,
                      init: str | None = None, label_smoothing: float = 0.0, resume: bool = False,
                      progress: bool = True, dist: DistContext | None = None) -> FitResult:
    canonical_name(model_name)  # unknown names fail before any data is read
    if not 0 <= label_smoothing < 1:
        raise ConfigError(f"label smoothing must be in [0, 1), got {label_smoothing}")
    device, data = prepare(data_cfg, train_cfg, out, dist, inputs=[init])
    spec = make_spec(model_name, data.num_classes, data.preprocessing.channels, data.image_size)
    model = build_model(spec)
    inputs: dict[str, str] = {}
    if init:
        source = load_weights(model, init, allow_new_head=True)
        if Path(init).exists():
            inputs[init] = sha256_file(init)
        else:
            inputs[init] = source
    model = model.to(device)
    if train_cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    info = RunInfo(role="teacher", model=spec.to_dict(), data=data_record(data_cfg),
                   method={"name": "none", "label_smoothing": label_smoothing})
    return fit(Supervised(model, label_smoothing), data, train_cfg, out, resume=resume, info=info, inputs=inputs,
               progress=progress, dist=dist)


def _teacher_checkpoint(value: str) -> Path | None:
    """``--teacher`` may name a checkpoint (file or run folder) instead of a zoo model."""
    path = resolve_checkpoint(value)
    return path if path.suffix == ".safetensors" or path.exists() else None


def load_teacher(name: str, weights: str | None, data: DataBundle, device: torch.device) -> tuple[ClassifierModel, str]:
    """A teacher with weights, checked against the data; returns it and its weights' hash/source."""
    checkpoint = _teacher_checkpoint(name)
    if checkpoint is not None:
        from compress.deployable import load_deployable

        module, pre, _ = load_deployable(checkpoint)
        if not isinstance(module, ClassifierModel):
            raise ConfigError(f"'{checkpoint}' is a distilled student, not a teacher: pass a model trained with "
                              "`compress train-teacher`")
        source = sha256_file(checkpoint)
        if (pre.image_size, pre.mean, pre.std) != (data.preprocessing.image_size, data.preprocessing.mean,
                                                   data.preprocessing.std):
            raise ConfigError(f"teacher '{checkpoint}' was trained on {pre.image_size} px inputs with mean {pre.mean}, "
                              f"but this data gives {data.preprocessing.image_size} px with mean {data.preprocessing.mean}: "
                              "teachers must see the same inputs as the student")
        teacher = module
    else:
        canonical_name(name)
        if weights is None:
            raise ConfigError(f"teacher '{name}' has no weights: pass --teacher-weights FILE|imagenet (timm: a pretrained tag), or a checkpoint "
                              f"as --teacher (train one with `compress train-teacher --model {name} --out DIR`)")
        teacher = build_model(make_spec(name, data.num_classes, data.preprocessing.channels, data.image_size))
        source = load_weights(teacher, weights)
        if Path(weights).exists():
            source = sha256_file(weights)
    if teacher.num_classes != data.num_classes:
        raise ConfigError(f"teacher {teacher.spec.name} has {teacher.num_classes} classes but the data has "
                          f"{data.num_classes}: use a teacher trained on this label space")
    if teacher.in_channels != data.preprocessing.channels:
        raise ConfigError(f"teacher {teacher.spec.name} takes {teacher.in_channels}-channel images but --channels is "
                          f"{data.preprocessing.channels}: pass --channels {teacher.in_channels}")
    return teacher.to(device), source


ModelArg = Union[str, nn.Module]


def module_digest(module: nn.Module) -> str:
    """A content hash of a module's weights (what a teacher given as a module is recorded by)."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return "sha256:" + digest.hexdigest()


def as_classifier(model: nn.Module, data: DataBundle, role: str) -> ClassifierModel:
    """A module given from Python as a ``ClassifierModel`` checked against the data. A bare ``nn.Module`` is
    cut automatically; it can train and teach, but only one built by ``compress.model`` can be saved."""
    if not isinstance(model, ClassifierModel):
        from compress.models.user import PREFIX, reference_of
        from compress.models.wrapped import wrap_module

        spec = ModelSpec(PREFIX + reference_of(type(model)), data.num_classes, data.preprocessing.channels)
        model = wrap_module(model, spec)
        model.unrecordable = ("it was passed as a module; build it with compress.model(factory, **kwargs) so a "
                              "checkpoint can rebuild it")
    if (model.num_classes, model.in_channels) != (data.num_classes, data.preprocessing.channels):
        raise ConfigError(f"{role} {model.spec.name} has {model.num_classes} classes and {model.in_channels} input "
                          f"channels but the data has {data.num_classes} and {data.preprocessing.channels}")
    return model


def _check_saveable(method_name: str, student: ClassifierModel, teachers: list[ClassifierModel]) -> None:
    """Fail before training when the deployable could not be saved: the student always is, and the teachers'
    heads are part of a shared-classifier student."""
    from compress.distill.simkd import SharedClassifierMethod
    from compress.models.base import check_recordable

    check_recordable(student)
    if issubclass(METHODS.get(method_name).load(), SharedClassifierMethod):
        for teacher in teachers:
            check_recordable(teacher)


def _factories(models: list[ModelArg]) -> list[Any]:
    """The factories of models built by ``compress.model``: checkpoints of them may be rebuilt in this run."""
    return [m.factory for m in models if getattr(m, "factory", None) is not None]


def distill_run(student: ModelArg, teachers: list[ModelArg], teacher_weights: list[str], distill_cfg: DistillConfig,
                data_cfg: DataConfig, train_cfg: TrainConfig, out: Path, *, resume: bool = False,
                progress: bool = True, dist: DistContext | None = None,
                log: Callable[[str], None] | None = None) -> FitResult:
    """Distil ``student`` (a model name or a module) from ``teachers`` (names, checkpoints or modules) with
    ``distill_cfg.method``; writes the deployable student."""
    from compress.models.user import allow_factories

    with allow_factories(_factories([student, *teachers])):
        return _distill_run(student, teachers, teacher_weights, distill_cfg, data_cfg, train_cfg, out, resume=resume,
                            progress=progress, dist=dist, log=log)


def _distill_run(student_arg: ModelArg, teachers: list[ModelArg], teacher_weights: list[str],
                 distill_cfg: DistillConfig, data_cfg: DataConfig, train_cfg: TrainConfig, out: Path, *,
                 resume: bool, progress: bool, dist: DistContext | None,
                 log: Callable[[str], None] | None) -> FitResult:
    dist = dist or DistContext.single()
    log = dist.main_only(log or logger.info)
    if isinstance(student_arg, str):
        canonical_name(student_arg)
    needs_teachers = METHODS.get(distill_cfg.method).needs_teachers
    if needs_teachers and not teachers:
        raise ConfigError(f"method '{distill_cfg.method}' needs --teacher NAME (and --teacher-weights FILE)")
    if teacher_weights and len(teacher_weights) != len(teachers):
        raise ConfigError(f"{len(teachers)} --teacher but {len(teacher_weights)} --teacher-weights: give one weights "
                          "source per teacher, in the same order")
    if data_cfg.channels is None and teachers and isinstance(teachers[0], str):
        first = _teacher_checkpoint(teachers[0])
        if first is not None and first.exists():
            data_cfg.channels = CheckpointRecord.read(first, verify=False).preprocessing.channels
    device, data = prepare(data_cfg, train_cfg, out, dist,
                           inputs=[*(_teacher_checkpoint(t) for t in teachers if isinstance(t, str)),
                                   *teacher_weights])
    teacher_models, inputs = [], {}
    if needs_teachers:
        for i, given in enumerate(teachers):
            weights = teacher_weights[i] if teacher_weights else None
            if isinstance(given, str):
                teacher, source = load_teacher(given, weights, data, device)
            else:
                teacher = as_classifier(given, data, f"teacher {i + 1}")
                source = load_weights(teacher, weights) if weights else module_digest(teacher)
                teacher = teacher.to(device)
            teacher_models.append(teacher)
            inputs[f"teacher{i + 1}"] = source
    if isinstance(student_arg, str):
        spec = make_spec(student_arg, data.num_classes, data.preprocessing.channels, data.image_size)
        # Seeded again here: building teachers consumed random numbers, and every method of a comparison
        # (with or without teachers) should start from the same student weights for a given seed.
        torch.manual_seed(train_cfg.seed)
        student = build_model(spec).to(device)
    else:
        student = as_classifier(student_arg, data, "the student").to(device)
        spec = student.spec
    _check_saveable(distill_cfg.method, student, teacher_models)
    teacher_top1: list[float] = []
    if not resume:  # a resumed run has these in its first epoch's metrics already
        for i, teacher in enumerate(teacher_models):
            teacher_top1.append(evaluate(teacher, data.val, dist=dist)["top1"])  # over all ranks' slices
            log(f"teacher {i + 1} {teacher.spec.name}: val top-1 {teacher_top1[-1]:.2f}% before distillation")
    method = build_method(distill_cfg, student, teacher_models, data.image_size).to(device)
    if teacher_top1:
        method.teachers_measured(teacher_top1)  # ATSC's monitor needs them too: one validation pass, not two
    if train_cfg.channels_last:
        method = method.to(memory_format=torch.channels_last)
    cost = deployed_cost(method.deployable(), data.image_size, data.preprocessing.channels)
    log("deployed model (what export ships):\n" + format_cost(cost))
    info = RunInfo(role="student", model=spec.to_dict(), teachers=[t.spec.to_dict() for t in teacher_models],
                   method=distill_cfg.to_dict(), data=data_record(data_cfg), cost=cost)
    return fit(method, data, train_cfg, out, resume=resume, info=info, inputs=inputs, progress=progress, dist=dist,
               log=log)


__all__ = ["DEFAULT_DATA", "train_teacher_run", "distill_run", "default_data", "default_out", "load_teacher", "prepare",
           "data_record", "check_output_path"]
