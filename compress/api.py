"""The Python API: distil, export and validate with your own modules. The CLI's commands call these.

    import compress
    student = compress.model(make_net, split="stage3", num_classes=10)   # any nn.Module factory
    result = compress.distill(student, ["run/teacher"], "fashion-mnist", method="atsc", out="run/student",
                              epochs=1, train_limit=512)
    files = compress.export(result.checkpoint, model_factory=make_net)
    report = compress.validate({"student": result.checkpoint, "onnx": files["files"]["model.onnx"]},
                               "fashion-mnist", model_factory=make_net)

``data`` is a dataset name, a ``DataConfig``, or your own torch Datasets/DataLoaders of ``(image, label)``:
``data=(train, val)`` (``compress.data.user`` says what images may be; float images need
``preprocessing={"mean": ..., "std": ...}``, the normalisation the deployed model must repeat).

Functions return result objects and print nothing unless ``log``/``progress`` ask for it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence, Union

from compress.api_arguments import check_distill, check_export, check_validate
from compress.errors import ConfigError

if TYPE_CHECKING:  # torch loads with the first call, not with ``import compress``
    from torch import nn

    from compress.data import DataConfig
    from compress.distill import DistillConfig
    from compress.models.base import ClassifierModel
    from compress.models.split import SplitArg
    from compress.models.user import FactoryArg
    from compress.train import FitResult, TrainConfig
    from compress.validate.results import ValidationResult

    # a dataset name, a DataConfig (a UserData too), a (train, val) pair of torch Datasets/DataLoaders, or one of them
    DataArg = Union[str, DataConfig, Sequence[Any], Any]
    ModelArg = Union[str, nn.Module]
    Factories = Union[FactoryArg, Sequence[FactoryArg], None]


def model(factory: FactoryArg, split: SplitArg = None, **kwargs: Any) -> ClassifierModel:
    """``factory(**kwargs)`` as a classifier that checkpoints can rebuild (``compress.models.user.user_model``)."""
    from compress.models.user import user_model

    return user_model(factory, split, **kwargs)


def _data_config(data: DataArg, overrides: Mapping[str, Any]) -> DataConfig:
    from compress.data import DataConfig
    from compress.data.user import user_data

    if isinstance(data, str):
        return DataConfig(name=data, **overrides)
    if isinstance(data, DataConfig) and not _is_user_data(data):
        return dataclasses.replace(data, **overrides)
    return user_data(data, **overrides)  # the user's Datasets/DataLoaders


def _is_user_data(data: DataArg) -> bool:
    from compress.data.user import UserData

    return isinstance(data, UserData) or not isinstance(data, str) and not dataclasses.is_dataclass(data)


def _split_settings(settings: Mapping[str, Any], *configs: type) -> list[dict[str, Any]]:
    """``**settings`` shared out over the dataclasses that take them; the rest (last) are the method's
    own settings, which ``DistillConfig`` checks (an unknown name is refused there)."""
    out: list[dict[str, Any]] = [{} for _ in range(len(configs) + 1)]
    for key, value in settings.items():
        owner = next((i for i, cls in enumerate(configs) if key in {f.name for f in dataclasses.fields(cls)}),
                     len(configs))
        out[owner][key] = value
    return out


def _resolve(data: DataArg, method: str, preset: str | None,
             settings: dict[str, Any]) -> tuple[TrainConfig, DistillConfig, DataConfig]:
    """The run's configs from ``**settings`` over the preset's defaults (what the CLI's options do)."""
    from compress.data import DataConfig
    from compress.distill import DistillConfig, resolve_preset, training_defaults
    from compress.train import TrainConfig

    from compress.data.user import UserData

    user = _is_user_data(data)
    data_name = None if user else data if isinstance(data, str) else data.name  # user data: no dataset preset
    training_keys = ("epochs", "batch_size", "lr", "weight_decay", "schedule", "milestones", "warmup_epochs")
    training, method_defaults, _ = resolve_preset(preset, data_name, {k: settings.pop(k, None) for k in training_keys})
    batch = int(training.pop("batch_size", 128))
    train_given, data_given, method_given = _split_settings(settings, TrainConfig, UserData if user else DataConfig)
    train = TrainConfig(**{**training, "milestones": tuple(training.get("milestones", ())), **train_given})
    if "seed" in train_given:
        data_given.setdefault("seed", train_given["seed"])
    data_cfg = _data_config(data, {"batch_size": batch, **data_given})
    return train, DistillConfig.with_defaults(method, method_given, training_defaults(train) | method_defaults), data_cfg


def distill(student: ModelArg, teachers: Sequence[ModelArg] = (), data: DataArg = "fashion-mnist",
            method: str = "atsc", out: str | Path = "runs/student", *, teacher_weights: Sequence[str] = (),
            preset: str | None = None, train: TrainConfig | None = None, config: DistillConfig | None = None,
            resume: bool = False, progress: bool = False, log: Callable[[str], None] | None = None,
            dist: Any = None, **settings: Any) -> FitResult:
    """Distil ``student`` from ``teachers`` with ``method`` (atsc, simkd, kd, none) on ``data`` and write the
    deployable student to ``out`` (``model.safetensors`` + JSON).

    ``student``/``teachers``: zoo or ``timm:`` names, checkpoints (teachers), ``compress.model(...)`` models or
    any classifier ``nn.Module`` (cut automatically; only ``compress.model`` ones can be saved as students).
    ``data``: a dataset name, a ``DataConfig`` or ``(train, val)`` torch Datasets/DataLoaders.
    ``**settings``: training (``epochs``, ``lr``, ``seed``, ``device``...), data (``train_limit``,
    ``batch_size``...; for your own data also ``num_classes``, ``class_names``, ``preprocessing``) and method settings (``factor``, ``temperature``...), over the preset's defaults; or
    the resolved ``train`` and ``config`` with a ``DataConfig`` (what the CLI passes). ``log`` receives
    progress messages (none by default). Returns the ``FitResult`` (checkpoint path, metrics).
    """
    from compress.data import DataConfig
    from compress.workflows import distill_run

    check_distill(student, teachers, method, out, teacher_weights, preset, settings)
    if train is None or config is None:
        train, config, data = _resolve(data, method, preset, dict(settings))
    elif settings or not isinstance(data, DataConfig):
        raise ConfigError("with train= and config= pass the data as a DataConfig and no other settings")
    return distill_run(student, list(teachers), list(teacher_weights), config, data, train, Path(out),
                       resume=resume, progress=progress, dist=dist, log=log or (lambda message: None))


def _factories(model_factory: Factories) -> list[FactoryArg]:
    if model_factory is None:
        return []
    if isinstance(model_factory, (str, bytes)) or callable(model_factory):
        return [model_factory]  # type: ignore[list-item]
    return list(model_factory)


def export(checkpoint: str | Path, out: str | Path | None = None, build: Sequence[str] = ("onnx",),
           options: Mapping[str, Any] | None = None, *, target: Any = None, data_dir: str | None = None,
           trust: bool = False, model_factory: Factories = None, progress: bool = False,
           calibration: DataArg = None) -> dict[str, Any]:
    """Export a deployable checkpoint to the backends in ``build`` (onnx, int8, tensorrt, openvino), each
    checked (ONNX parity, INT8 agreement). ``model_factory``: the factory (callable or ``module:function``)
    of a ``compress.model`` student, needed to rebuild it; nothing else is ever imported from a checkpoint.
    ``target`` (a ``TargetOptions``): build every backend the device runs, time them side by side and ship the
    fastest within its top-1 gate at each batch size.
    ``calibration``: the images for the parity checks and INT8 calibration, as ``data`` of ``distill``
    (one Dataset/DataLoader serves both); default: the dataset the checkpoint records. Their normalisation
    defaults to the checkpoint's. Returns the summary: the checks and the files written (``out``: default
    ``<checkpoint folder>/export``)."""
    from compress.export.command import export_command

    check_export(checkpoint, out, build, options, target, model_factory)
    checkpoint = Path(checkpoint)
    folder = checkpoint if checkpoint.is_dir() else checkpoint.parent
    data = None
    if calibration is not None:
        data = _data_config(calibration, {})
    else:
        _check_recorded_data(checkpoint)
    from compress.models.user import allow_factories

    with allow_factories(_factories(model_factory)):
        return export_command(checkpoint, Path(out) if out is not None else folder / "export", list(build), options,
                              target=target, data_dir=data_dir, trust=trust, progress=progress, data=data)


def _check_recorded_data(checkpoint: Path) -> None:
    """A checkpoint trained on data from Python records no dataset that export could reload by name."""
    from compress.data import DATASETS
    from compress.record import CheckpointRecord, resolve_checkpoint

    path = resolve_checkpoint(str(checkpoint))
    if not path.is_file():
        return  # export reports the missing checkpoint
    run = CheckpointRecord.read(path, verify=False).run
    name = run.data.get("name") if run is not None else None
    if name is not None and name not in DATASETS:
        raise ConfigError(f"'{path}' was trained on data given from Python ('{name}'), which export cannot reload: "
                          "pass calibration= your images (compress.export(..., calibration=dataset))")


def validate(artifacts: Mapping[str, str | Path], data: DataArg = "fashion-mnist", reference: str | None = None,
             *, batch_sizes: Sequence[int] = (1, 32), threads: Sequence[int] = (2,), duration_s: float = 2.0,
             gates: Any = None, trust: bool = False, providers: Mapping[str, str] | None = None,
             measure_latency: bool = True, model_factory: Factories = None, baseline: ValidationResult | None = None,
             **data_settings: Any) -> ValidationResult:
    """Accuracy, agreement with ``reference`` (default: the first artifact) and latency of ``artifacts``
    (stage name -> checkpoint / ONNX / engine path) on ``data`` (as for ``distill``; one Dataset/DataLoader of
    validation images is enough, normalised as the reference records unless ``preprocessing`` is given),
    with optional ``gates`` (a ``GateSpec``; the baseline gates compare with ``baseline``, an earlier
    ``ValidationResult``). Returns the
    ``ValidationResult``; ``compress.validate.check_gates(result.gates)`` raises on a failed gate."""
    from compress.validate import validate_artifacts

    from compress.models.user import allow_factories

    check_validate(artifacts, reference, batch_sizes, threads, duration_s, model_factory, gates, providers)
    names = {name: str(path) for name, path in artifacts.items()}
    if not names:
        raise ConfigError("nothing to validate: pass at least one artifact")
    with allow_factories(_factories(model_factory)):
        return validate_artifacts(names, _data_config(data, data_settings), reference or next(iter(names)),
                                  tuple(batch_sizes), tuple(threads), duration_s, gates, trust,
                                  providers=providers, measure_latency=measure_latency, baseline=baseline)


__all__ = ["distill", "export", "model", "validate"]
