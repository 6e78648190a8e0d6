"""A pipeline recipe (YAML) as typed dataclasses, validated whole before anything runs.

Every mistake names its dotted path in the recipe: an unknown key gets the closest valid key
("did you mean"), a value of the wrong type says what was expected. The YAML is read with a
``yaml.SafeLoader`` only (strictly: see ``yaml_io``), and no value is ever turned into Python code or an
import: model, dataset and method names go through the project's registries (``timm:NAME`` through timm's;
a ``python:`` model from user code is refused: build it from Python with ``compress.model``).

    name: fashion_mnist_ci
    data: {name: fashion-mnist, train_limit: 10000}
    teachers:
      - model: resnet20
        train: {epochs: 2}
    distill: {student: resnet8, methods: [atsc], train: {epochs: 2}}
    export: {onnx: {}, int8: {calibration: 512}}
    validate: {val_limit: 2000, gates: {onnx: {min_agreement: 99.9}}}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from compress.bounds import MAX_BATCH, span, within
from compress.data import DATASETS, DataConfig
from compress.distill.config import PRESETS, DistillConfig, refuse_foreign, scaled_lr, settings_table, training_defaults
from compress.errors import ConfigError
from compress.export.backends import BACKENDS
from compress.pipeline.fields import NAME, checked, convert, join, kind_of, mapping, plain, read_fields, unknown_keys
from compress.pipeline.overrides import apply_overrides, parse_overrides
from compress.pipeline.sections import REFERENCE, ExportSpec, ReportSpec, ValidationSpec
from compress.pipeline.yaml_io import read_recipe_yaml, shorten
from compress.record import MODEL_FILE
from compress.train_config import TrainConfig


# ------------------------------------------------------------------------------------------ sections

@dataclass
class TrainSpec:
    """A training schedule: ``TrainConfig`` fields, the batch size, and optionally a preset under them.

    Explicit keys > the preset > built-in defaults; a batch size other than the preset's scales its lr."""

    config: TrainConfig
    batch_size: int = 128  # images per optimizer step, over all GPUs
    preset: str | None = None  # a paper's training recipe under the keys given (`compress list presets`)

    @classmethod
    def parse(cls, raw: Any, path: str) -> "TrainSpec":
        given = read_fields(TrainConfig, mapping(raw, path), path, extra=("batch_size", "preset"))
        preset_name = given.pop("preset", None)
        batch = given.pop("batch_size", None)
        if batch is not None:
            batch = convert(batch, int, join(path, "batch_size"))
            if not within(batch, 1, MAX_BATCH):  # before the preset's lr is scaled by it
                raise ConfigError(f"{path}.batch_size: must be {span(1, MAX_BATCH)}, got {batch}")
        training: dict[str, Any] = {}
        if preset_name is not None:
            preset_name = checked(join(path, "preset"), lambda: PRESETS.canonical(convert(preset_name, str, path)))
            preset = PRESETS.get(preset_name)
            training = {k: v for k, v in preset["training"].items() if k != "lr_batch"}
            if batch is not None and "lr" not in given:
                training["lr"] = scaled_lr(preset, batch)  # linear scaling rule
        training.update(given)
        batch = batch if batch is not None else int(training.pop("batch_size", 128))
        training.pop("batch_size", None)
        training["milestones"] = tuple(training.get("milestones", ()))
        config = TrainConfig(**training)
        checked(path, config.validate)
        return cls(config, batch, preset_name)

    def to_dict(self) -> dict[str, Any]:
        return {"preset": self.preset, "batch_size": self.batch_size, **self.config.to_dict()}


