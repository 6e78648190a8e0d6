"""One optimisation step, the same for every method: the optimizer, the step's order, its compiled form.

``train_step`` is what ``compress.train.fit`` (and the throughput benchmark) run for every batch:
forward (eager, DDP-wrapped or compiled), backward, the method's gradient hook, the optimizer step,
the method's post-step hook. Nothing here reads a number back to the host.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from compress.distill.base import Method, StepOutput


def make_optimizer(method: Method, *, lr: float, momentum: float, weight_decay: float,
                   nesterov: bool = False) -> torch.optim.SGD:
    """SGD over the method's parameter groups; a group's ``lr_scale`` scales ``lr`` for it (see ``set_lr``)."""
    groups = method.param_groups(lr, weight_decay)
    for group in groups:
        group.setdefault("lr_scale", 1.0)
        group["lr"] = lr * group["lr_scale"]
    # GPU: one fused kernel per group (fused=True); CPU: foreach, a few kernels per group. Either way no
    # Python loop over tensors, which would dominate the step of a small model.
    cuda = all(p.is_cuda for group in groups for p in group["params"])
    implementation = {"fused": True} if cuda else {"foreach": True}
    return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay,
                           **implementation)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)


StepForward = Callable[[torch.Tensor, torch.Tensor], StepOutput]


class CompiledForward:
    """``torch.compile`` of the method's forward (the loss), for the small, launch-bound models.

    Only the forward and its backward are compiled: the optimizer and the method's hooks stay eager,
    so every method keeps one code path. ``reduce-overhead`` also replays the step as CUDA graphs
    (torch's cudagraph trees); each step is marked as a new iteration, so its outputs (loss, logits,
    ATSC's anchor differences) stay valid until the next step starts, which is as long as the loop
    and the hooks use them. The first steps (and the first short last batch) pay the compilation.
    """

    def __init__(self, module: nn.Module, mode: str) -> None:
        self.cuda_graphs = mode == "reduce-overhead"

        def flat_step(images: torch.Tensor, labels: torch.Tensor) -> tuple[Any, ...]:
            # The named parts leave as one stacked tensor, not as detached aliases of the loss: Inductor
            # folds `1.0 * mse` into `mse`, and a returned `mse.detach()` then takes the loss's gradient
            # away (pytorch/pytorch#195357, fixed after torch 2.14).
            out = module(images, labels)
            names = tuple(out.parts)
            parts = torch.stack([v.detach().float().reshape(()) for v in out.parts.values()]) if names else None
            return out.loss, out.logits, parts, names

        self.compiled = torch.compile(flat_step, mode=mode)

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> StepOutput:
        if self.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        loss, logits, parts, names = self.compiled(images, labels)
        return StepOutput(loss, logits, dict(zip(names, parts.unbind())) if names else {})


def step_forward(module: nn.Module, mode: str) -> StepForward:
    """What runs the step's forward: ``module`` itself, or its compiled form (``TrainConfig.compile``)."""
    return module if mode == "off" else CompiledForward(module, mode)


def train_step(method: Method, optimizer: torch.optim.Optimizer, images: torch.Tensor, labels: torch.Tensor,
               lr: float, autocast: torch.dtype | None = None, module: StepForward | None = None) -> StepOutput:
    """One optimisation step in the order every method relies on; no host sync.

    ``module`` is what runs the forward (the DDP wrapper under torchrun, a compiled forward); the
    hooks always go to the method itself: gradient edits before ``optimizer.step()``, extra updates
    (ATSC's bias) after it.
    """
    set_lr(optimizer, lr)
    with torch.autocast(images.device.type, dtype=autocast, enabled=autocast is not None):
        output = (module or method)(images, labels)
    optimizer.zero_grad(set_to_none=True)
    output.loss.backward()
    method.before_optimizer_step()
    optimizer.step()
    method.after_optimizer_step(images, labels, lr)
    return output
