"""Hinton knowledge distillation ("Distilling the Knowledge in a Neural Network", 2015).

The student keeps its own head and is what is deployed. Teachers are frozen and in eval mode; with
several teachers the soft targets are the mean of their softened probabilities.
"""

from __future__ import annotations

import torch
from torch import nn

from compress.distill.base import Method, StepOutput
from compress.distill.configs import KDConfig
from compress.distill.losses import kd_loss, mean_soft_targets
from compress.models.base import ClassifierModel


def freeze(teacher: ClassifierModel) -> ClassifierModel:
    """Teachers of KD/SimKD never train: no gradients, eval mode (kept there by ``Method.train``)."""
    teacher.requires_grad_(False)
    return teacher.eval()


class KD(Method):
    label_terms = ("ce",)

    def __init__(self, student: ClassifierModel, teachers: list[ClassifierModel],
                 config: KDConfig | None = None) -> None:
        super().__init__()
        self.student = student
        self.teachers = nn.ModuleList([freeze(t) for t in teachers])
        self.config = config or KDConfig()

    def train(self, mode: bool = True) -> "KD":
        super().train(mode)
        self.teachers.eval()
        return self

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> StepOutput:
        with torch.no_grad():
            targets = mean_soft_targets([t(images) for t in self.teachers], self.config.temperature)
        logits = self.student(images)
        loss, ce, kl = kd_loss(logits, targets, labels, self.config.temperature, self.config.ce_weight,
                               self.config.kl_weight)
        return StepOutput(loss, logits, {"ce": ce.detach(), "kl": kl.detach()})

    def deployable(self) -> nn.Module:
        return self.student

    def param_groups(self, lr: float, weight_decay: float) -> list[dict]:
        return [{"params": [p for p in self.student.parameters() if p.requires_grad], "lr": lr,
                 "weight_decay": weight_decay, "lr_scale": 1.0, "name": "student"}]