@dataclass
class TeacherSpec:
    """One teacher: a zoo model trained here (``train``), or given weights, or an existing checkpoint."""

    model: str | None = None  # zoo name, timm:NAME or torchvision:NAME
    checkpoint: str | None = None  # a model.safetensors, a run folder holding one, or a shipped name (fashion-mnist-resnet20)
    weights: str | None = None  # a weights file or 'imagenet'; with `train`, the initialisation
    train: TrainSpec | None = None  # train it here: its keys > the preset's > the defaults below
    label_smoothing: float = 0.0  # of the teacher's cross-entropy while it trains here, in [0, 1)

    @property
    def label(self) -> str:
        """The teacher's name in logs and tables: its zoo name, its checkpoint's file name, or the run
        folder of a ``model.safetensors``."""
        if self.model:
            return self.model
        path = Path(self.checkpoint or "teacher")
        if path.suffix == ".safetensors" and path.name != MODEL_FILE:
            return path.stem
        return (path.parent.name if path.suffix else path.name) or "teacher"

    @classmethod
    def parse(cls, raw: Any, path: str) -> "TeacherSpec":
        from compress.models import canonical_name

        if isinstance(raw, str):  # "- resnet20" is not enough: a teacher needs weights or training
            raise ConfigError(f"{path}: expected a mapping such as {{model: {raw}, train: {{epochs: 5}}}} "
                              "or {checkpoint: PATH}")
        data = read_fields(cls, mapping(raw, path), path, extra=("train",))
        train = TrainSpec.parse(data.pop("train"), join(path, "train")) if "train" in data else None
        spec = cls(**data, train=train)
        if (spec.model is None) == (spec.checkpoint is None):
            raise ConfigError(f"{path}: give either 'model' (a zoo name) or 'checkpoint' (a trained model file)")
        if spec.model is not None:
            spec.model = checked(join(path, "model"), lambda: canonical_name(spec.model))  # type: ignore[arg-type]
            if spec.train is None and spec.weights is None:
                raise ConfigError(f"{path}: teacher '{spec.model}' has neither 'train' nor 'weights': add "
                                  "train: {epochs: N} to train it here, or weights: FILE|imagenet")
        elif spec.train is not None or spec.weights is not None:
            raise ConfigError(f"{path}: a 'checkpoint' teacher is used as it is; drop 'train'/'weights' "
                              "or use 'model' instead")
        if not 0 <= spec.label_smoothing < 1:
            raise ConfigError(f"{path}.label_smoothing: must be in [0, 1), got {spec.label_smoothing}")
        return spec

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "checkpoint": self.checkpoint, "weights": self.weights,
                "train": self.train.to_dict() if self.train else None, "label_smoothing": self.label_smoothing}


_DISTILL_OWN = ("student", "methods", "deploy", "train")
DEPLOY_BEST_VAL = "best-val"
DEFAULT_METHODS = ("atsc",)  # what `distill` runs when the recipe names no methods


