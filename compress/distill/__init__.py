"""Distillation methods (one file each) behind one contract (``base.Method``).

``build_method(config, student, teachers)`` is the single factory; ``METHODS`` lists the choices.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from compress.distill.base import Method, StepOutput, Supervised
from compress.errors import ConfigError
from compress.models import ClassifierModel
from compress.registry import Registry


@dataclass(frozen=True)
class MethodEntry:
    summary: str
    build: Callable[..., Method]  # (config, student, teachers, image_size) -> Method
    needs_teachers: bool


METHODS: Registry[MethodEntry] = Registry("method")

# The config imports METHODS lazily, so it is imported after the registry exists.
from compress.distill.atsc import ATSC  # noqa: E402
from compress.distill.config import PRESETS, DistillConfig, scaled_lr  # noqa: E402
from compress.distill.kd import KD  # noqa: E402
from compress.distill.projector import PROJECTORS, Projector, build_projector  # noqa: E402
from compress.distill.shared_head import SharedHeadStudent, deployed_cost, format_cost  # noqa: E402
from compress.distill.simkd import SimKD  # noqa: E402

METHODS.add("none", MethodEntry("the student alone with cross-entropy (baseline)",
                                lambda c, s, t, size: Supervised(s, c.label_smoothing), False), "scratch")
METHODS.add("kd", MethodEntry(KD.summary, lambda c, s, t, size: KD(s, t, c.temperature, c.ce_weight, c.kl_weight), True),
            "hinton")
METHODS.add("simkd", MethodEntry(SimKD.summary, lambda c, s, t, size: SimKD(s, t, c.projector, c.factor, c.beta, size),
                                 True))
METHODS.add("atsc", MethodEntry(ATSC.summary, lambda c, s, t, size: ATSC(
    s, t, projector=c.projector, factor=c.factor, beta=c.beta, w=c.w, reference=c.reference, teacher_ce=c.teacher_ce,
    teacher_lr_scale=c.teacher_lr_scale, anchor_scope=c.anchor_scope, bn_mode=c.bn_mode, momentum=c.momentum,
    stability=c.stability, teacher_drop_limit=c.teacher_drop_limit, image_size=size, shared_kl=c.shared_kl,
    temperature=c.temperature, teacher_feedback=c.teacher_feedback, adapt_last=c.adapt_last), True))


def check_teachers(student: ClassifierModel, teachers: list[ClassifierModel]) -> None:
    """Teachers must share the student's label space and input images, and be distinct modules."""
    for i, teacher in enumerate(teachers):
        who = f"teacher {i + 1} ({teacher.spec.name})"
        if teacher.num_classes != student.num_classes:
            raise ConfigError(f"{who} has {teacher.num_classes} classes but the student ({student.spec.name}) has "
                              f"{student.num_classes}: all teachers must share the student's label space")
        if teacher.in_channels != student.in_channels:
            raise ConfigError(f"{who} takes {teacher.in_channels}-channel images but the student "
                              f"({student.spec.name}) takes {student.in_channels}: all teachers must take the same input")
        for j, other in enumerate(teachers[:i]):
            if other is teacher:
                raise ConfigError(f"teachers {j + 1} and {i + 1} are the same module object: pass separate copies")
        if teacher is student:
            raise ConfigError(f"{who} is the student module itself: pass a separate teacher")


def build_method(config: DistillConfig, student: ClassifierModel, teachers: list[ClassifierModel],
                 image_size: int | tuple[int, int] | None = None) -> Method:
    """The method ``config.method`` on ``student`` with ``teachers`` (ignored by ``none``).

    Shared-classifier methods align feature maps at the first batch; pass ``image_size`` to resolve it
    now (so ``deployable().architecture()`` works before training). Teachers are modified in place:
    KD/SimKD freeze them, ATSC makes them trainable.
    """
    entry = METHODS.get(config.method)
    if entry.needs_teachers:
        if not teachers:
            raise ConfigError(f"method '{config.method}' needs at least one teacher (--teacher NAME)")
        check_teachers(student, teachers)
    return entry.build(config, student, list(teachers), image_size)


__all__ = [
    "ATSC", "KD", "METHODS", "PRESETS", "PROJECTORS", "DistillConfig", "Method", "MethodEntry", "Projector",
    "SharedHeadStudent", "SimKD", "StepOutput", "Supervised", "build_method", "build_projector", "check_teachers",
    "deployed_cost", "format_cost", "scaled_lr",
]
