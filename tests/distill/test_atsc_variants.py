"""ATSC's adaptation variants: a frozen teacher, a teacher that adapts only its BN statistics (AdaBN), a
teacher stepped every k-th step, and teacher self-training on confident unlabelled images."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from compress.data.labels import UNLABELED
from compress.distill import DistillConfig, build_method
from compress.distill.configs import ADAPT_PUBLISHED
from compress.distill.atsc import ATSC
from compress.distill.losses import pseudo_labels
from compress.errors import ConfigError

from distill_helpers import batch, optimizer, tiny, train_step

BN_STATS = ("running_mean", "running_var", "num_batches_tracked")


def state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def changed(before: dict[str, torch.Tensor], module: torch.nn.Module) -> set[str]:
    return {k for k, v in state(module).items() if not torch.equal(v, before[k])}


def build(**settings) -> ATSC:
    """ATSC as published (the student's feedback reaches the teacher on every step) unless told otherwise."""
    method = build_method(DistillConfig(**(ADAPT_PUBLISHED | settings)), tiny("resnet8"), [tiny("resnet14", seed=1)])
    assert isinstance(method, ATSC)
    return method


def teacher_grad_modes(method: ATSC) -> list[bool]:
    """Whether the teacher's feature map carried autograd, per forward (a hook on its body)."""
    seen: list[bool] = []
    method.teachers[0].body.register_forward_hook(lambda module, args, out: seen.append(out.requires_grad))
    return seen


def test_frozen_teacher_gets_no_gradient_and_never_changes() -> None:
    method = build(teacher_adapt="none")
    teacher = method.teachers[0]
    before, student_before = state(teacher), state(method.net.backbone)
    opt = optimizer(method)
    grads = teacher_grad_modes(method)
    for step in range(3):
        out = train_step(method, opt, *batch(seed=step))
    assert changed(before, teacher) == set()  # every parameter and BN buffer bit-identical
    assert changed(student_before, method.net.backbone)  # while the student learns
    teacher_ids = {id(p) for p in teacher.parameters()}
    assert not any(id(p) in teacher_ids for g in opt.param_groups for p in g["params"])
    assert [g["name"] for g in opt.param_groups] == ["student"]
    assert not any(p.requires_grad for p in teacher.parameters()) and all(p.grad is None for p in teacher.parameters())
    assert not any(m.training for m in teacher.modules())  # running statistics, never updated
    assert grads == [False] * 3  # the teacher's forward ran without autograd
    assert set(out.parts) == {"mse", "shared_kl"}  # no teacher CE, bias refinement or anchor
    assert not method.ddp_find_unused_parameters and method.extra_checkpoints() == {}
    metrics = method.epoch_metrics([batch(16, seed=10)])
    assert metrics["teacher_drift"] == 0 and metrics["teacher_top1"] == metrics["teacher_top1_start"]


def test_frozen_teacher_loss_is_the_mse_plus_the_shared_kl_through_the_original_classifier() -> None:
    x, y = batch()
    original = tiny("resnet14", seed=1).eval()
    method = build(teacher_adapt="none").train()
    out = method(x, y)
    f_s = method.net.backbone(x)
    with torch.no_grad():
        f_t = original.features(x)
        target = F.softmax(original.head(f_t) / 4, dim=1)
    projected = method.net.branches[0].projector(f_s)
    student = F.log_softmax(original.head(projected) / 4, dim=1)
    expected = F.mse_loss(projected, f_t) + 16 * F.kl_div(student, target, reduction="batchmean")
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_bn_arm_changes_only_the_teacher_bn_statistics() -> None:
    method = build(teacher_adapt="bn")
    teacher = method.teachers[0]
    before = state(teacher)
    opt = optimizer(method)
    grads = teacher_grad_modes(method)
    method.train()
    bns = [n for n, m in teacher.named_modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert bns and all(m.training == (n in bns) for n, m in teacher.named_modules() if n)  # only BN in train mode
    for step in range(3):
        out = train_step(method, opt, *batch(seed=step))
    moved = changed(before, teacher)
    assert moved == {f"{n}.{s}" for n in bns for s in BN_STATS}  # every BN's statistics, nothing else
    assert int(teacher.state_dict()[f"{bns[0]}.num_batches_tracked"]) == 3
    assert [g["name"] for g in opt.param_groups] == ["student"] and grads == [False] * 3
    assert set(out.parts) == {"mse", "shared_kl"} and "teacher" in method.extra_checkpoints()
    val = [batch(16, seed=10)]
    adapted = copy.deepcopy(teacher).eval()
    original = tiny("resnet14", seed=1).eval()
    with torch.no_grad():
        now, start = ((100.0 * (m(val[0][0]).argmax(1) == val[0][1]).sum() / 16).item() for m in (adapted, original))
    metrics = method.epoch_metrics(val)
    assert metrics["teacher_drift"] == 0
    assert (metrics["teacher_top1"], metrics["teacher_top1_start"]) == (pytest.approx(now), pytest.approx(start))
    method.eval()
    assert not any(m.training for m in teacher.modules())  # evaluation uses the adapted running statistics
    warning = method.health({"teacher_kept": 0.5, "teacher_top1": 40.0, "teacher_top1_start": 80.0})
    assert len(warning) == 1 and warning[0].endswith("keep the teacher frozen (teacher_adapt='none')")


@pytest.mark.parametrize("settings, message", [
    ({"teacher_adapt": "none", "reference": True}, "teacher_adapt='none' trains no teacher weights, the reference"),
    ({"teacher_adapt": "bn", "reference": True}, "teacher_adapt='bn' trains no teacher weights"),
    ({"teacher_adapt": "none", "adapt_last": 2}, "adapt_last applies to a teacher whose weights adapt"),
    ({"teacher_adapt": "bn", "teacher_every": 2}, "teacher_every applies to a teacher whose weights adapt"),
    ({"teacher_adapt": "none", "pseudo_threshold": 0.9}, "pseudo_threshold applies to a teacher whose weights adapt"),
    ({"teacher_adapt": "none", "teacher_feedback": False}, "teacher_feedback applies to a teacher whose weights"),
    ({"teacher_adapt": "bn", "bn_mode": "frozen"}, "adapts the BN statistics that bn_mode='frozen' keeps fixed"),
    ({"teacher_adapt": "some"}, "'teacher_adapt' must be one of all, bn, none; got 'some'"),
    ({"reference": True, "teacher_every": 2}, "the reference path steps the teacher every step"),
    ({"teacher_every": 0}, "'teacher_every' must be a whole number >= 1, got 0"),
    ({"pseudo_threshold": 0.0}, r"'pseudo_threshold' must be a number > 0.0 and <= 1.0, got 0.0"),
    ({"pseudo_threshold": 1.5}, r"'pseudo_threshold' must be a number > 0.0 and <= 1.0, got 1.5"),
    ({"pseudo_threshold": 0.9, "teacher_ce": 0.0}, r"teacher's cross-entropy, which is off \(teacher_ce=0\)"),
])
def test_settings_that_cannot_act_together_are_refused(settings: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        DistillConfig(**settings)


def test_records_name_the_new_settings_only_when_they_are_used() -> None:
    published = DistillConfig(**ADAPT_PUBLISHED).to_dict()
    assert not {"teacher_adapt", "teacher_every", "pseudo_threshold"} & set(published)  # old records unchanged
    frozen = DistillConfig(teacher_adapt="none").to_dict()
    assert frozen == published | {"teacher_adapt": "none"}
    assert DistillConfig.from_dict(frozen) == DistillConfig(teacher_adapt="none")
    assert DistillConfig.from_dict(published) == DistillConfig(**ADAPT_PUBLISHED)
    every = DistillConfig(teacher_every=4, pseudo_threshold=0.95)
    assert DistillConfig.from_dict(every.to_dict()) == every


def test_the_default_teacher_learns_from_its_labels_every_fourth_step_and_old_records_keep_their_meaning() -> None:
    default = DistillConfig()
    assert (default.teacher_feedback, default.teacher_every) == (False, 4)  # the records' winner (issue 21)
    reference = DistillConfig(reference=True)
    assert (reference.teacher_feedback, reference.teacher_every) == (True, 1)  # the authors' semantics
    for adapt in ("none", "bn"):  # no teacher weights adapt: the neutral values, and no refusal
        fixed = DistillConfig(teacher_adapt=adapt)
        assert (fixed.teacher_feedback, fixed.teacher_every) == (True, 1)
    record = default.to_dict()
    assert record["teacher_feedback"] is False and record["teacher_every"] == 4
    assert DistillConfig.from_dict(record) == default
    # A record written before the default changed has no teacher_every and feedback on: read back as it ran.
    old = DistillConfig("kd").to_dict() | {"method": "atsc"}
    assert old["teacher_feedback"] is True and "teacher_every" not in old
    assert DistillConfig.from_dict(old) == DistillConfig(**ADAPT_PUBLISHED)
    # Other methods' records keep the layout they had: feedback on, whatever ATSC's default is.
    assert DistillConfig("kd").to_dict()["teacher_feedback"] is True
    explicit = DistillConfig(teacher_feedback=False, teacher_every=1)
    assert DistillConfig.from_dict(explicit.to_dict()) == explicit


def test_teacher_steps_only_every_kth_step_and_the_student_learns_in_between() -> None:
    method = build(teacher_every=3)
    teacher = method.teachers[0]
    opt = optimizer(method)
    grads = teacher_grad_modes(method)
    moved = []
    for step in range(1, 7):
        before = {k: v.detach().clone() for k, v in teacher.named_parameters()}
        student = state(method.net)
        out = train_step(method, opt, *batch(seed=step))
        moved.append(any(not torch.equal(p, before[k]) for k, p in teacher.named_parameters()))
        assert changed(student, method.net)  # the student learns at every step
        assert set(out.parts) == {"mse", "shared_kl", "teacher_ce", "bias_ce", "anchor"}  # logged every step
    assert moved == [False, False, True, False, False, True]
    assert grads == [False, False, True, False, False, True]  # autograd through the teacher on its steps only
    assert int(method.get_buffer("steps_taken")) == 6 and method.ddp_find_unused_parameters
    assert "steps_taken" not in build().state_dict()  # every step (as published): the state is unchanged


def test_between_teacher_steps_the_student_update_is_the_one_of_an_every_step_teacher() -> None:
    x, y = batch()
    every, sometimes = build(), build(teacher_every=2)
    teacher_before = state(sometimes.teachers[0])
    for method in (every, sometimes):
        train_step(method, optimizer(method), x, y)
    assert changed(teacher_before, every.teachers[0])
    assert {k for k in changed(teacher_before, sometimes.teachers[0]) if not k.endswith(BN_STATS)} == set()
    for (name, a), b in zip(every.net.backbone.state_dict().items(), sometimes.net.backbone.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7, msg=name)


def test_the_teacher_step_clock_survives_a_state_dict_round_trip() -> None:
    """Stopped after 2 of 3 steps and reloaded, the next step is still the teacher's, as without the stop."""
    student, teacher = tiny("resnet8", seed=0), tiny("resnet14", seed=1)
    config = DistillConfig(teacher_every=3)
    make = lambda: build_method(config, copy.deepcopy(student), [copy.deepcopy(teacher)])  # noqa: E731
    first = make()
    opt = optimizer(first)
    for step in range(2):
        train_step(first, opt, *batch(seed=step))
    second = make()
    assert second._teacher_turn is False
    second.load_state_dict(copy.deepcopy(first.state_dict()))
    opt2 = optimizer(second)
    opt2.load_state_dict(copy.deepcopy(opt.state_dict()))
    assert second._teacher_turn is True
    train_step(first, opt, *batch(seed=5))
    train_step(second, opt2, *batch(seed=5))
    assert changed(state(make().teachers[0]), second.teachers[0])  # the teacher stepped
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=f"{name} differs after the reload")


def test_pseudo_labels_keep_labels_and_add_confident_guesses() -> None:
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 5.0, 0.0], [0.0, 0.0, 9.0]])
    labels = torch.tensor([UNLABELED, UNLABELED, 2, UNLABELED])
    # softmax maxima: 0.787 (class 0), 1/3, (labelled), 0.9998 (class 2)
    assert pseudo_labels(logits, labels, 0.5).tolist() == [0, UNLABELED, 2, 2]
    assert pseudo_labels(logits, labels, 0.9).tolist() == [UNLABELED, UNLABELED, 2, 2]


