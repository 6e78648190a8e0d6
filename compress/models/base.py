"""The one contract every model honours.

``features(x)`` returns the last feature map (before global pooling); ``head(map)`` pools and
classifies. Feature-based distillation relies on this, never on hooks into layer names.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a model's architecture (weights come separately).

    ``name`` is a zoo name (``resnet20``), ``timm:NAME``, or ``python:module:factory`` for a model from
    user code, rebuilt as ``factory(**kwargs)`` cut at ``split`` (see ``compress.models.user``).
    """

    name: str
    num_classes: int
    in_channels: int = 3
    small_input: bool = False
    kwargs: dict[str, Any] | None = field(default=None, hash=False)
    split: str | None = None

    def to_dict(self) -> dict:
        # the user-model fields only when set: zoo specs stay as they were recorded before
        return {k: v for k, v in asdict(self).items() if v is not None or k not in ("kwargs", "split")}

    @classmethod
    def from_dict(cls, data: dict) -> "ModelSpec":
        keys = ("name", "num_classes", "in_channels", "small_input", "kwargs", "split")
        return cls(**{k: data[k] for k in keys if k in data})


class ClassifierModel(nn.Module):
    """A backbone (``body``) and a pooling classifier (``head_module``) with channel attributes."""

    def __init__(self, spec: ModelSpec, body: nn.Module, head: nn.Module, feature_channels: int) -> None:
        super().__init__()
        self.spec = spec
        self.body = body
        self.head_module = head
        self.feature_channels = feature_channels
        self.num_classes = spec.num_classes
        self.in_channels = spec.in_channels

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def head(self, feature_map: torch.Tensor) -> torch.Tensor:
        return self.head_module(feature_map)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def architecture(self) -> dict:
        """The JSON spec that rebuilds this module (see ``compress.models.architecture``)."""
        check_recordable(self)
        return {"type": "classifier", "model": self.spec.to_dict()}

    @property
    def classifier(self) -> nn.Linear:
        """The final linear layer (the ``g = (W, b)`` that shared-classifier methods reuse)."""
        linears = [m for m in self.head_module.modules() if isinstance(m, nn.Linear)]
        return linears[-1]


def check_recordable(model: nn.Module) -> None:
    """Models wrapped from user code without a way to rebuild them say why when something tries to save them."""
    reason = getattr(model, "unrecordable", None)
    if reason:
        from compress.errors import ConfigError

        raise ConfigError(f"model '{model.spec.name}' cannot be saved as a checkpoint: {reason}")


def pooled_head(feature_channels: int, num_classes: int, *before_linear: nn.Module) -> nn.Sequential:
    """Global average pool, flatten, optional layers, then the linear classifier."""
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1), *before_linear, nn.Linear(feature_channels, num_classes))


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
