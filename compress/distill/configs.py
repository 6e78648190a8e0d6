"""The settings of every built-in method: one ``MethodConfig`` dataclass each, torch-free.

The command line builds the ``compress distill`` options, and the recipe schema its keys, from these
fields (``settings.py``, ``config.py``) without importing the methods (torch). A new setting is a new
field here; everything else follows from it. The method modules use these classes (and re-export them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from compress.distill.settings import MethodConfig, setting
from compress.errors import ConfigError
from compress.models.projector_kinds import PROJECTORS


@dataclass
class SupervisedConfig(MethodConfig):
    label_smoothing: float = setting(0.0, "label smoothing of the cross-entropy", low=0.0, high=0.999)


@dataclass
class KDConfig(MethodConfig):
    temperature: float = setting(4.0, "temperature T of the soft targets", low=0.0, above=True)
    ce_weight: float = setting(0.1, "weight of the label cross-entropy", low=0.0)
    kl_weight: float = setting(0.9, "weight of the T^2 KL term", low=0.0)


@dataclass
class SharedHeadConfig(MethodConfig):
    """SimKD's settings, shared by every shared-classifier method."""

    projector: str = setting("bottleneck", "projector kind: bottleneck (reference), depthwise, pointwise or linear",
                             names=PROJECTORS)
    factor: int = setting(2, "projector bottleneck factor r (C_t / r channels)", low=1)
    beta: float = setting(1.0, "weight of the feature MSE", low=0.0)


ANCHOR_SCOPES = ("reference", "all")
BN_MODES = ("train", "frozen")
STABILITY = ("error", "warn", "off")
TEACHER_ADAPT = ("all", "bn", "none")

# The guards: what the project default runs, and the neutral values that give the authors' semantics.
GUARD_DEFAULTS: dict[str, Any] = {"teacher_ce": 1.0, "teacher_lr_scale": 0.1, "anchor_scope": "all", "bn_mode": "train",
                                  "shared_kl": 1.0}
REFERENCE_GUARDS: dict[str, Any] = {"teacher_ce": 0.0, "teacher_lr_scale": 1.0, "anchor_scope": "reference",
                                    "bn_mode": "train", "shared_kl": 0.0}
# What an adapting teacher learns from, and how often. The project default comes from issue 21's records
# (benchmarks/results/distill_budgets_cpu.md, distill_shift_cpu.md): the student's feedback into the teacher
# lost to the control in every regime, and a teacher stepping on its own labels every 4th step was as good
# or better than every step, at 1.5x a KD step instead of 2.3x (benchmarks/results/train_step_cpu-adapt-cost.md).
ADAPT_DEFAULTS: dict[str, Any] = {"teacher_feedback": False, "teacher_every": 4}
# The method as published (and the reference path): the feature MSE reaches the teacher on every step. Also
# the neutral values a teacher that does not adapt its weights (teacher_adapt 'bn' or 'none') takes.
ADAPT_PUBLISHED: dict[str, Any] = {"teacher_feedback": True, "teacher_every": 1}


