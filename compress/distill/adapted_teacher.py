"""The pieces of a teacher that adapts during distillation (ATSC): the anchored parameter set, the
frozen snapshot theta0 it is anchored to, the body blocks that stay fixed, and its head up to the classifier.
"""

from __future__ import annotations

import torch
from torch import nn

from compress.errors import ConfigError
from compress.models import ClassifierModel


def anchor_names(teacher: ClassifierModel, scope: str) -> list[str]:
    """The anchored parameter set Theta_pen.

    ``reference`` (ATSC.md): every parameter with ``ndim > 1`` except the classifier bias, i.e. conv
    kernels and linear weights; BN affine parameters and biases are free. ``all`` (guard, ours): every
    parameter except the classifier bias, BN included (the bias is what the refinement step trains).
    """
    bias = teacher.classifier.bias
    return [name for name, p in teacher.named_parameters()
            if p is not bias and p.requires_grad and (scope == "all" or p.ndim > 1)]


def fixed_front(teacher: ClassifierModel, adapt_last: int | None) -> list[nn.Module]:
    """The teacher body's top-level blocks that stay fixed when only its last ``adapt_last`` adapt."""
    if adapt_last is None:
        return []
    blocks = list(teacher.body.children())
    if not 1 <= adapt_last <= len(blocks):
        raise ConfigError(f"adapt_last must be between 1 and {len(blocks)} (the blocks of {teacher.spec.name}'s body), "
                          f"got {adapt_last}")
    return blocks[:len(blocks) - adapt_last]


def pre_classifier(head: nn.Sequential, feature_map: torch.Tensor) -> torch.Tensor:
    """The teacher head up to (not including) its final Linear: GAP, flatten, any hidden layers."""
    x = feature_map
    for layer in list(head)[:-1]:
        x = layer(x)
    return x


class Snapshot(nn.Module):
    """A frozen copy of a teacher's parameters and buffers (theta0), moved with the method by ``.to()``.

    Non-persistent: a resumed run rebuilds the method from the original teacher weights (same theta0)
    before loading its state, so theta0 is never stored twice.
    """

    def __init__(self, teacher: nn.Module) -> None:
        super().__init__()
        self.names = [n for n, _ in teacher.named_parameters()] + [n for n, _ in teacher.named_buffers()]
        state = dict(teacher.named_parameters()) | dict(teacher.named_buffers())
        for name in self.names:
            self.register_buffer(name.replace(".", "__"), state[name].detach().clone(), persistent=False)

    def get(self, names: list[str]) -> list[torch.Tensor]:
        return [self._buffers[n.replace(".", "__")] for n in names]  # type: ignore[misc]

    def state(self) -> dict[str, torch.Tensor]:
        return dict(zip(self.names, self.get(self.names)))
