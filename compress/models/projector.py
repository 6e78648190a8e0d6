"""Projectors that map the student's last feature map into a teacher's feature space.

The reference is SimKD's bottleneck (Chen et al., CVPR 2022), reused by ATSC: conv1x1 (C_s -> C_t/r),
BN, ReLU, conv3x3, BN, ReLU, conv1x1 (-> C_t), BN, ReLU, no conv bias. Lighter kinds exist because the
reference projector can outweigh an edge student (mobilenet_v2 -> resnet50: 12.85 M vs 3.50 M params).
Projectors are part of the deployed student (``shared_head.py``), hence they live with the models.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from compress.errors import ConfigError
from compress.models.projector_kinds import PROJECTORS


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
