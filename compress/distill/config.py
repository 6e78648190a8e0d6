"""Which method a run uses with which settings (``DistillConfig``), the table of every method's
settings that the CLI options and recipe keys are derived from, and the papers' recipes as presets.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from compress.data.config import DATASETS
from compress.distill.methods import METHODS
from compress.distill.settings import MethodConfig, Rule, setting_fields
from compress.errors import ConfigError
from compress.registry import Registry


@dataclass(frozen=True)
class SettingInfo:
    """One setting name across the methods that take it (CLI option, recipe key)."""

    name: str
    hint: Any  # its type, e.g. ``float | None``
    docs: dict[str, str]  # method -> its one-line doc
    rules: dict[str, Rule]  # method -> its rule
    defaults: dict[str, Any]  # method -> its default

    @property
    def methods(self) -> tuple[str, ...]:
        return tuple(self.docs)

    @property
    def help(self) -> str:
        """Its docs, each after the methods it applies to, then the default they share if any:
        ``atsc, simkd: weight of the feature MSE. Default: 1.0.``"""
        by_doc: dict[str, list[str]] = {}
        for method, doc in self.docs.items():
            by_doc.setdefault(doc, []).append(method)
        text = " ".join(f"{', '.join(methods)}: {doc}." for doc, methods in by_doc.items())
        defaults = set(self.defaults.values())
        if len(defaults) != 1 or None in defaults:
            return text
        default = defaults.pop()
        return f"{text} Default: {('on' if default else 'off') if isinstance(default, bool) else default}."

    @property
    def follows(self) -> str | None:
        """The training setting this one takes its value from when not given (not a CLI option)."""
        return next((r.follows for r in self.rules.values() if r.follows), None)


def settings_table() -> dict[str, SettingInfo]:
    """Every setting of every registered method, in registry order, then field order."""
    table: dict[str, SettingInfo] = {}
    for method in METHODS.names():
        for name, (hint, rule, default) in setting_fields(METHODS.get(method).config_class).items():
            info = table.setdefault(name, SettingInfo(name, hint, {}, {}, {}))
            if info.hint != hint:
                raise TypeError(f"setting '{name}' is {info.hint} for {info.methods[0]} but {hint} for {method}: "
                                "one name must mean one type")
            info.docs[method], info.rules[method], info.defaults[method] = rule.doc, rule, default
    return table


def takes(method: str, name: str) -> bool:
    """Whether ``method`` (a canonical name) has the setting ``name``."""
    return name in setting_fields(METHODS.get(method).config_class)


def refuse_foreign(method: str, names: Iterable[str]) -> None:
    """A ConfigError for the first of ``names`` that ``method`` does not take, naming who takes it."""
    table = settings_table()
    for name in names:
        if takes(method, name):
            continue
        if name in table:
            raise ConfigError(f"distill setting '{name}' does not apply to method '{method}'; it is a setting of "
                              f"{', '.join(table[name].methods)}")
        close = difflib.get_close_matches(str(name), list(table), n=1, cutoff=0.6)
        hint = f"did you mean '{close[0]}'? " if close else ""
        own = ", ".join(setting_fields(METHODS.get(method).config_class)) or "none"
        raise ConfigError(f"unknown distill setting '{name}': {hint}method '{method}' takes: {own}")


# The methods whose settings every record lists (see ``DistillConfig.to_dict``); a method added later
# records only its own, so adding one does not change the records of the others.
RECORD_LAYOUT = ("atsc", "kd", "none")
# Settings added after that layout, with the value every run had before they existed: recorded only when
# set away from it, so the records of runs that do not use them stay byte-identical too (``from_dict``
# gives a missing one that value, whatever the default is now).
LATER_SETTINGS: dict[str, Any] = {"teacher_adapt": "all", "teacher_every": 1, "pseudo_threshold": None}
# Settings of the layout whose default changed since: the layout keeps the value it had, so the records of
# other methods' runs stay byte-identical; a run of the method that takes it records its own value.
LAYOUT_VALUES: dict[str, Any] = {"teacher_feedback": True}


class DistillConfig:
    """A run's method and its typed settings, e.g. ``DistillConfig("kd", temperature=2.0)``.

    ``settings`` is an instance of the method's own ``config_class``, which validates itself; a
    setting the method does not take is refused with the methods that take it. Settings read as
    attributes (``config.temperature``).
    """

    def __init__(self, method: str = "atsc", **settings: Any) -> None:
        self.method = METHODS.canonical(method)
        refuse_foreign(self.method, settings)
        self.settings: MethodConfig = METHODS.get(self.method).config_class(**settings)

    @classmethod
    def with_defaults(cls, method: str, settings: Mapping[str, Any], defaults: Mapping[str, Any]) -> "DistillConfig":
        """``settings`` over ``defaults``: a preset's or a recipe section's values, each used only by the
        methods that take it (a preset's ``w`` does not concern KD)."""
        canonical = METHODS.canonical(method)
        own = {k: v for k, v in defaults.items() if takes(canonical, k)}
        return cls(canonical, **{**own, **settings})

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "settings":  # copy/pickle probing, or not initialised yet
            raise AttributeError(name)
        try:
            return getattr(self.settings, name)
        except AttributeError:
            raise AttributeError(f"method '{self.method}' has no setting '{name}'") from None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DistillConfig) and (self.method, self.settings) == (other.method, other.settings)

    def __repr__(self) -> str:
        return f"DistillConfig(method={self.method!r}, settings={self.settings!r})"

    def to_dict(self) -> dict[str, Any]:
        """The record a run writes (checkpoint sidecar, pipeline stage key): the method, then settings.

        The layout is the one records had before each method owned its settings: every setting of the
        methods of ``RECORD_LAYOUT``, at its own method's default when the run's method does not take
        it, then the run's own. Records of unchanged runs stay byte-identical (checkpoints, stage
        hashes, benchmark resumption); ``from_dict`` reads back only the method's own settings."""
        record: dict[str, Any] = {"method": self.method}
        for method in RECORD_LAYOUT:
            record |= {k: LAYOUT_VALUES.get(k, v) for k, v in METHODS.get(method).config_class().to_dict().items()
                       if k not in record and k not in LATER_SETTINGS}
        return record | {k: v for k, v in self.settings.to_dict().items()
                         if k not in LATER_SETTINGS or v != LATER_SETTINGS[k]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "DistillConfig":
        """A config from its record (``to_dict``); the settings of other methods in it are ignored."""
        method = METHODS.canonical(str(data.get("method", "atsc")))
        table = settings_table()
        unknown = sorted(k for k in data if k != "method" and k not in table)
        if unknown:
            raise ConfigError(f"unknown distill setting(s) {', '.join(unknown)}; known: {', '.join(sorted(table))}")
        absent = {k: v for k, v in LATER_SETTINGS.items() if k not in data and takes(method, k)}
        return cls(method, **absent, **{k: v for k, v in data.items() if k != "method" and takes(method, k)})


# ---------------------------------------------------------------------------------------------- presets
# Each preset: "training" (keys of compress.train.TrainConfig, plus batch_size) and "distill" (method
# settings, used by the methods that take them). "lr_batch" says the lr was set for that many images per
# step: scale it linearly with ``scaled_lr`` when the batch size differs.
PRESETS: Registry[dict[str, Any]] = Registry("preset")
PRESETS.add("cifar100", {
    "description": "SimKD/ATSC CIFAR-100 recipe: 240 epochs, SGD 0.05, steps 150/180/210, wd 5e-4, batch 64, w 1, r 2",
    "training": {"epochs": 240, "lr": 0.05, "schedule": "multistep", "milestones": (150, 180, 210), "gamma": 0.1,
                 "momentum": 0.9, "weight_decay": 5e-4, "batch_size": 64, "lr_batch": 64},
    "distill": {"w": 1.0, "factor": 2, "beta": 1.0},
}, "cifar-100")
PRESETS.add("imagenet", {
    "description": "ATSC ImageNet recipe: 120 epochs, SGD 0.01 per 64 images, steps 30/60/90, wd 1e-4, w 10, r 2",
    "training": {"epochs": 120, "lr": 0.04, "schedule": "multistep", "milestones": (30, 60, 90), "gamma": 0.1,
                 "momentum": 0.9, "weight_decay": 1e-4, "batch_size": 256, "lr_batch": 256},
    "distill": {"w": 10.0, "factor": 2, "beta": 1.0},
})
PRESETS.add("fashion-mnist", {
    "description": "short CPU-friendly run: 6 epochs, SGD 0.05 cosine, wd 5e-4, batch 64, w 1, r 2",
    "training": {"epochs": 6, "lr": 0.05, "schedule": "cosine", "milestones": (), "momentum": 0.9,
                 "weight_decay": 5e-4, "batch_size": 64, "lr_batch": 64},
    "distill": {"w": 1.0, "factor": 2, "beta": 1.0},
}, "fmnist")


def scaled_lr(preset: dict[str, Any], batch_size: int) -> float:
    """The preset's learning rate for ``batch_size`` (linear scaling from its ``lr_batch``)."""
    training = preset["training"]
    return float(training["lr"]) * batch_size / float(training.get("lr_batch", training["batch_size"]))


# The preset of a run that names none, by dataset.
DATASET_PRESETS = {"fashion-mnist": "fashion-mnist", "cifar100": "cifar100", "imagefolder": "imagenet"}


def resolve_preset(name: str | None, dataset: str | None,
                   explicit: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any], str]:
    """A run's training keys (``TrainConfig`` fields + batch_size) and method settings: ``explicit``
    training values (None: not given) > the preset (``name``, else the dataset's) > built-in defaults.
    Returns (training, the preset's method settings, the preset's name or 'none')."""
    name = name or (DATASET_PRESETS.get(DATASETS.canonical(dataset), "") if dataset else "")  # None: data from Python
    preset = PRESETS.get(name) if name else {"training": {}, "distill": {}}
    training = {k: v for k, v in preset["training"].items() if k != "lr_batch"}
    given = {k: v for k, v in explicit.items() if v is not None}
    if "batch_size" in given and "lr" not in given and "lr" in training:
        training["lr"] = scaled_lr(preset, given["batch_size"])  # linear scaling rule
    training.update(given)
    return training, dict(preset["distill"]), name or "none"


def training_defaults(training: Any) -> dict[str, Any]:
    """The settings that follow the training schedule (``setting(..., follows=...)``), from ``training``
    (a ``compress.train.TrainConfig``): e.g. ATSC's bias-refinement momentum is the optimizer's."""
    return {info.name: getattr(training, info.follows) for info in settings_table().values() if info.follows}
