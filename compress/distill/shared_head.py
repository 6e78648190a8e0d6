"""The deployable student of shared-classifier methods (SimKD, ATSC), and its cost report.

``SharedHeadStudent`` = student backbone ``S`` + for each teacher k a projector ``P_k`` and that
teacher's (adapted) head ``g_k``; ``logits = (1/K) sum_k g_k(GAP(P_k(align_k(S(x)))))``. The student's own
head is not part of it. Its ``architecture()`` spec rebuilds it without the teachers' backbones, so
export and validation load it like any other deployable module.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from compress.deployable import ARCHITECTURES
from compress.errors import ConfigError
from compress.models import ClassifierModel, ModelSpec, build_model, count_parameters
from compress.distill.projector import Projector, build_projector


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
    student_spec = ModelSpec.from_dict(arch["student"])
    backbone = _reset(_materialise(student_spec).body.to_empty(device="cpu"))
    branches = []
    for b in arch["branches"]:
        head = _reset(_materialise(ModelSpec.from_dict(b["teacher"])).head_module.to_empty(device="cpu"))
        align = None if b["align"] is None else (int(b["align"][0]), int(b["align"][1]))
        branches.append(Branch(build_projector(**b["projector"]), head, ModelSpec.from_dict(b["teacher"]),
                               align, resolved=True))
    return SharedHeadStudent(student_spec, backbone, branches)


ARCHITECTURES.add("shared_head", build_shared_head)


def feature_size(spec: ModelSpec, image_size: int | tuple[int, int]) -> tuple[int, int]:
    """The last feature map's (H, W) for an input size, computed on the meta device (no compute)."""
    h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
    model = _materialise(spec).eval()
    with torch.device("meta"):
        out = model.features(torch.empty(1, spec.in_channels, h, w))
    return int(out.shape[-2]), int(out.shape[-1])


# ---------------------------------------------------------------------------------------------- cost
def _parts(module: nn.Module) -> dict[str, list[nn.Module]]:
    if isinstance(module, SharedHeadStudent):
        return {"student": [module.backbone], "projectors": [b.projector for b in module.branches],
                "classifiers": [b.head for b in module.branches]}
    if isinstance(module, ClassifierModel):
        return {"student": [module.body], "projectors": [], "classifiers": [module.head_module]}
    return {"student": [module], "projectors": [], "classifiers": []}


@torch.no_grad()
def deployed_cost(module: nn.Module, image_size: int | tuple[int, int], in_channels: int | None = None) -> dict[str, Any]:
    """Parameters and multiply-accumulates of a deployable module, split into student / projectors /
    classifiers, for one image. MACs count Conv2d and Linear (BN folds into convs at export);
    ``flops = 2 * macs``. The student's own, unused head is not counted (it is not deployed).
    """
    h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
    if in_channels is None:
        spec = getattr(module, "student_spec", None) or getattr(module, "spec", None)
        in_channels = spec.in_channels if spec is not None else 3
    parts = _parts(module)
    macs = {name: 0 for name in parts}
    hooks = []

    def counter(name: str):
        def hook(m: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
            if isinstance(m, nn.Conv2d):
                macs[name] += out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
            else:
                macs[name] += out.numel() * m.in_features
        return hook

    for name, modules in parts.items():
        for part in modules:
            for m in part.modules():
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    hooks.append(m.register_forward_hook(counter(name)))
    was_training = module.training
    device = next(module.parameters()).device
    try:
        module.eval()
        module(torch.zeros(1, in_channels, h, w, device=device))
    finally:
        for handle in hooks:
            handle.remove()
        module.train(was_training)
    report: dict[str, Any] = {}
    for name, modules in parts.items():
        params = sum(count_parameters(m) for m in modules)
        report[name] = {"params": params, "macs": macs[name], "flops": 2 * macs[name]}
    report["total"] = {"params": count_parameters(module), "macs": sum(macs.values()), "flops": 2 * sum(macs.values())}
    report["input"] = [in_channels, h, w]
    return report


def format_cost(report: dict[str, Any]) -> str:
    """One line per part, e.g. for the CLI: ``student 3.50 M params 0.31 GFLOPs``."""
    lines = []
    for name in ("student", "projectors", "classifiers", "total"):
        part = report[name]
        lines.append(f"{name:11s} {part['params'] / 1e6:8.3f} M params  {part['flops'] / 1e9:8.4f} GFLOPs")
    return "\n".join(lines)
