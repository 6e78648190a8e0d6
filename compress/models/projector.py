"""Projectors that map the student's last feature map into a teacher's feature space.

The reference is SimKD's bottleneck (Chen et al., CVPR 2022), reused by ATSC: conv1x1 (C_s -> C_t/r),
BN, ReLU, conv3x3, BN, ReLU, conv1x1 (-> C_t), BN, ReLU, no conv bias. Lighter kinds exist because the
reference projector can outweigh an edge student (mobilenet_v2 -> resnet50: 12.85 M vs 3.50 M params).
Projectors are part of the deployed student (``shared_head.py``), hence they live with the models.
"""

from __future__ import annotations

from typing import Any, Callable

from torch import nn

from compress.errors import ConfigError
from compress.registry import Registry


def _conv_bn_relu(cin: int, cout: int, kernel: int, groups: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel, padding=kernel // 2, groups=groups, bias=False), nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True)]


def bottleneck_layers(cin: int, cout: int, factor: int) -> list[nn.Module]:
    """Reference (SimKD/ATSC): 1x1 -> 3x3 -> 1x1, width C_t / r."""
    mid = max(1, cout // factor)
    return _conv_bn_relu(cin, mid, 1) + _conv_bn_relu(mid, mid, 3) + _conv_bn_relu(mid, cout, 1)


def depthwise_layers(cin: int, cout: int, factor: int) -> list[nn.Module]:
    """The bottleneck with a depthwise 3x3 (``mid`` groups): ~``9 mid^2`` fewer weights."""
    mid = max(1, cout // factor)
    return _conv_bn_relu(cin, mid, 1) + _conv_bn_relu(mid, mid, 3, groups=mid) + _conv_bn_relu(mid, cout, 1)


def pointwise_layers(cin: int, cout: int, factor: int) -> list[nn.Module]:
    """1x1 only: the bottleneck without its 3x3 (no spatial mixing), width C_t / r."""
    mid = max(1, cout // factor)
    return _conv_bn_relu(cin, mid, 1) + _conv_bn_relu(mid, cout, 1)


def linear_layers(cin: int, cout: int, factor: int) -> list[nn.Module]:
    """A single 1x1 conv C_s -> C_t (FitNets-style regressor), BN, ReLU; ``factor`` is unused."""
    return _conv_bn_relu(cin, cout, 1)


PROJECTORS: Registry[Callable[[int, int, int], list[nn.Module]]] = Registry("projector")
PROJECTORS.add("bottleneck", bottleneck_layers, "reference")
PROJECTORS.add("depthwise", depthwise_layers, "dw")
PROJECTORS.add("pointwise", pointwise_layers, "1x1", "conv1x1")
PROJECTORS.add("linear", linear_layers)


class Projector(nn.Sequential):
    """A projector of a registered kind; ``spec`` rebuilds it (``build_projector(**spec)``)."""

    def __init__(self, kind: str, in_channels: int, out_channels: int, factor: int = 2) -> None:
        kind = PROJECTORS.canonical(kind)
        if factor < 1:
            raise ConfigError(f"projector factor must be >= 1, got {factor}")
        super().__init__(*PROJECTORS.get(kind)(in_channels, out_channels, factor))
        self.spec: dict[str, Any] = {"kind": kind, "in_channels": in_channels, "out_channels": out_channels,
                                     "factor": factor}


def build_projector(kind: str, in_channels: int, out_channels: int, factor: int = 2) -> Projector:
    return Projector(kind, in_channels, out_channels, factor)
