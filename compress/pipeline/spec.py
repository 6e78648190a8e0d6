"""A pipeline recipe (YAML) as typed dataclasses, validated whole before anything runs.

Every mistake names its dotted path in the recipe: an unknown key gets the closest valid key
("did you mean"), a value of the wrong type says what was expected. The YAML is read with
``yaml.safe_load`` only, and no value is ever turned into Python code or an import: model, dataset
and method names go through the project's registries.

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

import dataclasses
import difflib
import math
import re
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

from compress.data import DATASETS, DataConfig
from compress.distill.config import PRESETS, DistillConfig, refuse_foreign, scaled_lr, settings_table, training_defaults
from compress.errors import ConfigError
from compress.train import TrainConfig
from compress.validate.gates import Gates, parse_gates

# Pipeline stages in order, and the names the validate stage gives the artifacts it measures.
STAGES = ("teacher", "distill", "export-onnx", "int8", "tensorrt", "validate", "report")
VALIDATED = ("student", "onnx", "int8", "tensorrt")  # "student" (fp32 PyTorch) is the reference

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


# ------------------------------------------------------------------------------------------ reading values

def _unknown_keys(raw: Mapping[str, Any], known: list[str], path: str) -> None:
    for key in raw:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
            hint = f"did you mean '{close[0]}'?" if close else f"valid keys: {', '.join(known)}"
            raise ConfigError(f"{_join(path, str(key))}: unknown key ({hint})")


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _mapping(value: Any, path: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{path}: expected a mapping (key: value lines), got {_kind(value)}")
    return dict(value)


def _kind(value: Any) -> str:
    """What a YAML value is, in words: ``text 'two'``, ``a list``, ``true``."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, Mapping):
        return "a mapping"
    names = {int: "a whole number", float: "a number", str: "text"}
    return f"{names.get(type(value), type(value).__name__)} {value!r}"


def _describe(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _describe(a) for a in args)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_describe(args[0])}s"
        return f"a list of {len(args)} {_describe(args[0])}s"
    if origin is list:
        return f"a list of {_describe(args[0])}s"
    return {bool: "true/false", int: "whole number", float: "number", str: "text"}.get(hint, str(hint))


def convert(value: Any, hint: Any, path: str) -> Any:
    """``value`` as type ``hint`` (bool, int, float, str, X | None, tuple[...], list[...]), or a ConfigError."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return convert(value, arg, path)
            except ConfigError:
                continue
        raise ConfigError(f"{path}: expected {_describe(hint)}, got {_kind(value)}")
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected {_describe(hint)}, got {_kind(value)}")
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                raise ConfigError(f"{path}: expected {_describe(hint)}, got {len(value)} values")
            return tuple(convert(v, a, f"{path}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        items = [convert(v, args[0], f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    ok = False
    if hint is bool:
        ok = isinstance(value, bool)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif hint is float:
        if isinstance(value, str):
            # YAML 1.1 reads "5e-4" (no dot) as text; accept what is unambiguously a number
            try:
                value = float(value)
            except ValueError:
                pass
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        value = float(value) if ok else value
    elif hint is str:
        ok = isinstance(value, str)
    if not ok:
        raise ConfigError(f"{path}: expected {_describe(hint)}, got {_kind(value)}")
    return value


def read_fields(cls: type, raw: Mapping[str, Any], path: str, exclude: tuple[str, ...] = (),
                extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """The keys of ``raw`` that are fields of dataclass ``cls``, converted to their declared types.

    ``extra`` keys are allowed but left to the caller (returned unconverted)."""
    hints = typing.get_type_hints(cls)
    known = [f.name for f in fields(cls) if f.name not in exclude]
    _unknown_keys(raw, known + list(extra), path)
    return {key: (value if key in extra else convert(value, hints[key], _join(path, key))) for key, value in raw.items()}


def _checked(path: str, build: Any) -> Any:
    """Run a config's own validation and prefix its message with the recipe path."""
    try:
        return build()
    except ConfigError as exc:
        raise type(exc)(f"{path}: {exc}") from None