def _read_settings(raw: Mapping[str, Any], path: str, extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """The method settings among ``raw``'s keys (those of every method: ``settings_table``), converted
    to their declared types; ``extra`` keys are allowed and left out."""
    table = settings_table()
    unknown_keys(raw, list(table) + list(extra), path)
    return {key: convert(value, table[key].hint, join(path, key)) for key, value in raw.items() if key in table}


@dataclass
class DistillSpec:
    """The student, the runs to compare (the comparison table) and the one deployed.

    Each entry of ``methods`` is a method name, or a variant: a mapping with its own ``name`` (the
    table row and folder), the ``method`` it runs and settings of its own that take precedence over
    the section's, e.g. ``{name: atsc-reference, method: atsc, reference: true}``. The section's
    settings (and its preset's) go to the runs whose method takes them; a variant's must all be its
    method's."""

    student: str  # the student model, a zoo name, timm:NAME or torchvision:NAME
    methods: tuple[str, ...]  # the run names, in order
    # the run whose student is exported and validated (default: the first of methods), or DEPLOY_BEST_VAL:
    # the run with the best top-1 on the validation split held out of the training images (data.holdout_per_class)
    deploy: str
    train: TrainSpec  # the students' training: its keys > the preset's > the defaults below
    settings: dict[str, Any] = field(default_factory=dict)  # the section's method settings, over the preset's
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)  # run name -> {method, own settings}

    def method_of(self, name: str) -> str:
        return str(self.variants.get(name, {}).get("method", name))

    def config_for(self, name: str) -> DistillConfig:
        """Run ``name``'s settings: its variant's > the section's > those following the training schedule."""
        own = {k: v for k, v in self.variants.get(name, {}).items() if k != "method"}
        defaults = training_defaults(self.train.config) | self.settings
        return DistillConfig.with_defaults(self.method_of(name), own, defaults)

    @staticmethod
    def parse_variant(raw: Any, path: str) -> tuple[str, dict[str, Any]]:
        """A ``methods`` entry: a method name, or ``{name, method, <settings>}``; returns (name, variant)."""
        from compress.distill import METHODS

        if isinstance(raw, str):
            return checked(path, lambda: METHODS.canonical(raw)), {}
        data = mapping(raw, path)
        for key in ("name", "method"):
            if key not in data:
                raise ConfigError(f"{path}.{key}: missing: a variant needs a name (its table row) and the method it "
                                  "runs, e.g. {name: atsc-reference, method: atsc, reference: true}")
        name = convert(data.pop("name"), str, join(path, "name"))
        if not NAME.match(name):
            raise ConfigError(f"{path}.name: '{name}' becomes a folder name: use letters, digits, '-', '_' and '.'")
        method = checked(join(path, "method"), lambda: METHODS.canonical(convert(data.pop("method"), str, path)))
        own = _read_settings(data, path)
        checked(path, lambda: refuse_foreign(method, own))
        return name, {"method": method, **own}

    @classmethod
    def parse(cls, raw: Any, path: str) -> "DistillSpec":
        from compress.distill import METHODS
        from compress.models import canonical_name

        data = mapping(raw, path)
        settings = _read_settings(data, path, extra=_DISTILL_OWN)
        if "student" not in data:
            raise ConfigError(f"{path}.student: missing: name the student model, e.g. student: resnet8")
        student = checked(join(path, "student"), lambda: canonical_name(convert(data["student"], str, path)))
        methods_raw = data.get("methods", list(DEFAULT_METHODS))
        if isinstance(methods_raw, str):
            methods_raw = [methods_raw]
        if not isinstance(methods_raw, (list, tuple)) or not methods_raw:
            raise ConfigError(f"{path}.methods: give a list of at least one method (none, kd, simkd, atsc)")
        parsed = [cls.parse_variant(m, f"{path}.methods[{i}]") for i, m in enumerate(methods_raw)]
        methods = tuple(name for name, _ in parsed)
        variants = {name: variant for name, variant in parsed if variant}
        if len(set(methods)) != len(methods):
            raise ConfigError(f"{path}.methods: each name once, got {list(methods)}")
        deploy = methods[0]
        if data.get("deploy") is not None:
            given = convert(data["deploy"], str, join(path, "deploy"))
            deploy = given if given in (*methods, DEPLOY_BEST_VAL) else checked(join(path, "deploy"),
                                                                                 lambda: METHODS.canonical(given))
            if deploy not in (*methods, DEPLOY_BEST_VAL):
                raise ConfigError(f"{path}.deploy: '{deploy}' is not among the methods run ({', '.join(methods)}); "
                                  "add it to methods")
        train = TrainSpec.parse(data.get("train"), join(path, "train"))
        spec = cls(student, methods, deploy, train, settings, variants)
        _check_settings_used(spec, path)
        if train.preset:  # the preset's method settings (w, factor, beta) sit under explicit keys
            spec.settings = {**PRESETS.get(train.preset)["distill"], **settings}
        for method in methods:  # every method's settings must build, before anything trains
            checked(path, lambda m=method: spec.config_for(m))
        return spec

    def to_dict(self) -> dict[str, Any]:
        return {"student": self.student, "methods": list(self.methods), "deploy": self.deploy,
                "train": self.train.to_dict(), "settings": plain(self.settings),
                **({"variants": plain(self.variants)} if self.variants else {})}


def _check_settings_used(spec: DistillSpec, path: str) -> None:
    """A section setting that no run's method takes is a mistake (e.g. ``w`` with methods [kd])."""
    run = {spec.method_of(name) for name in spec.methods}
    for key in spec.settings:
        takers = settings_table()[key].methods
        if not run.intersection(takers):
            raise ConfigError(f"{path}.{key}: none of the methods run ({', '.join(spec.methods)}) takes it; it is a "
                              f"setting of {', '.join(takers)}")


NEWER_DATA_KEYS = {"holdout_per_class": None, "shift": None, "shift_seed": 0}  # key -> its default


@dataclass
class PipelineSpec:
    name: str  # the run's name: its folder is runs/<name> (default: the recipe file's name)
    data: DataConfig
    teachers: list[TeacherSpec]
    distill: DistillSpec
    export: ExportSpec
    validation: ValidationSpec  # the recipe's `validate` section
    report: ReportSpec
    source: str | None = None  # the recipe file, for messages
    overrides: tuple[str, ...] = ()  # the `--set KEY=VALUE` applied over the file, in order

    @property
    def validated_stages(self) -> tuple[str, ...]:
        """What the validate stage measures: the student, then every exported artifact, in table order."""
        return (REFERENCE, *(name for name in BACKENDS if self.export.of(name) is not None))

    def data_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = plain(self.data)
        # Keys added after runs were made appear only when set: an unchanged recipe's stages stay up to date
        for key, default in NEWER_DATA_KEYS.items():
            if data.get(key) == default:
                data.pop(key)
        return data

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "data": self.data_dict(), "teachers": [t.to_dict() for t in self.teachers],
                "distill": self.distill.to_dict(), "export": self.export.to_dict(),
                "validate": self.validation.to_dict(),
                "report": plain(self.report), **({"overrides": list(self.overrides)} if self.overrides else {})}


