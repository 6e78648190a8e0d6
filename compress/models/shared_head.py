"""The deployable student of shared-classifier methods (SimKD, ATSC).

``SharedHeadStudent`` = student backbone ``S`` + for each teacher k a projector ``P_k`` and that
teacher's (adapted) head ``g_k``; ``logits = (1/K) sum_k g_k(GAP(P_k(align_k(S(x)))))``. The student's own
head is not part of it. Its ``architecture()`` spec rebuilds it without the teachers' backbones, and its
builder (``build_shared_head``, named in ``architecture.ARCHITECTURES``) lives here, so export and validation
load it like any other deployable module without importing the methods that train it.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from compress.errors import ConfigError
from compress.models.base import ClassifierModel, ModelSpec
from compress.models.projector import Projector, build_projector
from compress.models.zoo import build_model


class Branch(nn.Module):
    """One teacher's path: optional pooling to ``align``, the projector, the teacher's head."""

    def __init__(self, projector: Projector, head: nn.Module, teacher_spec: ModelSpec,
                 align: tuple[int, int] | None = None, resolved: bool = False) -> None:
        super().__init__()
        self.projector = projector
        self.head = head
        self.teacher_spec = teacher_spec
        self.align = align
        # False until the first batch (or a probe) has shown both feature-map sizes.
        self.resolved = resolved or align is not None

    def set_align(self, align: tuple[int, int] | None) -> None:
        if self.resolved and align != self.align:
            raise ConfigError(f"feature-map alignment changed from {self.align} to {align}: "
                             "shared-classifier students need one fixed input size")
        self.align, self.resolved = align, True

    def project(self, student_map: torch.Tensor) -> torch.Tensor:
        if self.align is not None:
            student_map = F.adaptive_avg_pool2d(student_map, self.align)
        return self.projector(student_map)

    def forward(self, student_map: torch.Tensor) -> torch.Tensor:
        return self.head(self.project(student_map))

    def spec(self) -> dict[str, Any]:
        if not self.resolved:
            raise RuntimeError("the projector alignment is not known yet: run one training batch first "
                               "(or build the method with image_size=...)")
        return {"teacher": self.teacher_spec.to_dict(), "projector": dict(self.projector.spec),
                "align": None if self.align is None else list(self.align)}


class SharedHeadStudent(nn.Module):
    """Student backbone + K (projector, teacher head) branches; the mean of the K logits."""

    def __init__(self, student_spec: ModelSpec, backbone: nn.Module, branches: list[Branch]) -> None:
        super().__init__()
        if not branches:
            raise ValueError("a shared-head student needs at least one branch")
        self.student_spec = student_spec
        self.backbone = backbone
        self.branches = nn.ModuleList(branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feature_map = self.backbone(x)
        logits = [branch(feature_map) for branch in self.branches]
        return logits[0] if len(logits) == 1 else torch.stack(logits).mean(0)

    def architecture(self) -> dict[str, Any]:
        return {"type": "shared_head", "student": self.student_spec.to_dict(),
                "branches": [branch.spec() for branch in self.branches]}


def _reset(module: nn.Module) -> nn.Module:
    """Defined values for modules materialised from ``meta`` (weights are loaded afterwards anyway)."""
    for m in module.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
    return module


def _materialise(spec: ModelSpec) -> ClassifierModel:
    # Built on the meta device: no memory and no init cost for parts we throw away (teacher backbones).
    with torch.device("meta"):
        return build_model(spec)


def build_shared_head(arch: dict[str, Any]) -> SharedHeadStudent:
    """The student of ``SharedHeadStudent.architecture()``, without the teachers' backbones."""
    device = "meta" if torch.get_default_device().type == "meta" else "cpu"  # meta: shapes only (a check)
    student_spec = ModelSpec.from_dict(arch["student"])
    backbone = _reset(_materialise(student_spec).body.to_empty(device=device))
    branches = []
    for b in arch["branches"]:
        head = _reset(_materialise(ModelSpec.from_dict(b["teacher"])).head_module.to_empty(device=device))
        align = None if b["align"] is None else (int(b["align"][0]), int(b["align"][1]))
        branches.append(Branch(build_projector(**b["projector"]), head, ModelSpec.from_dict(b["teacher"]),
                               align, resolved=True))
    return SharedHeadStudent(student_spec, backbone, branches)


def feature_size(spec: ModelSpec, image_size: int | tuple[int, int]) -> tuple[int, int]:
    """The last feature map's (H, W) for an input size, computed on the meta device (no compute)."""
    h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
    model = _materialise(spec).eval()
    with torch.device("meta"):
        out = model.features(torch.empty(1, spec.in_channels, h, w))
    return int(out.shape[-2]), int(out.shape[-1])


def align_maps(student_map: torch.Tensor, teacher_map: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int] | None]:
    """SimKD's spatial alignment: the larger map is adaptive-average-pooled to the smaller size.

    Returns (student source, teacher target, the size the *student* map is pooled to or None).
    Only the student-side pooling is part of the deployed module (``Branch.align``); the teacher side
    only shapes the training target. Works per dimension so non-square maps align too.
    """
    sh, sw = student_map.shape[-2:]
    th, tw = teacher_map.shape[-2:]
    size = (min(sh, th), min(sw, tw))
    student_align = None if (sh, sw) == size else size
    if student_align is not None:
        student_map = F.adaptive_avg_pool2d(student_map, size)
    if (th, tw) != size:
        teacher_map = F.adaptive_avg_pool2d(teacher_map, size)
    return student_map, teacher_map, student_align
