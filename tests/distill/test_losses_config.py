"""Losses pinned to hand-computed values; config validation names the bad field; presets."""

from __future__ import annotations

import math

import pytest
import torch

from compress.distill import PRESETS, PROJECTORS, DistillConfig, build_projector, scaled_lr
from compress.distill.losses import anchor_penalty, feature_mse, kd_loss, mean_soft_targets
from compress.distill.projector import align_maps
from compress.errors import ConfigError, UnknownNameError


def test_kd_loss_matches_hand_computed_value() -> None:
    # student z=[1,2,0], teacher z=[2,1,0], T=2, y=1, 0.1 CE + 0.9 KL; worked out with math.exp/log:
    # CE = -log softmax([1,2,0])[1] = 0.40760596; KL*T^2 = 4 * sum p_t log(p_t/p_s) = 0.39856901
    student = torch.tensor([[1.0, 2.0, 0.0]])
    targets = mean_soft_targets([torch.tensor([[2.0, 1.0, 0.0]])], temperature=2.0)
    loss, ce, kl = kd_loss(student, targets, torch.tensor([1]), temperature=2.0, ce_weight=0.1, kl_weight=0.9)
    assert ce.item() == pytest.approx(0.4076059644443803, rel=1e-6)
    assert kl.item() == pytest.approx(0.3985690106743113, rel=1e-6)
    assert loss.item() == pytest.approx(0.3994727060513182, rel=1e-6)


def test_multi_teacher_soft_targets_are_the_mean_of_probabilities() -> None:
    a, b = torch.tensor([[0.0, 0.0]]), torch.tensor([[math.log(3.0), 0.0]])  # probs [.5,.5] and [.75,.25]
    assert torch.allclose(mean_soft_targets([a, b], 1.0), torch.tensor([[0.625, 0.375]]))


def test_anchor_penalty_is_a_plain_sum_of_squares() -> None:
    p = [torch.tensor([1.0, 2.0]), torch.tensor([[3.0]])]
    p0 = [torch.tensor([0.0, 0.0]), torch.tensor([[1.0]])]
    assert anchor_penalty(p, p0).item() == pytest.approx(1 + 4 + 4)  # no mean, no 1/2
    assert feature_mse(torch.ones(2, 3, 1, 1), torch.zeros(2, 3, 1, 1)).item() == pytest.approx(1.0)


def test_projector_kinds_and_reference_parameter_count() -> None:
    assert PROJECTORS.names() == ["bottleneck", "depthwise", "linear", "pointwise"]
    cs, ct, r = 1280, 2048, 2
    mid = ct // r
    ref = build_projector("reference", cs, ct, r)
    # three convs without bias + three BN (2 params each)
    expected = cs * mid + mid * mid * 9 + mid * ct + 2 * (mid + mid + ct)
    assert sum(p.numel() for p in ref.parameters()) == expected  # 12.85 M (ATSC.md's mobilenet_v2 -> resnet50)
    assert abs(expected - 12.85e6) < 0.01e6
    assert all(m.bias is None for m in ref.modules() if isinstance(m, torch.nn.Conv2d))
    sizes = {k: sum(p.numel() for p in build_projector(k, cs, ct, r).parameters()) for k in PROJECTORS.names()}
    assert sizes["depthwise"] < sizes["bottleneck"] and sizes["pointwise"] < sizes["bottleneck"]
    assert build_projector("1x1", 8, 16, 2).spec == {"kind": "pointwise", "in_channels": 8, "out_channels": 16, "factor": 2}
    assert build_projector("depthwise", 8, 16, 2)(torch.randn(2, 8, 5, 5)).shape == (2, 16, 5, 5)


def test_alignment_pools_the_larger_map() -> None:
    s, t = torch.randn(2, 4, 8, 8), torch.randn(2, 6, 4, 4)
    src, tgt, align = align_maps(s, t)
    assert align == (4, 4) and src.shape[-2:] == (4, 4) and tgt is t
    src, tgt, align = align_maps(t, s)  # student smaller: the teacher target is pooled, not the student
    assert align is None and src is t and tgt.shape[-2:] == (4, 4)


def test_config_guards_resolve_by_mode() -> None:
    default = DistillConfig()
    assert (default.teacher_ce, default.teacher_lr_scale, default.anchor_scope, default.bn_mode) == (1.0, 0.1, "all", "train")
    ref = DistillConfig(reference=True)
    assert (ref.teacher_ce, ref.teacher_lr_scale, ref.anchor_scope, ref.bn_mode) == (0.0, 1.0, "reference", "train")
    layered = DistillConfig(reference=True, teacher_ce=0.5)
    assert layered.teacher_ce == 0.5 and layered.anchor_scope == "reference"
    assert DistillConfig(method="SimKD", projector="1x1").method == "simkd"
    assert DistillConfig.from_dict(default.to_dict()) == default


@pytest.mark.parametrize("field, value", [
    ("factor", 0), ("beta", -1.0), ("w", float("nan")), ("teacher_ce", -0.1), ("teacher_lr_scale", -1.0),
    ("bn_mode", "eval"), ("anchor_scope", "bn"), ("stability", "maybe"), ("temperature", 0.0),
    ("kl_weight", -1.0), ("teacher_drop_limit", 2.0),
])
def test_config_names_the_bad_field(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=f"'{field}'"):
        DistillConfig(**{field: value})


def test_config_rejects_unknown_names() -> None:
    with pytest.raises(UnknownNameError, match="did you mean 'simkd'"):
        DistillConfig(method="simkdd")
    with pytest.raises(UnknownNameError, match="unknown projector"):
        DistillConfig(projector="huge")
    with pytest.raises(ConfigError, match="unknown distill setting"):
        DistillConfig.from_dict({"temprature": 4})


def test_presets_hold_the_papers_recipes() -> None:
    cifar = PRESETS.get("cifar100")
    assert cifar["training"]["epochs"] == 240 and cifar["training"]["lr"] == 0.05
    assert tuple(cifar["training"]["milestones"]) == (150, 180, 210) and cifar["training"]["weight_decay"] == 5e-4
    assert cifar["training"]["batch_size"] == 64 and cifar["distill"] == {"w": 1.0, "factor": 2, "beta": 1.0}
    imagenet = PRESETS.get("imagenet")
    assert scaled_lr(imagenet, 64) == pytest.approx(0.01) and scaled_lr(imagenet, 256) == pytest.approx(0.04)
    assert tuple(imagenet["training"]["milestones"]) == (30, 60, 90) and imagenet["distill"]["w"] == 10.0
    assert imagenet["training"]["weight_decay"] == 1e-4 and imagenet["training"]["epochs"] == 120
    assert PRESETS.get("fmnist")["training"]["epochs"] <= 10
    for name in PRESETS.names():  # every preset's method settings are valid
        DistillConfig(**PRESETS.get(name)["distill"])
