"""Typed, self-validating settings of the distillation methods, and the papers' recipes as presets."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from compress.errors import ConfigError
from compress.registry import Registry

ANCHOR_SCOPES = ("reference", "all")
BN_MODES = ("train", "frozen")
STABILITY = ("error", "warn", "off")

# ATSC guards: what the project default runs, and the neutral values that give the authors' semantics.
GUARD_DEFAULTS: dict[str, Any] = {"teacher_ce": 1.0, "teacher_lr_scale": 0.1, "anchor_scope": "all", "bn_mode": "train",
                                  "shared_kl": 1.0}
REFERENCE_GUARDS: dict[str, Any] = {"teacher_ce": 0.0, "teacher_lr_scale": 1.0, "anchor_scope": "reference",
                                    "bn_mode": "train", "shared_kl": 0.0}


@dataclass
class DistillConfig:
    """Method settings (the training schedule lives in ``compress.train.TrainConfig``).

    Guard fields left as ``None`` resolve by mode: ``reference=True`` gives the authors' semantics
    (``REFERENCE_GUARDS``), otherwise the project defaults (``GUARD_DEFAULTS``). Set one explicitly to
    layer a guard on either path.
    """

    method: str = "atsc"  # none | kd | simkd | atsc
    # shared-classifier methods (simkd, atsc)
    projector: str = "bottleneck"  # bottleneck (reference) | depthwise | pointwise | linear
    factor: int = 2  # projector bottleneck width C_t / r
    beta: float = 1.0  # feature-MSE weight
    # atsc
    reference: bool = False  # the authors' path: autograd anchor, 2nd teacher pass + separate bias SGD
    w: float = 1.0  # anchor weight (1 CIFAR-100, 10 ImageNet)
    teacher_ce: float | None = None  # weight of the teacher's own CE in L1 (keeps it from collapsing)
    teacher_lr_scale: float | None = None  # teacher lr = lr * this (the classifier bias refines at lr)
    anchor_scope: str | None = None  # reference: conv kernels + W; all: every teacher param but the classifier bias
    bn_mode: str | None = None  # train: batch statistics (reference); frozen: running statistics fixed
    shared_kl: float | None = None  # weight of T^2 KL(teacher || student) through the shared classifier, all images
    teacher_feedback: bool = True  # False: the MSE does not reach the teacher (the control for ATSC's claim)
    adapt_last: int | None = None  # only the teacher body's last N blocks adapt (None: all); a cheaper step
    momentum: float = 0.9  # SGD momentum of the bias refinement, and the one the stability check assumes
    stability: str = "error"  # lr * teacher_lr_scale * 2w >= 2(1 + momentum) diverges: error | warn | off
    teacher_drop_limit: float = 0.01  # health warning when a teacher keeps < (1 - this) of its top-1
    # kd
    temperature: float = 4.0
    ce_weight: float = 0.1
    kl_weight: float = 0.9
    # none
    label_smoothing: float = 0.0

    def __post_init__(self) -> None:
        from compress.distill import METHODS  # the registry lives with the methods

        self.method = METHODS.canonical(self.method)
        from compress.distill.projector import PROJECTORS

        self.projector = PROJECTORS.canonical(self.projector)
        for key, value in (REFERENCE_GUARDS if self.reference else GUARD_DEFAULTS).items():
            if getattr(self, key) is None:
                setattr(self, key, value)
        self.validate()

    def validate(self) -> None:
        def number(name: str, low: float, high: float = math.inf, low_open: bool = False) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or value < low or value > high or (low_open and value == low):
                bound = f"> {low}" if low_open else f">= {low}"
                raise ConfigError(f"distill setting '{name}' must be a number {bound}"
                                  + (f" and <= {high}" if high != math.inf else "") + f", got {value!r}")

        if isinstance(self.factor, bool) or not isinstance(self.factor, int) or self.factor < 1:
            raise ConfigError(f"distill setting 'factor' (projector r) must be a whole number >= 1, got {self.factor!r}")
        number("beta", 0.0)
        number("w", 0.0)
        number("teacher_ce", 0.0)
        number("teacher_lr_scale", 0.0)
        number("shared_kl", 0.0)
        if self.adapt_last is not None and (isinstance(self.adapt_last, bool) or not isinstance(self.adapt_last, int)
                                            or self.adapt_last < 1):
            raise ConfigError(f"distill setting 'adapt_last' must be a whole number >= 1 (teacher blocks that adapt), "
                              f"got {self.adapt_last!r}")
        number("momentum", 0.0, 0.999)
        number("teacher_drop_limit", 0.0, 1.0)
        number("temperature", 0.0, low_open=True)
        number("ce_weight", 0.0)
        number("kl_weight", 0.0)
        number("label_smoothing", 0.0, 0.999)
        for name, choices in (("anchor_scope", ANCHOR_SCOPES), ("bn_mode", BN_MODES), ("stability", STABILITY)):
            if getattr(self, name) not in choices:
                raise ConfigError(f"distill setting '{name}' must be one of {', '.join(choices)}; got {getattr(self, name)!r}")
        for name in ("reference", "teacher_feedback"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"distill setting '{name}' must be true or false, got {getattr(self, name)!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "DistillConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown distill setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**data)


# ---------------------------------------------------------------------------------------------- presets
# Each preset: "training" (keys of compress.train.TrainConfig, plus batch_size) and "distill" (DistillConfig
# fields). "lr_batch" says the lr was set for that many images per step: scale it linearly with
# ``scaled_lr`` when the batch size differs.
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
