"""ATSC against an independent implementation of its reference semantics, and its guards."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from compress.distill import ATSC, DistillConfig, build_method
from compress.distill.atsc import anchor_names
from compress.distill.losses import anchor_penalty
from compress.errors import ConfigError

from distill_helpers import batch, optimizer, tiny, train_step


def params_and_buffers(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_reference_step_equals_straightforward_implementation() -> None:
    """Two optimizers, a second teacher pass: the authors' step written out plainly, 3 steps (momentum)."""
    lr, wd, w = 0.1, 5e-4, 5.0
    student, teacher = tiny("resnet8", seed=0), tiny("resnet14", seed=1)
    method = build_method(DistillConfig(reference=True, w=w), copy.deepcopy(student), [copy.deepcopy(teacher)])
    # independent copies: same initial weights as the method's (the projector is created by the method)
    s_body, t = copy.deepcopy(student.body), copy.deepcopy(teacher)
    proj = copy.deepcopy(method.net.branches[0].projector)
    theta0 = {n: p.detach().clone() for n, p in t.named_parameters()}
    penalised = [n for n, p in t.named_parameters() if p.ndim > 1]
    opt1 = torch.optim.SGD([*s_body.parameters(), *proj.parameters(), *t.parameters()], lr=lr, momentum=0.9,
                           weight_decay=wd)
    bias = t.head_module[-1].bias
    opt2 = torch.optim.SGD([bias], lr=lr, momentum=0.9, weight_decay=wd)
    named = dict(t.named_parameters())
    opt = optimizer(method, lr, wd)
    for step in range(3):
        x, y = batch(seed=step)
        s_body.train(), proj.train(), t.train()
        opt1.zero_grad()
        loss = F.mse_loss(proj(s_body(x)), t.body(x)) + w * sum(((named[n] - theta0[n]) ** 2).sum() for n in penalised)
        loss.backward()
        opt1.step()
        opt2.zero_grad()
        F.cross_entropy(t(x), y).backward()  # second full teacher pass; only b is stepped
        opt2.step()
        out = train_step(method, opt, x, y, lr)
        assert out.loss.item() == pytest.approx(loss.item(), rel=1e-5)
    mine = params_and_buffers(method)
    for prefix, ref in (("net.backbone.", s_body), ("net.branches.0.projector.", proj), ("teachers.0.", t)):
        for k, v in params_and_buffers(ref).items():
            torch.testing.assert_close(mine[prefix + k], v, rtol=1e-4, atol=1e-5, msg=f"{prefix}{k} differs")
    assert not torch.equal(mine["teachers.0.head_module.2.bias"], teacher.head_module[2].bias)  # b was refined


def test_anchor_set_is_exactly_atsc_md() -> None:
    teacher = tiny("resnet14")
    ref = set(anchor_names(teacher, "reference"))
    assert ref == {n for n, p in teacher.named_parameters() if p.ndim > 1}
    assert "head_module.2.weight" in ref and "head_module.2.bias" not in ref  # W, not b
    assert "body.0.weight" in ref and "body.1.weight" not in ref and "body.1.bias" not in ref  # conv, not BN
    everything = set(anchor_names(teacher, "all"))
    assert everything == {n for n, _ in teacher.named_parameters()} - {"head_module.2.bias"}
    method = build_method(DistillConfig(reference=True), tiny("resnet8"), [teacher])
    assert method._anchor_names[0] == anchor_names(teacher, "reference")


@pytest.mark.parametrize("scope", ["reference", "all"])
def test_fast_path_penalty_gradient_equals_autograd(scope: str) -> None:
    w = 3.0
    method = build_method(DistillConfig(w=w, teacher_ce=0.0, anchor_scope=scope, teacher_every=1), tiny("resnet8"), [tiny("resnet14", seed=1)])
    with torch.no_grad():  # move the teacher away from theta0 so the penalty is not zero
        for p in method.teachers[0].parameters():
            p.add_(0.05 * torch.randn_like(p))
    x, y = batch()
    method.train()
    out = method(x, y)
    method.zero_grad(set_to_none=True)
    out.loss.backward()
    method.before_optimizer_step()
    fast = {n: p.grad.clone() for n, p in method.named_parameters() if p.grad is not None}
    method.zero_grad(set_to_none=True)
    out = method(x, y)
    params = method.anchor_params(0)
    total = out.loss + w * anchor_penalty(params, method.snapshots[0].get(method._anchor_names[0]))
    total.backward()
    slow = {n: p.grad.clone() for n, p in method.named_parameters() if p.grad is not None}
    assert set(fast) == set(slow)
    for n in fast:
        torch.testing.assert_close(fast[n], slow[n], rtol=1e-5, atol=1e-6, msg=n)
    assert out.parts["anchor"].item() > 0


