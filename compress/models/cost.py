"""What a deployable module costs: parameters and multiply-accumulates, split by part."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from compress.models.base import ClassifierModel, count_parameters
from compress.models.shared_head import SharedHeadStudent


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