@dataclass
class ATSCConfig(SharedHeadConfig):
    """ATSC's settings. Guards left unset (None) resolve by mode: ``reference=True`` gives the authors'
    semantics (``REFERENCE_GUARDS``), otherwise the project defaults (``GUARD_DEFAULTS``); set one
    explicitly to layer a guard on either path. ``teacher_feedback`` and ``teacher_every`` resolve the same
    way: ``ADAPT_DEFAULTS`` for an adapting teacher on the fast path, ``ADAPT_PUBLISHED`` otherwise."""

    reference: bool = setting(False, "the authors' path: autograd anchor, second teacher pass + separate bias SGD, "
                                     "no guards")
    w: float = setting(1.0, "anchor weight (1 CIFAR-100, 10 ImageNet)", low=0.0)
    teacher_ce: float | None = setting(None, "guard: weight of the teacher's own cross-entropy, which keeps it from "
                                             "collapsing (default 1; 0 with reference)", low=0.0)
    teacher_lr_scale: float | None = setting(None, "guard: teacher lr = lr x this; the classifier bias refines at lr "
                                                   "(default 0.1; 1 with reference)", low=0.0)
    anchor_scope: str | None = setting(None, "guard: the anchored teacher parameters: reference (conv kernels + W) or "
                                             "all (BN too; the default)", choices=ANCHOR_SCOPES)
    bn_mode: str | None = setting(None, "guard: teacher BN statistics: train (batch statistics, the default) or "
                                        "frozen (running statistics fixed)", choices=BN_MODES)
    shared_kl: float | None = setting(None, "weight of T^2 KL between the teacher's and the student's outputs through "
                                            "the shared classifier, on every image (default 1; 0 with reference)",
                                      low=0.0)
    teacher_feedback: bool | None = setting(None, "let the feature MSE reach the teacher, as published (the default "
                                                  "with reference); without it (the project default) the teacher "
                                                  "learns from its own cross-entropy only")
    adapt_last: int | None = setting(None, "only the teacher body's last N blocks adapt (a cheaper step); default all",
                                     low=1)
    teacher_adapt: str = setting("all", "what of the teacher adapts: all (its weights; the method), bn (only its BN "
                                        "running statistics, to the training images: AdaBN) or none (frozen teacher, "
                                        "no teacher training: the shared-classifier arm)", choices=TEACHER_ADAPT)
    teacher_every: int | None = setting(None, "the teacher takes a gradient step every N-th training step only; in "
                                              "between its forward runs without autograd (a cheaper step); default "
                                              "4 (1 with reference, as published)", low=1)
    pseudo_threshold: float | None = setting(None, "the teacher's cross-entropy also learns from unlabelled images it "
                                                   "classifies with at least this confidence (max softmax), its argmax "
                                                   "as the label; default off", low=0.0, above=True, high=1.0)
    momentum: float = setting(0.9, "SGD momentum of the bias refinement, and the one the stability check assumes",
                              low=0.0, high=0.999, follows="momentum")
    stability: str = setting("error", "when lr x teacher_lr_scale x 2w >= 2(1 + momentum), i.e. the anchor would "
                                      "diverge: error, warn or off", choices=STABILITY)
    teacher_drop_limit: float = setting(0.01, "warn (with --strict: stop) when an adapted teacher keeps less than "
                                              "1 - this of its starting top-1", low=0.0, high=1.0)
    temperature: float = setting(4.0, "temperature T of the shared-classifier KL", low=0.0, above=True)

    def __post_init__(self) -> None:
        adapt = ADAPT_DEFAULTS if not self.reference and self.teacher_adapt == "all" else ADAPT_PUBLISHED
        for key, value in ((REFERENCE_GUARDS if self.reference else GUARD_DEFAULTS) | adapt).items():
            if getattr(self, key) is None:
                setattr(self, key, value)
        super().__post_init__()
        self._refuse_combinations()

    def _refuse_combinations(self) -> None:
        """Settings that cannot act together: one line each, naming the way out."""
        adapt = self.teacher_adapt
        if adapt != "all":
            if self.reference:
                raise ConfigError(f"teacher_adapt='{adapt}' trains no teacher weights, the reference path adapts "
                                  "them all: drop one of the two")
            meaningless = [name for name, off in (("adapt_last", self.adapt_last is None),
                                                   ("teacher_every", self.teacher_every == 1),
                                                   ("pseudo_threshold", self.pseudo_threshold is None),
                                                   ("teacher_feedback", self.teacher_feedback)) if not off]
            if meaningless:
                raise ConfigError(f"{meaningless[0]} applies to a teacher whose weights adapt; teacher_adapt='{adapt}' "
                                  "keeps them fixed: drop it or use teacher_adapt='all'")
            if adapt == "bn" and self.bn_mode == "frozen":
                raise ConfigError("teacher_adapt='bn' adapts the BN statistics that bn_mode='frozen' keeps fixed: "
                                  "drop one of the two")
        if self.reference and self.teacher_every != 1:
            raise ConfigError("the reference path steps the teacher every step: drop teacher_every or reference")
        if self.pseudo_threshold is not None and self.teacher_ce == 0:
            raise ConfigError("pseudo_threshold labels images for the teacher's cross-entropy, which is off "
                              "(teacher_ce=0): set teacher_ce > 0 or drop pseudo_threshold")


__all__ = ["ADAPT_DEFAULTS", "ADAPT_PUBLISHED", "ANCHOR_SCOPES", "ATSCConfig", "BN_MODES", "GUARD_DEFAULTS", "KDConfig",
           "REFERENCE_GUARDS", "STABILITY", "SharedHeadConfig", "SupervisedConfig", "TEACHER_ADAPT"]
