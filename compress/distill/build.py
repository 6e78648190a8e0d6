"""``build_method(config, student, teachers)``: the single factory of training methods."""

from __future__ import annotations

from compress.distill.base import Method
from compress.distill.config import DistillConfig
from compress.distill.methods import METHODS
from compress.errors import ConfigError
from compress.models.base import ClassifierModel


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
    method = METHODS.get(config.method)
    if method.needs_teachers:
        if not teachers:
            raise ConfigError(f"method '{config.method}' needs at least one teacher (--teacher NAME)")
        check_teachers(student, teachers)
    return method.load().from_config(config.settings, student, list(teachers), image_size)


__all__ = ["build_method", "check_teachers"]
