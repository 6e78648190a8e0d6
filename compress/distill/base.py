"""The contract every training method honours; the training loop only ever talks to this.

``method(images, labels) -> StepOutput`` computes the loss for one batch; ``method.deployable()``
returns the module that is evaluated, exported and shipped. Optional hooks let a method act around
the optimizer step (e.g. ATSC's bias refinement) without the loop knowing which method it runs.

Methods are registered by name in ``methods.METHODS`` with their typed settings (``configs.py``), so
the command line knows them without importing this module (torch).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterable

import torch
from torch import nn

from compress.data.labels import labeled_ce
from compress.distill.configs import SupervisedConfig
from compress.distill.methods import METHODS
from compress.distill.settings import MethodConfig
from compress.models.base import ClassifierModel


@dataclass
class StepOutput:
    loss: torch.Tensor  # scalar, requires grad
    logits: torch.Tensor  # the deployable path's logits for this batch (train accuracy)
    parts: dict[str, torch.Tensor] = field(default_factory=dict)  # named, detached loss terms for logging


class Method(nn.Module):
    """Base class. Subclasses own every module they train and decide what is deployed."""

    # What ``METHODS.register`` reads from a class registered from Python (built-ins: ``methods.py``).
    summary: ClassVar[str] = ""  # one line for `compress list methods`
    config_class: ClassVar[type[MethodConfig]] = MethodConfig  # its settings
    needs_teachers: ClassVar[bool] = True
    # Which data the method learns from. On partly labelled data (compress.data.labels) a method that
    # uses unlabelled images gets mixed batches; one that does not gets batches of labelled images.
    uses_unlabeled: bool = True
    # The named loss parts that read labels; they average over the labelled images of a batch only
    # (``labeled_ce``), every other part uses every image. Tests hold each method to this.
    label_terms: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """The name the method (or the class it extends) is registered under."""
        for cls in type(self).__mro__:
            name = METHODS.name_of(cls)
            if name is not None:
                return name
        return type(self).__name__

    @classmethod
    def from_config(cls, config: Any, student: ClassifierModel, teachers: list[ClassifierModel],
                    image_size: int | tuple[int, int] | None = None) -> "Method":
        """The method with its settings (a ``config_class``); by default ``cls(student, teachers, config)``."""
        return cls(student, teachers, config)

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> StepOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    def deployable(self) -> nn.Module:  # pragma: no cover - abstract
        raise NotImplementedError

    def param_groups(self, lr: float, weight_decay: float) -> list[dict[str, Any]]:
        """Optimizer parameter groups; each may carry ``lr_scale`` (multiplies the scheduled lr)."""
        params = [p for p in self.parameters() if p.requires_grad]
        return [{"params": params, "lr": lr, "weight_decay": weight_decay, "lr_scale": 1.0}]

    def before_optimizer_step(self) -> None:
        """Called after backward, before ``optimizer.step()`` (gradients may be edited here)."""

    def after_optimizer_step(self, images: torch.Tensor, labels: torch.Tensor, lr: float) -> None:
        """Called after ``optimizer.step()`` with the step's batch and the base learning rate."""

    def teachers_measured(self, top1: list[float]) -> None:
        """The teachers' validation top-1 (%) before training, measured by the caller on the same data.

        A method that monitors its teachers (ATSC) keeps these instead of measuring them again."""

    @torch.no_grad()
    def epoch_metrics(self, val_loader: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, float]:
        """Extra per-epoch numbers (e.g. the adapted teacher's accuracy); evaluated after each epoch."""
        return {}

    def health(self, metrics: dict[str, float]) -> list[str]:
        """Warnings about this epoch's ``epoch_metrics`` (e.g. a collapsing teacher); ``--strict`` stops on any."""
        return []

    def extra_checkpoints(self) -> dict[str, nn.Module]:
        """Modules worth saving beside the deployable one (e.g. adapted teachers), by file stem."""
        return {}


class Supervised(Method):
    """Plain cross-entropy training of one model: teachers, and the 'none' distillation baseline."""

    needs_teachers = False
    uses_unlabeled = False
    label_terms = ("ce",)

    def __init__(self, model: ClassifierModel, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.model = model
        self.label_smoothing = label_smoothing

    @classmethod
    def from_config(cls, config: SupervisedConfig, student: ClassifierModel, teachers: list[ClassifierModel],
                    image_size: int | tuple[int, int] | None = None) -> "Supervised":
        return cls(student, config.label_smoothing)  # no teachers: the student alone

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> StepOutput:
        logits = self.model(images)
        loss = labeled_ce(logits, labels, self.label_smoothing)
        return StepOutput(loss, logits, {"ce": loss.detach()})

    def deployable(self) -> nn.Module:
        return self.model