@pytest.mark.parametrize("reference", [True, False])
def test_multi_teacher_loss_and_prediction(reference: bool) -> None:
    """K teachers: (beta/K) sum MSE, mean of the K shared classifiers' logits; K=1 is the single-teacher form."""
    x, y = batch()
    for k in (1, 2):
        teachers = [tiny("resnet14", seed=1), tiny("resnet20", seed=2)][:k]
        cfg = DistillConfig(reference=reference, teacher_ce=0.0, beta=0.7)
        method = build_method(cfg, tiny("resnet8"), teachers)
        method.train()
        out = method(x, y)
        f_s = method.net.backbone(x)
        mses = [F.mse_loss(b.projector(f_s), t.body(x)) for b, t in zip(method.net.branches, method.teachers)]
        logits = torch.stack([b.head(b.projector(f_s)) for b in method.net.branches]).mean(0)
        expected = 0.7 / k * sum(mses)
        if not reference:  # the fast path's bias CE rides in the same loss, and the default shared KL (T = 4)
            expected = expected + sum(F.cross_entropy(t(x), y) for t in method.teachers)
            kls = [F.kl_div(F.log_softmax(b.head(b.projector(f_s)) / 4, 1), F.softmax(t(x) / 4, 1),
                            reduction="batchmean") * 16 for b, t in zip(method.net.branches, method.teachers)]
            expected = expected + sum(kls) / k
        assert out.loss.item() == pytest.approx(expected.item(), rel=1e-5)
        torch.testing.assert_close(out.logits, logits)
        assert len(method.net.branches) == k and len(method.extra_checkpoints()) == k


def test_teacher_moves_under_atsc_only() -> None:
    x, y = batch()
    for name, moves in (("atsc", True), ("simkd", False), ("kd", False)):
        teacher = tiny("resnet14", seed=1)
        before = params_and_buffers(teacher)
        method = build_method(DistillConfig(method=name), tiny("resnet8"), [teacher])
        opt = optimizer(method)
        train_step(method, opt, x, y)
        changed = [k for k, v in params_and_buffers(teacher).items() if not torch.equal(v, before[k])]
        assert bool(changed) == moves, (name, changed[:3])


def test_bn_frozen_keeps_teacher_statistics_and_guards_scale_the_teacher_lr() -> None:
    teacher = tiny("resnet14", seed=1)
    stats = {k: v.clone() for k, v in teacher.state_dict().items() if "running" in k}
    method = build_method(DistillConfig(bn_mode="frozen", teacher_lr_scale=0.25), tiny("resnet8"), [teacher])
    opt = optimizer(method, lr=0.1)
    train_step(method, opt, *batch())
    assert all(torch.equal(teacher.state_dict()[k], v) for k, v in stats.items())
    assert not teacher.body[1].training and teacher.body[0].training is True  # BN eval, rest train
    scales = {g["name"]: g["lr_scale"] for g in opt.param_groups}
    assert scales == {"student": 1.0, "teacher": 0.25, "teacher_bias": 1.0}


def test_stability_check_refuses_a_diverging_spring() -> None:
    method = build_method(DistillConfig(w=100.0, teacher_lr_scale=1.0), tiny("resnet8"), [tiny("resnet14")])
    with pytest.raises(ConfigError, match=r"anchor would diverge.*2\(1 \+ momentum\) = 3.8"):
        method.param_groups(0.05, 5e-4)  # 0.05 * 2 * 100 = 10 >= 3.8 (diverged on real data)
    method.param_groups(0.01, 5e-4)  # 2.0 < 3.8: fine
    warn = build_method(DistillConfig(w=100.0, teacher_lr_scale=1.0, stability="warn"), tiny("resnet8"), [tiny("resnet14")])
    with pytest.warns(RuntimeWarning, match="anchor would diverge"):
        warn.param_groups(0.05, 5e-4)


