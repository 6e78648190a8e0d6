"""Tiny models and a minimal training step for the distillation tests (16 px, 1 channel, 10 classes)."""

from __future__ import annotations

import pytest
import torch

from compress.distill.base import Method, StepOutput
from compress.models import ClassifierModel, create_model
from compress.train import TrainConfig, make_optimizer

SIZE = 16


def tiny(name: str, num_classes: int = 10, in_channels: int = 1, seed: int = 0) -> ClassifierModel:
    torch.manual_seed(seed)
    return create_model(name, num_classes, in_channels, SIZE)


def batch(n: int = 8, seed: int = 1, in_channels: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, in_channels, SIZE, SIZE, generator=g), torch.randint(0, 10, (n,), generator=g)


def optimizer(method: Method, lr: float = 0.1, weight_decay: float = 5e-4) -> torch.optim.SGD:
    return make_optimizer(method, TrainConfig(lr=lr, weight_decay=weight_decay, momentum=0.9))


def train_step(method: Method, opt: torch.optim.Optimizer, images: torch.Tensor, labels: torch.Tensor,
               lr: float = 0.1) -> StepOutput:
    """The loop's step, in the same order as compress.train.fit."""
    method.train()
    out = method(images, labels)
    opt.zero_grad(set_to_none=True)
    out.loss.backward()
    method.before_optimizer_step()
    opt.step()
    method.after_optimizer_step(images, labels, lr)
    return out


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models gain nothing from intra-op threads, and on a shared 2-core machine spinning OpenMP
    threads make these tests several times slower; restored afterwards for the rest of the session."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