def plain(obj: Any) -> Any:
    """A JSON-ready copy (dataclasses -> dicts, tuples -> lists): what stage hashes are taken of."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: plain(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    return obj


# ------------------------------------------------------------------------------------------ sections

@dataclass
class TrainSpec:
    """A training schedule: ``TrainConfig`` fields, the batch size, and optionally a preset under them.

    Explicit keys > the preset > built-in defaults; a batch size other than the preset's scales its lr."""

    config: TrainConfig
    batch_size: int = 128
    preset: str | None = None

    @classmethod
    def parse(cls, raw: Any, path: str) -> "TrainSpec":
        given = read_fields(TrainConfig, _mapping(raw, path), path, extra=("batch_size", "preset"))
        preset_name = given.pop("preset", None)
        batch = given.pop("batch_size", None)
        if batch is not None:
            batch = convert(batch, int, _join(path, "batch_size"))
            if batch < 1:
                raise ConfigError(f"{path}.batch_size: must be at least 1, got {batch}")
        training: dict[str, Any] = {}
        if preset_name is not None:
            preset_name = _checked(_join(path, "preset"), lambda: PRESETS.canonical(convert(preset_name, str, path)))
            preset = PRESETS.get(preset_name)
            training = {k: v for k, v in preset["training"].items() if k != "lr_batch"}
            if batch is not None and "lr" not in given:
                training["lr"] = scaled_lr(preset, batch)  # linear scaling rule
        training.update(given)
        batch = batch if batch is not None else int(training.pop("batch_size", 128))
        training.pop("batch_size", None)
        training["milestones"] = tuple(training.get("milestones", ()))
        config = TrainConfig(**training)
        _checked(path, config.validate)
        return cls(config, batch, preset_name)

    def to_dict(self) -> dict[str, Any]:
        return {"preset": self.preset, "batch_size": self.batch_size, **self.config.to_dict()}


@dataclass
class TeacherSpec:
    """One teacher: a zoo model trained here (``train``), or given weights, or an existing checkpoint."""

    model: str | None = None  # zoo name
    checkpoint: str | None = None  # a model.safetensors (or a run folder holding one)
    weights: str | None = None  # a weights file or 'imagenet'; with `train`, the initialisation
    train: TrainSpec | None = None
    label_smoothing: float = 0.0

    @property
    def trained_here(self) -> bool:
        return self.train is not None

    @property
    def label(self) -> str:
        """The teacher's name in logs and tables: its zoo name, its checkpoint's file name, or the run
        folder of a ``model.safetensors``."""
        if self.model:
            return self.model
        path = Path(self.checkpoint or "teacher")
        if path.suffix == ".safetensors" and path.name != "model.safetensors":
            return path.stem
        return (path.parent.name if path.suffix else path.name) or "teacher"

    @classmethod
    def parse(cls, raw: Any, path: str) -> "TeacherSpec":
        from compress.models import MODELS

        if isinstance(raw, str):  # "- resnet20" is not enough: a teacher needs weights or training
            raise ConfigError(f"{path}: expected a mapping such as {{model: {raw}, train: {{epochs: 5}}}} "
                              "or {checkpoint: PATH}")
        data = read_fields(cls, _mapping(raw, path), path, extra=("train",))
        train = TrainSpec.parse(data.pop("train"), _join(path, "train")) if "train" in data else None
        spec = cls(**data, train=train)
        if (spec.model is None) == (spec.checkpoint is None):
            raise ConfigError(f"{path}: give either 'model' (a zoo name) or 'checkpoint' (a trained model file)")
        if spec.model is not None:
            spec.model = _checked(_join(path, "model"), lambda: MODELS.canonical(spec.model))  # type: ignore[arg-type]
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