def test_monitoring_reports_start_accuracy_drift_and_collapse() -> None:
    teacher = tiny("resnet14", seed=1)
    original = copy.deepcopy(teacher).eval()
    val = [batch(16, seed=s) for s in (10, 11)]
    method = build_method(DistillConfig(teacher_lr_scale=1.0, teacher_every=1), tiny("resnet8"), [teacher])
    opt = optimizer(method, lr=0.5)
    for s in range(2):
        train_step(method, opt, *batch(seed=s), lr=0.5)
    metrics = method.epoch_metrics(val)
    with torch.no_grad():
        start = 100.0 * sum((original(x).argmax(1) == y).sum().item() for x, y in val) / 32
        teacher.eval()
        now = 100.0 * sum((teacher(x).argmax(1) == y).sum().item() for x, y in val) / 32
    assert metrics["teacher_top1_start"] == pytest.approx(start)  # theta0 + original BN statistics
    assert metrics["teacher_top1"] == pytest.approx(now)
    assert metrics["teacher_drift"] > 0 and metrics["feature_mse"] > 0
    assert method.health({"teacher_kept": 1.0, "teacher_top1": 90.0, "teacher_top1_start": 90.0}) == []
    warning = method.health({"teacher_kept": 0.1, "teacher_top1": 9.0, "teacher_top1_start": 90.0})
    assert len(warning) == 1 and "keeps 10.0% of its starting top-1" in warning[0]


def test_epoch_metrics_restores_training_modes() -> None:
    method = build_method(DistillConfig(bn_mode="frozen"), tiny("resnet8"), [tiny("resnet14")])
    method.train()
    modes = [m.training for m in method.modules()]
    method.epoch_metrics([batch()])
    assert [m.training for m in method.modules()] == modes


@pytest.mark.parametrize("bad, message", [
    (lambda: tiny("resnet14", num_classes=100), r"teacher 1 \(resnet14\) has 100 classes but the student \(resnet8\) has 10"),
    (lambda: tiny("resnet14", in_channels=3), r"teacher 1 \(resnet14\) takes 3-channel images but the student"),
])
def test_mismatched_teachers_are_refused(bad, message: str) -> None:
    for method in ("atsc", "simkd", "kd"):
        with pytest.raises(ConfigError, match=message):
            build_method(DistillConfig(method=method), tiny("resnet8"), [bad()])
    with pytest.raises(ConfigError, match="teacher 2 .* has 100 classes"):
        build_method(DistillConfig(), tiny("resnet8"), [tiny("resnet14"), tiny("resnet20", num_classes=100)])
    with pytest.raises(ConfigError, match="needs at least one teacher"):
        build_method(DistillConfig(method="simkd"), tiny("resnet8"), [])


def test_atsc_is_an_atsc() -> None:
    assert isinstance(build_method(DistillConfig(), tiny("resnet8"), [tiny("resnet14")]), ATSC)


def test_reference_bias_momentum_survives_a_state_dict_round_trip() -> None:
    """Resume restores the reference bias step's momentum: continuing from a reloaded state equals not stopping."""
    student, teacher = tiny("resnet8", seed=0), tiny("resnet14", seed=1)
    make = lambda: build_method(DistillConfig(reference=True), copy.deepcopy(student), [copy.deepcopy(teacher)])  # noqa: E731
    first = make()
    opt = optimizer(first)
    for step in range(2):
        train_step(first, opt, *batch(seed=step))
    momentum = first.get_buffer("bias_momentum0")
    assert momentum.abs().sum() > 0  # the bias step has momentum to lose
    second = make()
    second.load_state_dict(copy.deepcopy(first.state_dict()))
    opt2 = optimizer(second)
    opt2.load_state_dict(copy.deepcopy(opt.state_dict()))  # a copy: loading shares the buffers otherwise
    train_step(first, opt, *batch(seed=5))
    train_step(second, opt2, *batch(seed=5))
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=f"{name} differs after the reload")


