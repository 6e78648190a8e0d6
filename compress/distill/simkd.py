"""SimKD: "Knowledge Distillation with the Reused Teacher Classifier" (Chen et al., CVPR 2022).

A projector maps the student's last feature map into the teacher's feature space; the frozen teacher
classifier makes the prediction. Loss: ``L = (beta / K) sum_k MSE(P_k(f_s), f_t^k)``. Deployed:
``SharedHeadStudent`` (student backbone, projectors, teacher heads). ``SharedClassifierMethod`` holds
what SimKD and ATSC share: branch construction, spatial alignment, validation statistics, and the
settings of the projector and the feature MSE (``SharedHeadConfig``, which ATSC's config extends).
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterable, Iterator

import torch
from torch import nn

from compress.distill.base import Method, StepOutput
from compress.distill.configs import SharedHeadConfig
from compress.distill.kd import freeze
from compress.distill.losses import feature_mse
from compress.models.base import ClassifierModel
from compress.models.projector import build_projector
from compress.models.shared_head import Branch, SharedHeadStudent, align_maps, feature_size
from compress.parallel import all_reduce_sum_


@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[None]:
    """Evaluate in eval mode, then restore every submodule's own mode (frozen BN, frozen teachers)."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


def _stack_mean(values: list[torch.Tensor]) -> torch.Tensor:
    return values[0] if len(values) == 1 else torch.stack(values).mean(0)


class SharedClassifierMethod(Method):
    """Student backbone + one projector per teacher + the teachers' heads (shared classifiers)."""

    config: SharedHeadConfig

    def __init__(self, student: ClassifierModel, teachers: list[ClassifierModel], config: SharedHeadConfig,
                 image_size: int | tuple[int, int] | None = None) -> None:
        super().__init__()
        self.config = config
        self.teachers = nn.ModuleList(teachers)
        branches = []
        for teacher in teachers:
            proj = build_projector(config.projector, student.feature_channels, teacher.feature_channels, config.factor)
            branch = Branch(proj, teacher.head_module, teacher.spec)
            if image_size is not None:  # resolve the alignment now (meta-device probe), else at the first batch
                s, t = feature_size(student.spec, image_size), feature_size(teacher.spec, image_size)
                size = (min(s[0], t[0]), min(s[1], t[1]))
                branch.set_align(None if size == s else size)
            branches.append(branch)
        self.net = SharedHeadStudent(student.spec, student.body, branches)

    @classmethod
    def from_config(cls, config: Any, student: ClassifierModel, teachers: list[ClassifierModel],
                    image_size: int | tuple[int, int] | None = None) -> "SharedClassifierMethod":
        return cls(student, teachers, config, image_size)

    def deployable(self) -> nn.Module:
        return self.net

    def project(self, f_s: torch.Tensor, f_ts: list[torch.Tensor]) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Per teacher: the feature MSE; and the deployable path's logits (mean over teachers)."""
        mses, logits = [], []
        for branch, f_t in zip(self.net.branches, f_ts):
            source, target, align = align_maps(f_s, f_t)
            branch.set_align(align)  # Python-side shapes only: no host sync
            projected = branch.projector(source)
            mses.append(feature_mse(projected, target))
            # Train accuracy only, never in the loss: no graph, so DDP's search for unused parameters does
            # not count the head (ATSC's W, b) as used through these logits.
            with torch.no_grad():
                logits.append(branch.head(projected))
        return mses, _stack_mean(logits)

    def _device(self) -> torch.device:
        return next(self.net.parameters()).device

    @torch.no_grad()
    def validation_stats(self, val_loader: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """One eval-mode pass: per teacher, top-1 correct count and feature-MSE sum; and the count."""
        device, k = self._device(), len(self.teachers)
        correct = torch.zeros(k, device=device, dtype=torch.float64)
        mse = torch.zeros(k, device=device, dtype=torch.float64)
        count = torch.zeros((), device=device, dtype=torch.float64)
        with eval_mode(self):
            for images, labels in val_loader:
                images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
                f_s = self.net.backbone(images)
                for i, (teacher, branch) in enumerate(zip(self.teachers, self.net.branches)):
                    f_t = teacher.features(images)
                    source, target, _ = align_maps(f_s, f_t)
                    mse[i] += feature_mse(branch.projector(source), target) * len(labels)
                    correct[i] += (teacher.head(f_t).argmax(1) == labels).sum()
                count += len(labels)
        # Under torchrun each rank sees a slice of the validation set: sum over ranks (one collective).
        totals = all_reduce_sum_(torch.cat([correct, mse, count.view(1)]))
        return {"correct": totals[:k], "mse": totals[k:2 * k], "count": totals[-1]}

    @torch.no_grad()
    def epoch_metrics(self, val_loader: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, float]:
        stats = self.validation_stats(val_loader)
        return {"feature_mse": float((stats["mse"] / stats["count"].clamp(min=1)).mean())}


class SimKD(SharedClassifierMethod):
    """SimKD: teachers frozen, the feature MSE alone (registered in ``methods.METHODS``)."""

    def __init__(self, student: ClassifierModel, teachers: list[ClassifierModel],
                 config: SharedHeadConfig | None = None, image_size: int | tuple[int, int] | None = None) -> None:
        super().__init__(student, [freeze(t) for t in teachers], config or SharedHeadConfig(), image_size)

    def train(self, mode: bool = True) -> "SimKD":
        super().train(mode)
        self.teachers.eval()  # frozen teachers (and their shared heads) always run in eval mode
        return self

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> StepOutput:
        f_s = self.net.backbone(images)
        with torch.no_grad():
            f_ts = [t.features(images) for t in self.teachers]
        mses, logits = self.project(f_s, f_ts)
        mse = _stack_mean(mses)
        return StepOutput(self.config.beta * mse, logits, {"mse": mse.detach()})

    def param_groups(self, lr: float, weight_decay: float) -> list[dict[str, Any]]:
        params = [p for p in self.net.parameters() if p.requires_grad]  # backbone + projectors
        return [{"params": params, "lr": lr, "weight_decay": weight_decay, "lr_scale": 1.0, "name": "student"}]