def _read_settings(raw: Mapping[str, Any], path: str, extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """The method settings among ``raw``'s keys (those of every method: ``settings_table``), converted
    to their declared types; ``extra`` keys are allowed and left out."""
    table = settings_table()
    _unknown_keys(raw, list(table) + list(extra), path)
    return {key: convert(value, table[key].hint, _join(path, key)) for key, value in raw.items() if key in table}


@dataclass
class DistillSpec:
    """The student, the runs to compare (the comparison table) and the one deployed.

    Each entry of ``methods`` is a method name, or a variant: a mapping with its own ``name`` (the
    table row and folder), the ``method`` it runs and settings of its own that take precedence over
    the section's, e.g. ``{name: atsc-reference, method: atsc, reference: true}``. The section's
    settings (and its preset's) go to the runs whose method takes them; a variant's must all be its
    method's."""

    student: str
    methods: tuple[str, ...]  # the run names, in order
    deploy: str
    train: TrainSpec
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
            return _checked(path, lambda: METHODS.canonical(raw)), {}
        data = _mapping(raw, path)
        for key in ("name", "method"):
            if key not in data:
                raise ConfigError(f"{path}.{key}: missing: a variant needs a name (its table row) and the method it "
                                  "runs, e.g. {name: atsc-reference, method: atsc, reference: true}")
        name = convert(data.pop("name"), str, _join(path, "name"))
        if not _NAME.match(name):
            raise ConfigError(f"{path}.name: '{name}' becomes a folder name: use letters, digits, '-', '_' and '.'")
        method = _checked(_join(path, "method"), lambda: METHODS.canonical(convert(data.pop("method"), str, path)))
        own = _read_settings(data, path)
        _checked(path, lambda: refuse_foreign(method, own))
        return name, {"method": method, **own}

    @classmethod
    def parse(cls, raw: Any, path: str) -> "DistillSpec":
        from compress.distill import METHODS
        from compress.models import MODELS

        data = _mapping(raw, path)
        settings = _read_settings(data, path, extra=_DISTILL_OWN)
        if "student" not in data:
            raise ConfigError(f"{path}.student: missing: name the student model, e.g. student: resnet8")
        student = _checked(_join(path, "student"), lambda: MODELS.canonical(convert(data["student"], str, path)))
        methods_raw = data.get("methods", ["atsc"])
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
            given = convert(data["deploy"], str, _join(path, "deploy"))
            deploy = given if given in methods else _checked(_join(path, "deploy"), lambda: METHODS.canonical(given))
            if deploy not in methods:
                raise ConfigError(f"{path}.deploy: '{deploy}' is not among the methods run ({', '.join(methods)}); "
                                  "add it to methods")
        train = TrainSpec.parse(data.get("train"), _join(path, "train"))
        spec = cls(student, methods, deploy, train, settings, variants)
        _check_settings_used(spec, path)
        if train.preset:  # the preset's method settings (w, factor, beta) sit under explicit keys
            spec.settings = {**PRESETS.get(train.preset)["distill"], **settings}
        for method in methods:  # every method's settings must build, before anything trains
            _checked(path, lambda m=method: spec.config_for(m))
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


@dataclass
class OnnxSpec:
    exporter: str = "dynamo"  # dynamo | torchscript
    opset: int = 18
    parity_images: int = 256  # validation images compared with PyTorch right after export

    def validate(self) -> None:
        from compress.export.onnx import EXPORTERS

        if self.exporter not in EXPORTERS:
            raise ConfigError(f"exporter must be one of {', '.join(EXPORTERS)}, got '{self.exporter}'")
        if self.opset < 18:
            raise ConfigError(f"opset must be at least 18, got {self.opset}")
        if self.parity_images < 1:
            raise ConfigError(f"parity_images must be at least 1, got {self.parity_images}")


@dataclass
class Int8Spec:
    calibration: int = 512  # training images used to calibrate the activation ranges
    method: str = "minmax"  # minmax | entropy | percentile
    eval_images: int = 2000  # validation images for the stage's own fp32-vs-int8 check

    def validate(self) -> None:
        from compress.export.quantize import CALIBRATION_METHODS

        if self.calibration < 1 or self.eval_images < 1:
            raise ConfigError(f"calibration and eval_images must be at least 1, got {self.calibration}, {self.eval_images}")
        if self.method not in CALIBRATION_METHODS:
            raise ConfigError(f"method must be one of {', '.join(CALIBRATION_METHODS)}, got '{self.method}'")


@dataclass
class TensorRTSpec:
    precision: str = "fp16"  # fp32 | fp16 | int8
    batch: tuple[int, int, int] = (1, 8, 32)  # optimisation profile min, opt, max
    workspace_mb: int = 1024
    calibration: int = 512  # for precision int8

    def validate(self) -> None:
        from compress.export.tensorrt import PRECISIONS, parse_batch

        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got '{self.precision}'")
        parse_batch(self.batch)
        if self.workspace_mb < 16:
            raise ConfigError(f"workspace_mb must be at least 16, got {self.workspace_mb}")


@dataclass
class ExportSpec:
    onnx: OnnxSpec | None = None
    int8: Int8Spec | None = None
    tensorrt: TensorRTSpec | None = None

    @classmethod
    def parse(cls, raw: Any, path: str) -> "ExportSpec":
        data = _mapping(raw, path)
        _unknown_keys(data, ["onnx", "int8", "tensorrt"], path)
        parts: dict[str, Any] = {}
        for key, kind in (("onnx", OnnxSpec), ("int8", Int8Spec), ("tensorrt", TensorRTSpec)):
            if key not in data or data[key] is False:
                continue
            where = _join(path, key)
            value = {} if data[key] is True else data[key]  # `int8: true` means the defaults
            part = kind(**read_fields(kind, _mapping(value, where), where))
            _checked(where, part.validate)
            parts[key] = part
        spec = cls(**parts)
        if (spec.int8 or spec.tensorrt) and not spec.onnx:
            raise ConfigError(f"{path}: int8 and tensorrt are built from the ONNX model: add onnx: {{}}")
        return spec

    def to_dict(self) -> dict[str, Any]:
        return plain(self)  # type: ignore[no-any-return]


@dataclass
class ValidateSpec:
    val_limit: int | None = None  # validation images (default: the data section's val_limit, else all)
    batch_sizes: tuple[int, ...] = (1, 32)
    threads: tuple[int, ...] = (2,)
    duration_s: float = 2.0  # timed seconds per backend and (batch, threads) point
    providers: dict[str, str] = field(default_factory=dict)  # ONNX Runtime provider per stage (onnx: cuda)
    gates: dict[str, Any] = field(default_factory=dict)  # as written; parsed into `parsed_gates`
    parsed_gates: Gates | None = None

    @classmethod
    def parse(cls, raw: Any, path: str, built: tuple[str, ...]) -> "ValidateSpec":
        data = _mapping(raw, path)
        given = read_fields(cls, data, path, exclude=("parsed_gates",), extra=("gates", "providers"))
        gates = _mapping(given.pop("gates", None), _join(path, "gates"))
        providers = _mapping(given.pop("providers", None), _join(path, "providers"))
        spec = cls(**given, providers={k: convert(v, str, f"{path}.providers.{k}") for k, v in providers.items()},
                   gates=gates)
        if spec.val_limit is not None and spec.val_limit < 1:
            raise ConfigError(f"{path}.val_limit: must be at least 1, got {spec.val_limit}")
        if not spec.batch_sizes or min(spec.batch_sizes) < 1 or not spec.threads or min(spec.threads) < 1:
            raise ConfigError(f"{path}: batch_sizes and threads must be non-empty lists of numbers >= 1")
        if spec.duration_s <= 0:
            raise ConfigError(f"{path}.duration_s: must be positive, got {spec.duration_s}")
        for stage in providers:
            if stage not in built:
                raise ConfigError(f"{path}.providers.{stage}: this recipe validates {', '.join(built)}")
        spec.parsed_gates = parse_gates(gates, _join(path, "gates"))
        if isinstance(spec.parsed_gates, Mapping):
            for stage in spec.parsed_gates:
                if stage not in built:
                    close = difflib.get_close_matches(stage, list(VALIDATED), n=1)
                    hint = f"did you mean '{close[0]}'? " if close and close[0] != stage else ""
                    raise ConfigError(f"{path}.gates.{stage}: not a stage this recipe validates ({hint}"
                                      f"it validates {', '.join(built)})")
        return spec

    def to_dict(self) -> dict[str, Any]:
        return {"val_limit": self.val_limit, "batch_sizes": list(self.batch_sizes), "threads": list(self.threads),
                "duration_s": self.duration_s, "providers": dict(self.providers), "gates": plain(self.gates)}


@dataclass
class ReportSpec:
    png: bool = True
    title: str | None = None


@dataclass
class PipelineSpec:
    name: str
    data: DataConfig
    teachers: list[TeacherSpec]
    distill: DistillSpec
    export: ExportSpec
    validate: ValidateSpec
    report: ReportSpec
    source: str | None = None  # the recipe file, for messages

    @property
    def validated_stages(self) -> tuple[str, ...]:
        built = {"student": True, "onnx": self.export.onnx is not None, "int8": self.export.int8 is not None,
                 "tensorrt": self.export.tensorrt is not None}
        return tuple(name for name in VALIDATED if built[name])

    def data_dict(self) -> dict[str, Any]:
        return plain(self.data)  # type: ignore[no-any-return]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "data": self.data_dict(), "teachers": [t.to_dict() for t in self.teachers],
                "distill": self.distill.to_dict(), "export": self.export.to_dict(), "validate": self.validate.to_dict(),
                "report": plain(self.report)}