class CountingLoader:
    def __init__(self, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        self.batches, self.passes = batches, 0

    def __iter__(self):
        self.passes += 1
        return iter(self.batches)


def test_start_accuracy_measured_by_the_caller_saves_a_validation_pass() -> None:
    val = CountingLoader([batch(16, seed=10)])
    measured = build_method(DistillConfig(), tiny("resnet8"), [tiny("resnet14", seed=1)])
    measured.teachers_measured([12.5])
    assert measured.epoch_metrics(val)["teacher_top1_start"] == 12.5
    assert val.passes == 1  # only the adapted teacher's pass
    unmeasured = build_method(DistillConfig(), tiny("resnet8"), [tiny("resnet14", seed=1)])
    unmeasured.epoch_metrics(val)
    assert val.passes == 3  # it measures the start itself (a resumed run)
    with pytest.raises(ValueError, match="2 accuracies for 1 teachers"):
        measured.teachers_measured([1.0, 2.0])


def _grads(method: ATSC, loss: torch.Tensor) -> dict[str, torch.Tensor | None]:
    method.zero_grad(set_to_none=True)
    loss.backward()
    return {n: (None if p.grad is None or not p.grad.abs().sum() else p.grad.clone()) for n, p in method.named_parameters()}


def test_shared_kl_moves_the_student_and_projector_only() -> None:
    x, _ = batch()
    method = build_method(DistillConfig(shared_kl=1.0), tiny("resnet8"), [tiny("resnet14", seed=1)])
    method.train()
    f_s = method.net.backbone(x)
    f_ts = [t.features(x) for t in method.teachers]
    grads = _grads(method, method.shared_kls(f_s, f_ts)[0])
    assert all(g is None for n, g in grads.items() if n.startswith("teachers."))  # teacher body, W and b untouched
    assert grads["net.branches.0.projector.0.weight"] is not None
    assert any(g is not None for n, g in grads.items() if n.startswith("net.backbone."))


def test_without_feedback_the_teacher_learns_from_its_own_cross_entropy_only() -> None:
    x, y = batch()
    method = build_method(DistillConfig(teacher_feedback=False, teacher_every=1, shared_kl=0.0, w=0.0), tiny("resnet8"),
                          [tiny("resnet14", seed=1)])
    method.train()
    out = method(x, y)
    with_mse = _grads(method, out.loss)
    teacher = method.teachers[0]
    own = _grads(method, F.cross_entropy(teacher(x), y))  # the teacher's cross-entropy term alone
    bias = next(n for n, p in method.named_parameters() if p is teacher.classifier.bias)  # also gets the bias CE
    for name, grad in with_mse.items():
        if name.startswith("teachers.") and name != bias:
            assert (grad is None) == (own[name] is None), name
            if grad is not None:
                torch.testing.assert_close(grad, own[name], msg=name)
    assert out.parts["mse"].item() > 0 and with_mse["net.branches.0.projector.0.weight"] is not None


def test_adapt_last_keeps_the_teacher_front_fixed_and_cheaper() -> None:
    teacher = tiny("resnet14", seed=1)
    front = list(teacher.body.children())[:-3]
    before = params_and_buffers(teacher)
    method = build_method(DistillConfig(adapt_last=3), tiny("resnet8"), [teacher])
    opt = optimizer(method)
    train_step(method, opt, *batch())
    fixed = {f"body.{i}." for i in range(len(front))}
    changed = {k for k, v in params_and_buffers(teacher).items() if not torch.equal(v, before[k])}
    assert changed and not any(k.startswith(tuple(fixed)) for k in changed)  # BN statistics of the front too
    assert any(k.startswith(f"body.{len(front)}.") for k in changed)
    assert all(name.startswith(f"body.{len(front)}") or name.startswith(("body.7", "body.8", "head"))
               for name in method._anchor_names[0])
    with pytest.raises(ConfigError, match="adapt_last must be between 1 and 9"):
        build_method(DistillConfig(adapt_last=10), tiny("resnet8"), [tiny("resnet14", seed=1)])
