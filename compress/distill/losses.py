"""Losses of the distillation methods; each cites its paper and states its formula."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from compress.data.labels import UNLABELED, labeled_ce


def feature_mse(projected: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Feature regression of SimKD (Chen et al., CVPR 2022) and ATSC (Jang et al., 2024).

    ``L = mean((P(f_s) - f_t)^2)`` over batch, channels and positions (``nn.MSELoss()`` in both
    authors' code). Computed in float32 so a bf16 autocast does not round the sum.
    """
    return F.mse_loss(projected.float(), target.float())


def anchor_penalty(params: Sequence[torch.Tensor], anchors: Sequence[torch.Tensor]) -> torch.Tensor:
    """ATSC's anchor to the pretrained teacher (Jang et al., 2024): ``sum_p ||p - p0||^2``.

    A plain sum of squares (no mean, no 1/2), differentiable; its gradient is ``2 (p - p0)``.
    The caller multiplies by ``w``.
    """
    total = params[0].new_zeros((), dtype=torch.float32)
    for p, p0 in zip(params, anchors):
        total = total + (p.float() - p0.float()).pow(2).sum()
    return total


def mean_soft_targets(teacher_logits: Sequence[torch.Tensor], temperature: float) -> torch.Tensor:
    """Multi-teacher soft targets: ``p_t = (1/K) sum_k softmax(z_k / T)`` (mean of probabilities)."""
    probs = [F.softmax(z.float() / temperature, dim=1) for z in teacher_logits]
    return torch.stack(probs).mean(0)


def kd_loss(student_logits: torch.Tensor, teacher_probs: torch.Tensor, labels: torch.Tensor,
            temperature: float, ce_weight: float, kl_weight: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network" (2015).

    ``L = a_ce * CE(z_s, y) + a_kl * T^2 * KL(p_t || softmax(z_s / T))``, the KL averaged over the batch
    (the ``T^2`` keeps the soft-target gradients' scale independent of ``T``). Returns (loss, ce, kl),
    where ``kl`` already includes the ``T^2`` factor.
    """
    z = student_logits.float()
    ce = labeled_ce(z, labels)  # unlabelled images (label < 0) count in the KL term only
    log_p_s = F.log_softmax(z / temperature, dim=1)
    kl = F.kl_div(log_p_s, teacher_probs, reduction="batchmean") * temperature**2
    return ce_weight * ce + kl_weight * kl, ce, kl


def pseudo_labels(logits: torch.Tensor, labels: torch.Tensor, threshold: float) -> torch.Tensor:
    """Self-training targets (Noisy Student; FixMatch's confidence filter): ``labels`` where an image is
    labelled, else the model's own argmax where its confidence ``max softmax(z)`` reaches ``threshold``,
    else ``UNLABELED`` (so ``labeled_ce`` skips it). No gradient, no host sync."""
    with torch.no_grad():
        confidence, guess = F.softmax(logits.float(), dim=1).max(dim=1)
        guessed = torch.where(confidence >= threshold, guess, torch.full_like(guess, UNLABELED))
        return torch.where(labels >= 0, labels, guessed)
