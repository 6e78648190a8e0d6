"""Tiny models and the loop's training step for the distillation tests (16 px, 1 channel, 10 classes).

A module of its own (not conftest) so tests can import it without clashing with other folders' conftests."""

from __future__ import annotations

import torch

from compress.distill.base import Method, StepOutput
from compress.models import ClassifierModel, create_model
from compress.step import make_optimizer
from compress.step import train_step as loop_step

SIZE = 16


def tiny(name: str, num_classes: int = 10, in_channels: int = 1, seed: int = 0) -> ClassifierModel:
    torch.manual_seed(seed)
    return create_model(name, num_classes, in_channels, SIZE)


def batch(n: int = 8, seed: int = 1, in_channels: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, in_channels, SIZE, SIZE, generator=g), torch.randint(0, 10, (n,), generator=g)


def optimizer(method: Method, lr: float = 0.1, weight_decay: float = 5e-4) -> torch.optim.SGD:
    return make_optimizer(method, lr=lr, momentum=0.9, weight_decay=weight_decay)


def train_step(method: Method, opt: torch.optim.Optimizer, images: torch.Tensor, labels: torch.Tensor,
               lr: float = 0.1) -> StepOutput:
    """The loop's own step (compress.train.train_step), in train mode."""
    method.train()
    return loop_step(method, opt, images, labels, lr)


