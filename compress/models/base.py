"""The one contract every model honours.

``features(x)`` returns the last feature map (before global pooling); ``head(map)`` pools and
classifies. Feature-based distillation relies on this, never on hooks into layer names.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a model's architecture (weights come separately)."""

    name: str
    num_classes: int
    in_channels: int = 3
    small_input: bool = False

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelSpec":
        return cls(**{k: data[k] for k in ("name", "num_classes", "in_channels", "small_input") if k in data})


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
        return {"type": "classifier", "model": self.spec.to_dict()}

    @property
    def classifier(self) -> nn.Linear:
        """The final linear layer (the ``g = (W, b)`` that shared-classifier methods reuse)."""
        linears = [m for m in self.head_module.modules() if isinstance(m, nn.Linear)]
        return linears[-1]


def pooled_head(feature_channels: int, num_classes: int, *before_linear: nn.Module) -> nn.Sequential:
    """Global average pool, flatten, optional layers, then the linear classifier."""
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1), *before_linear, nn.Linear(feature_channels, num_classes))


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
