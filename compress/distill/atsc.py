"""ATSC: Adaptive Teaching with a Shared Classifier (Jang, Kim, Lim, Lee, arXiv 2406.08528, 2024).

Per teacher k (weights theta_k, classifier g_k = (W_k, b_k), snapshot theta_k0 at construction):

    L1 = (beta / K) sum_k MSE(P_k(f_s), f_t^k) + w sum_k sum_{p in anchor set} ||p - p0||^2
         [+ (teacher_ce / K) sum_k CE(g_k(GAP(f_t^k)), y)]            (guard, ours)
         [+ (shared_kl / K) sum_k T^2 KL(g_k(f_t^k) || g_k(P_k(f_s)))] (ours, see below)
    L2 = sum_k CE(g_k(GAP(f_t^k)), y), stepping only the classifier biases b_k.

``reference=True`` runs the authors' semantics (see ../shared/ATSC.md): teacher in train mode with
autograd, non-detached MSE, anchor through autograd over conv kernels + W, one SGD step over student +
projectors + whole teachers, then a second teacher forward and a separate SGD (momentum 0.9) on the
biases. The project default is the fast path: L2 on the same step's pooled teacher features, detached,
so the bias update rides in the main step (one step staler, no second pass), and the anchor's gradient
``2w(theta - theta0)`` added straight to the gradients with ``torch._foreach`` ops. The guards against the
collapse measured on real data are options: ``teacher_ce``, ``anchor_scope``, ``teacher_lr_scale``,
``bn_mode``. Deployed: ``SharedHeadStudent`` with the adapted teacher heads.

Our additions, each an option measured on real data (benchmarks/results/distill_regimes_cpu.md):
- ``shared_kl`` (default 1; 0 in the reference): ``T^2 KL(softmax(g(f_t)/T) || softmax(g(P(f_s))/T))``,
  Hinton's soft targets through the shared classifier g, on every image (labelled or not), moving only
  the student and its projector. The authors' code has a KL term at weight 0; on short schedules the
  feature MSE alone leaves the shared head's outputs far from the teacher's, and this term closes that.
- ``teacher_feedback=False`` (the project default; True with ``reference``, as published): the MSE's
  gradient stops at the teacher, which keeps learning from its own cross-entropy only: the control that
  tells whether adapting *to the student* matters. It won in every regime of issue 21's records.
- ``adapt_last=N``: only the teacher body's last N blocks adapt; backward stops there (a cheaper step).
- ``teacher_adapt``: what of the teacher adapts. ``all`` (default): its weights, as above. ``none``: the
  frozen-teacher arm; the teacher is frozen like SimKD's (no gradient, no optimizer group, eval mode, its
  forward without autograd) and L1 keeps only the feature MSE and the shared KL, through the teacher's
  original classifier: no teacher CE, bias refinement or anchor. ``bn``: the same, except that the
  teacher's BN layers run in train mode during training, so their running statistics follow the training
  images, labelled and unlabelled (AdaBN, Li et al. 2016); evaluation uses the adapted statistics.
- ``teacher_every=k`` (default 4; 1 with ``reference``): the teacher takes its step (MSE feedback, its CE,
  bias refinement, anchor) on steps k, 2k, ... only; on the others its forward runs without autograd
  (still in train mode: its BN statistics move every step) and the student learns from the detached
  features (the teacher terms are still computed, for the log, without a graph). The count of steps
  taken is a buffer of the method, so a resumed run keeps the same teacher steps.
- ``pseudo_threshold=t``: the teacher CE also counts unlabelled images whose teacher confidence (max
  softmax) is at least t, the teacher's argmax as their label (self-training, as Noisy Student; the
  confidence filter of FixMatch). The bias refinement keeps the real labels.
Label terms (teacher CE, bias refinement) average over the labelled images of a batch only (with
``pseudo_threshold``, the teacher CE over the labelled and the confidently pseudo-labelled ones).
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Any, Iterable

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from compress.data.labels import labeled_ce
from compress.distill.adapted_teacher import Snapshot, anchor_names, fixed_front, pre_classifier
from compress.distill.base import StepOutput
from compress.distill.configs import ATSCConfig
from compress.distill.kd import freeze
from compress.distill.losses import anchor_penalty, pseudo_labels
from compress.distill.simkd import SharedClassifierMethod, _stack_mean, eval_mode
from compress.errors import ConfigError
from compress.models.base import ClassifierModel
from compress.models.shared_head import align_maps
from compress.parallel import all_reduce_sum_, average_gradients

def _clock_loaded(method: "ATSC", _: Any) -> None:
    """After ``load_state_dict`` (resume): the step clock from the restored count (one host read)."""
    method._set_clock(int(method.get_buffer("steps_taken")))


class ATSC(SharedClassifierMethod):
    label_terms = ("teacher_ce", "bias_ce")
    config: ATSCConfig

    def __init__(self, student: ClassifierModel, teachers: list[ClassifierModel], config: ATSCConfig | None = None,
                 image_size: int | tuple[int, int] | None = None) -> None:
        config = config or ATSCConfig()
        for i, t in enumerate(teachers):
            head = t.head_module
            if not isinstance(head, nn.Sequential) or head[-1] is not t.classifier or t.classifier.bias is None:
                raise ConfigError(f"teacher {i + 1} ({t.spec.name}): ATSC needs a head that ends with its "
                                  "classifier Linear (with bias)")
            if config.teacher_adapt != "all":
                freeze(t)  # no gradient, no optimizer group; with "bn" only the BN statistics move (see train)
                continue
            t.requires_grad_(True)  # the teacher adapts
            for block in fixed_front(t, config.adapt_last):
                block.requires_grad_(False)  # backward stops at the first adapting block: a cheaper step
        super().__init__(student, teachers, config, image_size)
        self._fixed = [fixed_front(t, config.adapt_last) for t in teachers]
        self.snapshots = nn.ModuleList([Snapshot(t) for t in teachers])
        self._anchor_names = [anchor_names(t, config.anchor_scope) for t in teachers]
        self._start_top1: list[float] | None = None
        self._weight_decay = 0.0  # of the main optimizer, for the reference bias step (param_groups sets it)
        if config.reference:
            # The reference bias step's SGD momentum, kept as buffers so it is saved and restored on resume
            # (a zero buffer gives torch.optim.SGD's first step exactly: buf = grad).
            for k, t in enumerate(teachers):
                self.register_buffer(f"bias_momentum{k}", torch.zeros_like(t.classifier.bias.detach()))
        self._diffs: list[list[torch.Tensor]] | None = None  # theta - theta0 from the forward, reused once
        # teacher_every: whether the coming step is a teacher step. A Python bool, so the forward (compiled or
        # not) branches without a host sync; the count of steps taken is a buffer, saved for an exact resume.
        self._steps_taken = 0
        self._teacher_turn = True
        if config.teacher_every > 1:
            self.register_buffer("steps_taken", torch.zeros((), dtype=torch.int64))
            self._set_clock(0)
            self.register_load_state_dict_post_hook(_clock_loaded)

    def _set_clock(self, steps_taken: int) -> None:
        """Steps count from 1; step n is a teacher step when n is a multiple of teacher_every."""
        self._steps_taken = steps_taken
        self._teacher_turn = (steps_taken + 1) % self.config.teacher_every == 0

    @property
    def adapting(self) -> bool:
        """Whether the teacher's weights train at all (teacher_adapt='all')."""
        return self.config.teacher_adapt == "all"

    # ------------------------------------------------------------------------------------ plumbing
    @property
    def ddp_find_unused_parameters(self) -> bool:
        """Without the teacher CE, W (fast path) or b (reference) gets no gradient from the loss; between
        teacher steps (teacher_every > 1) no teacher parameter does. A frozen teacher has none to find."""
        return self.adapting and (self.config.teacher_ce == 0 or self.config.teacher_every > 1)

    def anchor_params(self, k: int) -> list[nn.Parameter]:
        params = dict(self.teachers[k].named_parameters())
        return [params[n] for n in self._anchor_names[k]]

    def biases(self) -> list[nn.Parameter]:
        return [t.classifier.bias for t in self.teachers]

    def train(self, mode: bool = True) -> "ATSC":
        super().train(mode)
        if not self.adapting:
            self.teachers.eval()  # running statistics, as SimKD's frozen teacher
            if mode and self.config.teacher_adapt == "bn":  # AdaBN: BN statistics follow the training images
                for teacher in self.teachers:
                    for m in teacher.modules():
                        if isinstance(m, nn.modules.batchnorm._BatchNorm):
                            m.train()
            return self
        for front in self._fixed:  # blocks that do not adapt keep their BN statistics too
            for block in front:
                block.eval()
        if mode and self.config.bn_mode == "frozen":  # running statistics used and kept; affine still trains
            for teacher in self.teachers:
                for m in teacher.modules():
                    if isinstance(m, nn.modules.batchnorm._BatchNorm):
                        m.eval()
        return self

    def check_stability(self, lr: float) -> None:
        """The anchor is a spring of stiffness 2w; heavy-ball SGD on it is stable only while
        ``lr_teacher * 2w < 2 (1 + momentum)`` (w = 100 at lr 0.05 diverged on Fashion-MNIST)."""
        spring = lr * self.config.teacher_lr_scale * 2 * self.config.w
        limit = 2 * (1 + self.config.momentum)
        if self.config.stability == "off" or spring < limit:
            return
        msg = (f"ATSC anchor would diverge: teacher lr x 2w = {lr:g} x {self.config.teacher_lr_scale:g} x 2 x {self.config.w:g} "
               f"= {spring:.3g} >= 2(1 + momentum) = {limit:.3g}; lower w, the lr or teacher_lr_scale")
        if self.config.stability == "error":
            raise ConfigError(msg + " (or set stability='warn')")
        warnings.warn(msg, RuntimeWarning, stacklevel=2)

    def param_groups(self, lr: float, weight_decay: float) -> list[dict[str, Any]]:
        teacher_ids = {id(p) for p in self.teachers.parameters()}
        student = [p for p in self.net.parameters() if id(p) not in teacher_ids]  # backbone + projectors
        if not self.adapting:  # no teacher parameter in any group: nothing can step it
            return [{"params": student, "lr": lr, "weight_decay": weight_decay, "lr_scale": 1.0, "name": "student"}]
        self.check_stability(lr)
        self._weight_decay = weight_decay
        bias_ids = {id(b) for b in self.biases()}
        teacher = [p for p in self.teachers.parameters() if id(p) not in bias_ids and p.requires_grad]
        # The reference steps b with the whole teacher (it gets no L1 gradient unless teacher_ce > 0);
        # the fast path refines b at the base lr, like the reference's separate bias optimizer.
        bias_scale = self.config.teacher_lr_scale if self.config.reference else 1.0
        groups = [("student", student, 1.0), ("teacher", teacher, self.config.teacher_lr_scale),
                  ("teacher_bias", self.biases(), bias_scale)]
        return [{"params": params, "lr": lr * scale, "weight_decay": weight_decay, "lr_scale": scale, "name": name}
                for name, params, scale in groups if params]

    # ------------------------------------------------------------------------------------ the step
    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> StepOutput:
        k_teachers = len(self.teachers)
        f_s = self.net.backbone(images)
        # A teacher step runs the teacher with autograd (the MSE reaches it); otherwise (frozen or BN-only
        # teacher, or between teacher steps) its forward keeps no graph and the student learns from it alone.
        teacher_step = self.adapting and self._teacher_turn
        teacher_grad = contextlib.nullcontext() if teacher_step else torch.no_grad()
        with teacher_grad:
            f_ts = [t.features(images) for t in self.teachers]
        # Without feedback (the control for ATSC's claim) the MSE's gradient stops at the teacher, which
        # then learns from its own cross-entropy alone.
        targets = f_ts if self.config.teacher_feedback else [f.detach() for f in f_ts]
        mses, logits = self.project(f_s, targets)
        loss = (self.config.beta / k_teachers) * sum(mses)
        parts: dict[str, torch.Tensor] = {"mse": _stack_mean(mses).detach()}
        if self.config.shared_kl > 0:
            kl = _stack_mean(self.shared_kls(f_s, f_ts))
            loss = loss + self.config.shared_kl * kl
            parts["shared_kl"] = kl.detach()
        if not self.adapting:
            return StepOutput(loss, logits, parts)
        with teacher_grad:  # between teacher steps: the teacher terms' values, for the log, without a graph
            terms = self._teacher_terms(labels, f_ts, loss)
        for name, term, value in terms:  # added outside no_grad, so the loss keeps the student's graph
            loss = loss + term
            parts[name] = value
        return StepOutput(loss, logits, parts)

    def _teacher_terms(self, labels: torch.Tensor, f_ts: list[torch.Tensor],
                       loss: torch.Tensor) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
        """The teacher's terms of L1, in the order they add to the loss: (name, term, logged value)."""
        k_teachers = len(self.teachers)
        terms = []
        teacher_ces, bias_ces = [], []
        for teacher, f_t in zip(self.teachers, f_ts):
            if self.config.teacher_ce > 0 or not self.config.reference:
                hidden = pre_classifier(teacher.head_module, f_t)
                fc = teacher.classifier
                if self.config.teacher_ce > 0:
                    z = fc(hidden)
                    targets = labels if self.config.pseudo_threshold is None else \
                        pseudo_labels(z, labels, self.config.pseudo_threshold)
                    teacher_ces.append(labeled_ce(z, targets))
                if not self.config.reference:
                    # Fast-path L2: same-step pooled features and W detached, so only b gets this gradient.
                    bias_ces.append(labeled_ce(F.linear(hidden.detach(), fc.weight.detach(), fc.bias), labels))
        if teacher_ces:
            teacher_ce = _stack_mean(teacher_ces)  # (teacher_ce / K) sum_k CE_k
            terms.append(("teacher_ce", self.config.teacher_ce * teacher_ce, teacher_ce.detach()))
        if bias_ces:
            terms.append(("bias_ce", sum(bias_ces), _stack_mean(bias_ces).detach()))

        if self.config.reference:
            anchor = self.config.w * sum(anchor_penalty(self.anchor_params(k), self.snapshots[k].get(self._anchor_names[k]))
                                  for k in range(k_teachers))
        else:
            with torch.no_grad():
                self._diffs = [torch._foreach_sub(self.anchor_params(k), self.snapshots[k].get(self._anchor_names[k]))
                               for k in range(k_teachers)]
                squares = [torch.stack(torch._foreach_norm(d)).pow(2).sum() for d in self._diffs if d]
                anchor = self.config.w * sum(squares) if squares else loss.new_zeros(())
            # Added as a constant so the reported loss is L1's value; its gradient comes in before_optimizer_step.
        anchor = anchor if isinstance(anchor, torch.Tensor) else loss.new_tensor(anchor)
        terms.append(("anchor", anchor, anchor.detach()))
        return terms

    def shared_kls(self, f_s: torch.Tensor, f_ts: list[torch.Tensor]) -> list[torch.Tensor]:
        """Per teacher: ``T^2 KL(softmax(g(f_t)/T) || softmax(g(P(f_s))/T))`` through the shared classifier
        g, on every image (no labels). Teacher logits and g are constants here: this term moves only the
        student and its projector, so the teacher adapts through the feature MSE and its own CE alone."""
        kls = []
        for teacher, branch, f_t in zip(self.teachers, self.net.branches, f_ts):
            fc = teacher.classifier
            source, _, _ = align_maps(f_s, f_t)
            hidden = pre_classifier(teacher.head_module, branch.projector(source))
            student_logits = F.linear(hidden, fc.weight.detach(), fc.bias.detach())
            with torch.no_grad():
                teacher_probs = F.softmax(fc(pre_classifier(teacher.head_module, f_t)).float() / self.config.temperature, dim=1)
            log_p = F.log_softmax(student_logits.float() / self.config.temperature, dim=1)
            kls.append(F.kl_div(log_p, teacher_probs, reduction="batchmean") * self.config.temperature ** 2)
        return kls

    def before_optimizer_step(self) -> None:
        """Fast path: grad += 2w (theta - theta0) on the anchored set (the penalty's exact gradient)."""
        diffs, self._diffs = self._diffs, None
        if self.config.reference or self.config.w == 0 or not (self.adapting and self._teacher_turn):
            return
        for k in range(len(self.teachers)):
            params = self.anchor_params(k)
            if not params:
                continue
            diff = diffs[k] if diffs is not None else torch._foreach_sub(
                [p.detach() for p in params], self.snapshots[k].get(self._anchor_names[k]))
            for p in params:
                if p.grad is None:  # e.g. W, which only the anchor moves when teacher_ce = 0
                    p.grad = torch.zeros_like(p)
            torch._foreach_add_([p.grad for p in params], diff, alpha=2 * self.config.w)

    def after_optimizer_step(self, images: torch.Tensor, labels: torch.Tensor, lr: float) -> None:
        """Count the step (teacher_every); reference path: L2 with a second teacher forward (train mode, as
        the authors), SGD on b only."""
        if self.config.teacher_every > 1:
            self.steps_taken.add_(1)  # type: ignore[operator]
            self._set_clock(self._steps_taken + 1)
        if not self.config.reference:
            return
        biases = self.biases()
        losses = []
        for teacher in self.teachers:
            with torch.no_grad():  # only b is stepped: no graph through the backbone is needed
                hidden = pre_classifier(teacher.head_module, teacher.features(images))
            fc = teacher.classifier
            losses.append(labeled_ce(F.linear(hidden, fc.weight.detach(), fc.bias), labels))
        grads = torch.autograd.grad(sum(losses), biases)
        for b, g in zip(biases, grads):
            b.grad = g
        average_gradients(biases)  # this step is outside DDP's backward: average over ranks here
        with torch.no_grad():  # SGD with momentum and weight decay (no dampening), as torch.optim.SGD
            buffers = [self.get_buffer(f"bias_momentum{k}") for k in range(len(biases))]
            steps = torch._foreach_add([b.grad for b in biases], biases, alpha=self._weight_decay)
            torch._foreach_mul_(buffers, self.config.momentum)
            torch._foreach_add_(buffers, steps)
            torch._foreach_add_(biases, buffers, alpha=-lr)
        for b in biases:
            b.grad = None

    # ------------------------------------------------------------------------------------ monitoring
    @torch.no_grad()
    def _top1_start(self, val_loader: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> list[float]:
        """Top-1 (%) of the teachers as loaded (theta0 and their original BN statistics)."""
        device = self._device()
        correct = torch.zeros(len(self.teachers), device=device, dtype=torch.float64)
        count = 0
        with eval_mode(self):
            for images, labels in val_loader:
                images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
                for k, teacher in enumerate(self.teachers):
                    logits = functional_call(teacher, self.snapshots[k].state(), (images,))
                    correct[k] += (logits.argmax(1) == labels).sum()
                count += len(labels)
        # Under torchrun each rank sees a slice of the validation set: sum over ranks.
        totals = all_reduce_sum_(torch.cat([correct, correct.new_tensor([count])]))
        return (100.0 * totals[:-1] / totals[-1].clamp(min=1)).tolist()

    def teachers_measured(self, top1: list[float]) -> None:
        if len(top1) != len(self.teachers):
            raise ValueError(f"{len(top1)} accuracies for {len(self.teachers)} teachers")
        self._start_top1 = list(top1)

    def drift(self, k: int) -> torch.Tensor:
        """Relative weight drift ||theta - theta0|| / ||theta0|| over all of teacher k's parameters."""
        names = [n for n, _ in self.teachers[k].named_parameters()]
        params = [p.detach() for p in self.teachers[k].parameters()]
        start = self.snapshots[k].get(names)
        diff = torch.stack(torch._foreach_norm(torch._foreach_sub(params, start))).norm()
        return diff / torch.stack(torch._foreach_norm(start)).norm().clamp(min=1e-12)

    @torch.no_grad()
    def epoch_metrics(self, val_loader: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, float]:
        if self._start_top1 is None:
            self._start_top1 = self._top1_start(val_loader)
        stats = self.validation_stats(val_loader)
        count = stats["count"].clamp(min=1)
        top1 = (100.0 * stats["correct"] / count).tolist()
        mse = (stats["mse"] / count).tolist()
        drift = [float(self.drift(k)) for k in range(len(self.teachers))]
        kept = [a / s if s > 0 else 1.0 for a, s in zip(top1, self._start_top1)]
        metrics = {"teacher_top1": sum(top1) / len(top1), "teacher_top1_start": sum(self._start_top1) / len(top1),
                   "teacher_kept": min(kept), "teacher_drift": max(drift), "feature_mse": sum(mse) / len(mse)}
        if len(self.teachers) > 1:
            for k in range(len(self.teachers)):
                metrics |= {f"teacher{k + 1}_top1": top1[k], f"teacher{k + 1}_drift": drift[k],
                            f"teacher{k + 1}_feature_mse": mse[k]}
        return metrics

    def health(self, metrics: dict[str, float]) -> list[str]:
        kept = metrics.get("teacher_kept")
        if kept is None or kept >= 1 - self.config.teacher_drop_limit:
            return []
        remedy = ("its BN statistics follow the training images (teacher_adapt='bn'): if the validation images "
                  "are not like them, keep the teacher frozen (teacher_adapt='none')"
                  if self.config.teacher_adapt == "bn" else
                  "raise teacher_ce, lower teacher_lr_scale or anchor all parameters (anchor_scope='all')")
        return [f"the adapted teacher keeps {100 * kept:.1f}% of its starting top-1 "
                f"({metrics['teacher_top1']:.2f}% vs {metrics['teacher_top1_start']:.2f}%), below the "
                f"{100 * (1 - self.config.teacher_drop_limit):.0f}% limit: {remedy}"]

    def extra_checkpoints(self) -> dict[str, nn.Module]:
        if self.config.teacher_adapt == "none":
            return {}  # the teacher as loaded: nothing new to save
        if len(self.teachers) == 1:
            return {"teacher": self.teachers[0]}
        return {f"teacher{k + 1}": t for k, t in enumerate(self.teachers)}