TOP_LEVEL = ["name", "data", "teachers", "distill", "export", "validate", "report"]


def parse_recipe(raw: Any, default_name: str = "pipeline", source: str | None = None) -> PipelineSpec:
    """A recipe from its parsed YAML mapping; every error names its dotted path."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"the recipe must be a mapping with sections {', '.join(TOP_LEVEL)}, got {kind_of(raw)}")
    unknown_keys(raw, TOP_LEVEL, "")
    name = convert(raw.get("name", default_name), str, "name")
    if not NAME.match(name):
        raise ConfigError(f"name: '{name}' becomes a folder name: use letters, digits, '-', '_' and '.'")

    data_raw = mapping(raw.get("data"), "data")
    if "batch_size" in data_raw:
        raise ConfigError("data.batch_size: the batch size belongs to each training: set teachers[i].train.batch_size "
                          "and distill.train.batch_size")
    data_given = read_fields(DataConfig, data_raw, "data", exclude=("batch_size",))
    if "name" in data_given:
        data_given["name"] = checked("data.name", lambda: DATASETS.canonical(data_given["name"]))
    data = DataConfig(**data_given)
    checked("data", data.validate)

    teachers_raw = raw.get("teachers") or []
    if not isinstance(teachers_raw, list):
        raise ConfigError(f"teachers: expected a list of teachers (lines starting with '- '), got {kind_of(teachers_raw)}")
    teachers = [TeacherSpec.parse(t, f"teachers[{i}]") for i, t in enumerate(teachers_raw)]
    if "distill" not in raw:
        raise ConfigError("distill: missing: the recipe needs a distill section with at least the student")
    distill = DistillSpec.parse(raw["distill"], "distill")
    from compress.distill import METHODS

    needing = [m for m in distill.methods if METHODS.get(distill.method_of(m)).needs_teachers]
    if needing and not teachers:
        raise ConfigError(f"teachers: method(s) {', '.join(needing)} need at least one teacher")
    if distill.deploy == DEPLOY_BEST_VAL and data.holdout_per_class is None:
        raise ConfigError("distill.deploy: best-val chooses the deployed run on a validation split held out of the "
                          "training images: set data.holdout_per_class (e.g. 20), or name the run to deploy")
    export = ExportSpec.parse(raw.get("export"), "export")
    spec = PipelineSpec(name, data, teachers, distill, export, ValidationSpec(), ReportSpec(), source)
    spec.validation = ValidationSpec.parse(raw.get("validate"), "validate", spec.validated_stages)
    report_raw = mapping(raw.get("report"), "report")
    spec.report = ReportSpec(**read_fields(ReportSpec, report_raw, "report"))
    return spec


def load_recipe(path: str | Path, overrides: Sequence[str] = ()) -> PipelineSpec:
    """Read and validate a recipe file (plain data, never Python objects; limits in ``yaml_io``).

    ``overrides`` are ``KEY=VALUE`` texts (``compress run --set``) applied to the file's mapping before it
    is validated: a mistake in one is reported as that ``--set``'s, with the key path as for the file."""
    path = Path(path)
    changes = parse_overrides(overrides)
    raw = read_recipe_yaml(path)
    try:
        spec = parse_recipe(apply_overrides(raw, changes), default_name=path.stem, source=str(path))
    except ConfigError as exc:
        at = str(exc).partition(": ")[0]  # the key path every recipe error starts with
        culprit = next((change for change in reversed(changes) if change.covers(at)), None)
        where = f"--set {culprit.text}" if culprit else str(path)
        raise type(exc)(shorten(f"{where}: {exc}")) from None
    spec.overrides = tuple(overrides)
    return spec


__all__ = ["PipelineSpec", "TeacherSpec", "DistillSpec", "ExportSpec", "ValidationSpec", "ReportSpec", "TrainSpec",
           "load_recipe", "parse_recipe", "convert", "plain"]