def test_teacher_cross_entropy_with_pseudo_labels_matches_a_hand_computation() -> None:
    x, y = batch(8)
    labels = y.clone()
    labels[4:] = UNLABELED  # images 4..7 unlabelled
    original = tiny("resnet14", seed=1).eval()
    with torch.no_grad():
        z = original(x)
    confidence = F.softmax(z, dim=1).max(1).values
    threshold = float(confidence[4:].median())  # some unlabelled images pass, some do not
    chosen = [i for i in range(4, 8) if confidence[i] >= threshold]
    assert 0 < len(chosen) < 4
    method = build(pseudo_threshold=threshold).eval()  # eval: BN statistics fixed, so z is the teacher's
    out = method(x, labels)
    targets = [int(y[i]) for i in range(4)] + [int(z[i].argmax()) for i in chosen]
    rows = list(range(4)) + chosen
    log_p = F.log_softmax(z, dim=1)
    expected = -sum(log_p[r, t] for r, t in zip(rows, targets)) / len(rows)
    assert out.parts["teacher_ce"].item() == pytest.approx(expected.item(), rel=1e-5)
    plain = build().eval()(x, labels)  # without: labelled images only
    assert plain.parts["teacher_ce"].item() == pytest.approx(F.cross_entropy(z[:4], y[:4]).item(), rel=1e-5)
    assert out.parts["bias_ce"].item() == pytest.approx(plain.parts["bias_ce"].item())  # the bias keeps real labels
