"""Losses pinned to hand-computed values; config validation names the bad field; presets."""

from __future__ import annotations

import math

import pytest
import torch

from compress.distill import PRESETS, PROJECTORS, DistillConfig, build_projector, scaled_lr
from compress.distill.losses import anchor_penalty, feature_mse, kd_loss, mean_soft_targets
from compress.models import align_maps
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
    assert DistillConfig.from_dict(ref.to_dict()) == ref


@pytest.mark.parametrize("method, field, value, expected", [
    ("simkd", "factor", 0, "a whole number >= 1"), ("simkd", "beta", -1.0, "a number >= 0.0"),
    ("atsc", "w", float("nan"), "a number >= 0.0"), ("atsc", "teacher_ce", -0.1, "a number >= 0.0"),
    ("atsc", "teacher_lr_scale", -1.0, "a number >= 0.0"), ("atsc", "bn_mode", "eval", "one of train, frozen"),
    ("atsc", "anchor_scope", "bn", "one of reference, all"), ("atsc", "stability", "maybe", "one of error, warn, off"),
    ("atsc", "temperature", 0.0, "a number > 0.0"), ("kd", "temperature", 0.0, "a number > 0.0"),
    ("kd", "kl_weight", -1.0, "a number >= 0.0"), ("atsc", "teacher_drop_limit", 2.0, "a number >= 0.0 and <= 1.0"),
    ("atsc", "adapt_last", 0, "a whole number >= 1"), ("atsc", "adapt_last", 1.5, "a whole number"),
    ("atsc", "reference", "yes", "true or false"), ("none", "label_smoothing", 1.0, "a number >= 0.0 and <= 0.999"),
])
def test_config_names_the_bad_field(method: str, field: str, value: object, expected: str) -> None:
    with pytest.raises(ConfigError, match=f"^distill setting '{field}' must be {expected}"):
        DistillConfig(method, **{field: value})


def test_a_setting_of_another_method_is_refused_naming_who_takes_it() -> None:
    with pytest.raises(ConfigError, match=r"^distill setting 'temperature' does not apply to method 'simkd'; it is a "
                                          r"setting of atsc, kd$"):
        DistillConfig("simkd", temperature=2.0)
    with pytest.raises(ConfigError, match=r"unknown distill setting 'temprature': did you mean 'temperature'\?"):
        DistillConfig("kd", temprature=2.0)
    kd = DistillConfig.with_defaults("kd", {"temperature": 2.0}, {"w": 10.0, "kl_weight": 0.5})
    assert (kd.temperature, kd.kl_weight, kd.ce_weight) == (2.0, 0.5, 0.1)  # a preset's w does not concern KD
    with pytest.raises(AttributeError, match="method 'kd' has no setting 'w'"):
        kd.w  # noqa: B018


def test_record_keeps_one_layout_and_reads_back_the_methods_own_settings() -> None:
    record = DistillConfig("kd", temperature=2.0).to_dict()
    # The layout of the records written before methods owned their settings: checkpoints stay byte-identical.
    assert list(record) == ["method", "projector", "factor", "beta", "reference", "w", "teacher_ce",
                            "teacher_lr_scale", "anchor_scope", "bn_mode", "shared_kl", "teacher_feedback", "adapt_last",
                            "momentum", "stability", "teacher_drop_limit", "temperature", "ce_weight", "kl_weight",
                            "label_smoothing"]
    assert (record["method"], record["temperature"], record["w"], record["teacher_ce"]) == ("kd", 2.0, 1.0, 1.0)
    assert DistillConfig.from_dict(record) == DistillConfig("kd", temperature=2.0)
    assert DistillConfig.from_dict({"method": "none", "w": 3.0}).settings.to_dict() == {"label_smoothing": 0.0}


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