TOP_LEVEL = ["name", "data", "teachers", "distill", "export", "validate", "report"]


def parse_recipe(raw: Any, default_name: str = "pipeline", source: str | None = None) -> PipelineSpec:
    """A recipe from its parsed YAML mapping; every error names its dotted path."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"the recipe must be a mapping with sections {', '.join(TOP_LEVEL)}, got {_kind(raw)}")
    _unknown_keys(raw, TOP_LEVEL, "")
    name = convert(raw.get("name", default_name), str, "name")
    if not _NAME.match(name):
        raise ConfigError(f"name: '{name}' becomes a folder name: use letters, digits, '-', '_' and '.'")

    data_raw = _mapping(raw.get("data"), "data")
    if "batch_size" in data_raw:
        raise ConfigError("data.batch_size: the batch size belongs to each training: set teachers[i].train.batch_size "
                          "and distill.train.batch_size")
    data_given = read_fields(DataConfig, data_raw, "data", exclude=("batch_size",))
    if "name" in data_given:
        data_given["name"] = _checked("data.name", lambda: DATASETS.canonical(data_given["name"]))
    data = DataConfig(**data_given)
    _checked("data", data.validate)

    teachers_raw = raw.get("teachers") or []
    if not isinstance(teachers_raw, list):
        raise ConfigError(f"teachers: expected a list of teachers (lines starting with '- '), got {_kind(teachers_raw)}")
    teachers = [TeacherSpec.parse(t, f"teachers[{i}]") for i, t in enumerate(teachers_raw)]
    if "distill" not in raw:
        raise ConfigError("distill: missing: the recipe needs a distill section with at least the student")
    distill = DistillSpec.parse(raw["distill"], "distill")
    from compress.distill import METHODS

    needing = [m for m in distill.methods if METHODS.get(distill.method_of(m)).needs_teachers]
    if needing and not teachers:
        raise ConfigError(f"teachers: method(s) {', '.join(needing)} need at least one teacher")
    export = ExportSpec.parse(raw.get("export"), "export")
    spec = PipelineSpec(name, data, teachers, distill, export, ValidateSpec(), ReportSpec(), source)
    spec.validate = ValidateSpec.parse(raw.get("validate"), "validate", spec.validated_stages)
    report_raw = _mapping(raw.get("report"), "report")
    spec.report = ReportSpec(**read_fields(ReportSpec, report_raw, "report"))
    return spec


def load_recipe(path: str | Path) -> PipelineSpec:
    """Read and validate a recipe file (``yaml.safe_load``: plain data, never Python objects)."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"recipe '{path}' does not exist: see pipelines/ for examples") from None
    except OSError as exc:
        raise ConfigError(f"cannot read recipe '{path}': {exc.strerror}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}:{where}: not valid YAML ({problem})") from None
    try:
        return parse_recipe(raw, default_name=path.stem, source=str(path))
    except ConfigError as exc:
        raise type(exc)(f"{path}: {exc}") from None


__all__ = ["STAGES", "VALIDATED", "PipelineSpec", "TeacherSpec", "DistillSpec", "ExportSpec", "OnnxSpec", "Int8Spec",
           "TensorRTSpec", "ValidateSpec", "ReportSpec", "TrainSpec", "load_recipe", "parse_recipe", "convert", "plain"]
