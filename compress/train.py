"""The training loop: plain functions, readable top to bottom, the same for every method.

``fit`` trains a ``Method`` (teacher training, KD, SimKD, ATSC...) and never branches on which one it
is: the method computes the loss and says what is deployed. Each epoch is three calls:
``train_one_epoch`` (schedule the learning rate, step the optimizer), ``evaluate`` (the deployable
module on the validation split) and ``save_epoch`` (checkpoints, metrics and resume state, atomically).
Per-step numbers stay on the device and are read every ``log_every`` steps, because reading them
every step would force a host sync that stalls a GPU.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from compress.artifacts import (atomic_write_text, check_folder_free, folder_lock, output_folder, sha256_file,
                                write_json)
from compress.checkpoint import read_weights
from compress.data import BatchLoader, DataBundle
from compress.deployable import save_deployable
from compress.distill.base import Method, StepOutput
from compress.errors import ConfigError, Interrupted, TrainingDiverged
from compress.interrupts import deferred_interrupt
from compress.logs import get_logger
from compress.parallel import DistContext
from compress.progress import ProgressBar
from compress.record import (BEST_FILE, METRICS_FILE, MODEL_FILE, STATE_FILE, SUMMARY_FILE, RunInfo, RunSummary,
                             Scores, training_fields)
from compress.resume import EpochProgress, TrainingState, load_training_state, read_state_record, save_training_state
from compress.step import StepForward, make_optimizer, step_forward, train_step
from compress.train_config import COMPILE_MODES, TrainConfig, amp_dtype, lr_factor, resolve_device, seed_everything


@dataclass
class FitResult:
    best_top1: float
    best_epoch: int
    last_top1: float
    last_top5: float
    history: list[dict[str, Any]]
    out_dir: Path
    images_per_s: float
    wall_s: float
    extra: dict[str, float] = field(default_factory=dict)
    # With a held-out validation split: the test split, read once with the best epoch's weights
    test_top1: float | None = None
    test_top5: float | None = None


@dataclass(frozen=True)
class EpochStats:
    """One epoch of training, summed over ranks."""

    lr: float  # at the last step
    loss: float  # mean per image
    top1: float  # percent, over the labelled images
    images: int
    seconds: float
    parts: dict[str, float]  # the method's named loss parts, mean per step


@dataclass(frozen=True)
class _Run:
    """What every epoch of one training run works with; built once by ``_start``."""

    method: Method
    data: DataBundle
    cfg: TrainConfig
    out: Path
    info: RunInfo | None  # what the caller says this run is (recorded in every checkpoint)
    inputs: dict[str, str]  # input name -> SHA-256, recorded in every checkpoint
    log: Callable[[str], None]
    progress: bool
    dist: DistContext
    device: torch.device
    autocast: torch.dtype | None
    forward: StepForward  # the method itself, its DDP wrapper or its compiled form
    optimizer: torch.optim.Optimizer

    @property
    def fingerprint(self) -> dict[str, Any]:
        return self.info.fingerprint() if self.info is not None else {}


def fit(
    method: Method,
    data: DataBundle,
    cfg: TrainConfig,
    out_dir: str | os.PathLike[str],
    *,
    resume: bool = False,
    info: RunInfo | None = None,
    inputs: dict[str, str] | None = None,
    log: Callable[[str], None] = get_logger(__name__).info,
    progress: bool = True,
    dist: DistContext | None = None,
) -> FitResult:
    """Train ``method`` for ``cfg.epochs`` epochs; checkpoints and metrics go to ``out_dir``.

    ``info`` (model, data, method settings) is recorded in every sidecar; ``inputs`` maps input names
    (e.g. teacher checkpoints) to their SHA-256. With ``resume`` training continues from the last
    completed epoch in ``out_dir/state.safetensors``.
    """
    cfg.validate()
    dist = dist or DistContext.single()
    out = Path(out_dir)
    _check_output(out, data, resume, dist)
    try:
        with _holding(out, dist):  # released on the way out, Ctrl-C included
            run = _start(method, data, cfg, out, info=info, inputs=inputs or {}, log=dist.main_only(log),
                         progress=progress, dist=dist)
            return _train_epochs(run, _resume_or_begin(run, resume))
    except KeyboardInterrupt:
        raise _interrupted(out, cfg.epochs) from None


def _interrupted(out: Path, epochs: int) -> Interrupted:
    """What Ctrl-C left: the saved epochs are those in the metrics file (an epoch's files are saved together),
    and the resume state says where ``--resume`` goes on (the middle of an epoch after a mid-epoch save)."""
    metrics = out / METRICS_FILE
    saved = sum(1 for line in metrics.read_text().splitlines() if line.strip()) if metrics.exists() else 0
    state = read_state_record(out) if (out / STATE_FILE).exists() else None
    if state is None or (not saved and state.in_epoch is None):
        return Interrupted(f"training in '{out}' stopped before its first epoch was saved")
    kept = "no epoch is complete" if not saved else "epoch 1 is saved" if saved == 1 else f"epochs 1-{saved} are saved"
    return Interrupted(f"training in '{out}' stopped in epoch {saved + 1} of {epochs}; {kept}; --resume goes on "
                       f"from {state.resumes_at}", resumable=True)


def _check_output(out: Path, data: DataBundle, resume: bool, dist: DistContext) -> None:
    """Every check that can fail on the output folder or the batch, before anything is written."""
    if isinstance(getattr(data.train, "batch_size", None), int):  # TensorLoader: the global batch
        dist.check_batch(data.train.batch_size)  # type: ignore[attr-defined]
    if dist.is_main:
        check_folder_free(out)  # "in use" says more than whatever the half-written folder looks like
    state_exists = (out / STATE_FILE).exists()
    if resume and not state_exists:
        raise ConfigError(f"nothing to resume in '{out}' (no {STATE_FILE}): drop --resume to start a new run")
    if not resume and state_exists:
        raise ConfigError(f"'{out}' already holds a training run: pass --resume to continue it, or choose another --out")


@contextlib.contextmanager
def _holding(out: Path, dist: DistContext) -> Iterator[None]:
    """Rank 0 creates and locks the folder: a second run into it fails there instead of corrupting this one."""
    if not dist.is_main:  # only rank 0 writes files
        yield
        return
    with output_folder(out), folder_lock(out):  # a run that fails before writing anything leaves no folder
        yield


def _start(method: Method, data: DataBundle, cfg: TrainConfig, out: Path, *, info: RunInfo | None,
           inputs: dict[str, str], log: Callable[[str], None], progress: bool, dist: DistContext) -> _Run:
    seed_everything(cfg.seed, cfg.deterministic)  # the same on every rank; DDP keeps the weights in sync
    device = next(method.parameters()).device
    train_module = dist.wrap(method)  # before the optimizer: SyncBatchNorm conversion replaces BN modules
    forward = step_forward(train_module, cfg.compile)  # DDP first, then compile: DDP's graph splits apply
    optimizer = make_optimizer(method, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                               nesterov=cfg.nesterov)
    return _Run(method, data, cfg, out, info, inputs, log, progress, dist, device, amp_dtype(cfg, device), forward,
                optimizer)


def _resume_or_begin(run: _Run, resume: bool) -> TrainingState:
    """Where training starts: epoch 0, or the last completed epoch of the run in ``run.out``."""
    if not resume:
        return TrainingState(0, [], -1.0, 0, run.fingerprint, run.cfg.to_dict())
    # This also restores the RNG, so the epochs to come draw what an uninterrupted run would have.
    state = load_training_state(run.out, run.method, run.optimizer, run.fingerprint)
    if state.epoch >= run.cfg.epochs:
        raise ConfigError(f"'{run.out}' already finished {state.epoch} epochs; raise --epochs to train longer")
    where = f"epoch {state.epoch}" if state.in_epoch is None else state.resumes_at
    run.log(f"resuming from {where} (best top-1 {state.best_top1:.2f}% at epoch {state.best_epoch})")
    return state


def _train_epochs(run: _Run, state: TrainingState) -> FitResult:
    """The epochs from ``state`` on: train, evaluate what is deployed, save, report."""
    method, data, cfg, dist = run.method, run.data, run.cfg, run.dist
    batches = data.train_for(method.uses_unlabeled)  # labelled batches only, for a labels-only method
    if len(batches) == 0:
        raise ConfigError(f"the training split has {data.train.num_samples} images, fewer than one batch: lower --batch-size")
    deployed = method.deployable()  # what export ships: evaluated and saved every epoch
    started, images, seconds = time.perf_counter(), 0, 0.0
    for epoch in range(state.epoch + 1, cfg.epochs + 1):  # 1-based: the epoch being trained
        begun, state = state.in_epoch, replace(state, in_epoch=None)
        stats = train_one_epoch(run, batches, epoch, begun,
                                save=lambda progress, done=state: _save_in_epoch(run, done, progress))
        images, seconds = images + stats.images, seconds + stats.seconds
        scores = evaluate(deployed, data.val, run.autocast, dist)
        extra = method.epoch_metrics(data.val)
        history = [*state.history, _metrics_row(epoch, stats, scores, extra)]
        improved = scores["top1"] > state.best_top1
        best_top1, best_epoch = (scores["top1"], epoch) if improved else (state.best_top1, state.best_epoch)
        state = TrainingState(epoch, history, best_top1, best_epoch, run.fingerprint, cfg.to_dict())
        if dist.is_main:
            with deferred_interrupt():  # Ctrl-C waits for the epoch's files: they must agree to resume from
                save_epoch(run, deployed, state, Scores(scores["top1"], scores["top5"], best_top1, best_epoch),
                           improved)
        warnings = method.health(extra)
        run.log(_epoch_line(history[-1], cfg.epochs, extra))
        dist.barrier()  # no rank runs ahead of rank 0's checkpoint
        for warning in warnings:
            run.log(f"warning: {warning}")
        if warnings and cfg.strict:
            raise TrainingDiverged(f"stopped by --strict after epoch {epoch}: {warnings[0]}")
    return _finish(run, state, time.perf_counter() - started, images / seconds if seconds else 0.0)


def train_one_epoch(run: _Run, batches: BatchLoader, epoch: int, begun: EpochProgress | None = None,
                    save: Callable[[EpochProgress], None] | None = None) -> EpochStats:
    """One pass over ``batches`` (``epoch`` counts from 1); per-step numbers stay on the device.

    ``begun``: the epoch was saved after ``begun.step`` batches; training goes on from there with the same
    batches, and sums, as an uninterrupted pass. ``save`` is called every ``cfg.save_every_s`` seconds of the
    epoch with where it stands (never after its last step: the epoch's end saves everything)."""
    cfg, device, steps = run.cfg, run.device, len(batches)
    batches.set_epoch(epoch - 1)  # the epoch picks the shuffle and augmentation: a resumed run sees the same
    first = begun.step if begun is not None else 0
    if first >= steps:
        raise ConfigError(f"the resume state is {first} steps into epoch {epoch}, which has {steps}: resume with "
                          "the original data and --batch-size")
    if first:
        batches.start_at(first)
    can_save = save is not None and cfg.save_every_s > 0 and hasattr(batches, "start_at")
    run.method.train()
    # loss sum, images, correct, labelled images
    sums = torch.tensor(begun.sums if begun is not None else (0.0,) * 4, device=device, dtype=torch.float64)
    parts: dict[str, torch.Tensor] = {name: torch.tensor(value, device=device)
                                      for name, value in (begun.parts if begun is not None else {}).items()}
    bar = ProgressBar(steps, epoch, cfg.epochs, run.progress and run.dist.is_main, run.data.train.num_samples / steps,
                       run.log, first_step=first)
    started = time.perf_counter() - (begun.seconds if begun is not None else 0.0)
    saved_at = time.monotonic()
    for step, (images, labels) in enumerate(batches, start=first + 1):
        lr = cfg.lr * lr_factor(cfg, epoch - 1 + (step - 1) / steps)
        output = train_step(run.method, run.optimizer, images, labels, lr, run.autocast, run.forward)
        loss = output.loss.detach().float()
        known = labels >= 0  # train accuracy over the labelled images (all, unless the data is partly labelled)
        sums += torch.stack([loss * len(labels), torch.tensor(len(labels), device=device),
                             ((output.logits.detach().argmax(1) == labels) & known).sum(), known.sum()]).to(torch.float64)
        for name, value in output.parts.items():
            parts[name] = parts.get(name, 0) + value.detach().float()
        if device.type == "cpu" or step % cfg.log_every == 0 or step == steps:  # GPU: a sync, so only now and then
            _stop_if_diverged(loss, output, epoch, step, run.out)
        bar.update(step, sums)  # by time: reads the sums (one host sync) only when it refreshes
        if can_save and step < steps and time.monotonic() - saved_at >= cfg.save_every_s:
            assert save is not None
            loss_sum, count, correct, labeled = sums.tolist()
            save(EpochProgress(step, (loss_sum, count, correct, labeled), {name: float(v) for name, v in parts.items()},
                               time.perf_counter() - started))
            saved_at = time.monotonic()
    bar.close()
    run.dist.all_reduce_sum(sums)
    for value in parts.values():  # per-rank means -> the mean over ranks (equal slices)
        run.dist.all_reduce_sum(value)
        value /= run.dist.world_size
    seconds = time.perf_counter() - started
    loss_sum, count, correct, labeled = sums.tolist()
    return EpochStats(lr, loss_sum / count, 100 * correct / max(labeled, 1), int(count), seconds,
                      {name: float(value) / steps for name, value in parts.items()})


def _save_in_epoch(run: _Run, state: TrainingState, progress: EpochProgress) -> None:
    """The resume state in the middle of an epoch: only ``state.safetensors`` changes (the weights, optimizer
    and RNG now, with how far the epoch got); the checkpoints and metrics stay those of the last whole epoch.
    Under DDP the running sums are rank 0's (the epoch's training metrics then estimate the other ranks')."""
    if run.dist.is_main:
        with deferred_interrupt():  # Ctrl-C waits for the state file: it is replaced whole or not at all
            save_training_state(run.out, run.method, run.optimizer, replace(state, in_epoch=progress))


def _stop_if_diverged(loss: torch.Tensor, output: StepOutput, epoch: int, step: int, out: Path) -> None:
    """Stop at the first non-finite loss, naming the step and the last checkpoint worth keeping."""
    if torch.isfinite(loss):
        return
    parts = {k: float(v.detach()) for k, v in output.parts.items()}
    good = out / MODEL_FILE
    raise TrainingDiverged(
        f"loss became {float(loss)} at epoch {epoch} step {step} (parts {parts}); "
        f"last good checkpoint: {good if good.exists() else 'none yet'}; lower --lr or check the data"
    )


@torch.no_grad()
def evaluate(module: nn.Module, loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
             autocast: torch.dtype | None = None, dist: DistContext | None = None) -> dict[str, float]:
    """Top-1, top-5 and cross-entropy of ``module`` on ``loader`` (one host sync at the end)."""
    was_training = module.training
    module.eval()
    device = next(module.parameters()).device
    totals = torch.zeros(4, device=device, dtype=torch.float64)  # correct1, correct5, loss sum, count
    for images, labels in loader:
        with torch.autocast(device.type, dtype=autocast, enabled=autocast is not None):
            logits = module(images)
        logits = logits.float()
        top5 = logits.topk(min(5, logits.shape[1]), dim=1).indices
        hits = top5 == labels[:, None]
        totals += torch.stack([hits[:, 0].sum(), hits.any(dim=1).sum(),
                               F.cross_entropy(logits, labels, reduction="sum"),
                               torch.tensor(len(labels), device=device)]).to(torch.float64)
    if dist is not None:
        dist.all_reduce_sum(totals)
    module.train(was_training)
    correct1, correct5, loss, count = totals.tolist()
    count = max(count, 1.0)
    return {"top1": 100.0 * correct1 / count, "top5": 100.0 * correct5 / count, "loss": loss / count}


def _metrics_row(epoch: int, stats: EpochStats, scores: dict[str, float], extra: dict[str, float]) -> dict[str, Any]:
    """The epoch's line in metrics.jsonl."""
    return {"epoch": epoch, "lr": stats.lr, "train_loss": stats.loss, "train_top1": stats.top1,
            "val_top1": scores["top1"], "val_top5": scores["top5"], "val_loss": scores["loss"],
            "images_per_s": stats.images / stats.seconds, "epoch_seconds": stats.seconds,
            **{f"loss_{name}": value for name, value in stats.parts.items()}, **extra}


def _epoch_line(row: dict[str, Any], epochs: int, extra: dict[str, float]) -> str:
    extras = " ".join(f"{k} {v:.4g}" for k, v in extra.items())
    return (f"epoch {row['epoch']}/{epochs}  loss {row['train_loss']:.4f}  train {row['train_top1']:.2f}%  "
            f"val top-1 {row['val_top1']:.2f}%  top-5 {row['val_top5']:.2f}%  {row['images_per_s']:.0f} img/s"
            + (f"  {extras}" if extras else ""))


def save_epoch(run: _Run, deployed: nn.Module, state: TrainingState, scores: Scores, improved: bool) -> None:
    """Write the epoch's checkpoints, metrics and resume state into ``run.out`` (rank 0 only)."""
    out, pre, inputs, cfg = run.out, run.data.preprocessing, run.inputs, run.cfg.to_dict()
    record = training_fields(run.info, cfg, state.epoch, scores)
    # Order matters for crash safety: the deployable files first, the resume state last, so a
    # state file never points past checkpoints that were not written.
    if improved:
        save_deployable(out / BEST_FILE, deployed, pre, record, inputs)
    save_deployable(out / MODEL_FILE, deployed, pre, record, inputs)
    for stem, module in run.method.extra_checkpoints().items():
        save_deployable(out / f"{stem}.safetensors", module, pre,
                        training_fields(run.info, cfg, state.epoch, scores, role=stem), inputs)
    write_metrics(out, state.history)
    save_training_state(out, run.method, run.optimizer, state)


def write_metrics(out_dir: Path, history: list[dict[str, Any]]) -> None:
    atomic_write_text(out_dir / METRICS_FILE, "".join(json.dumps(row) + "\n" for row in history))


def _finish(run: _Run, state: TrainingState, wall: float, images_per_s: float) -> FitResult:
    """The run's result, its summary.json, and the closing line."""
    last = state.history[-1]
    test = _test_once(run)
    result = FitResult(state.best_top1, state.best_epoch, last["val_top1"], last["val_top5"], state.history, run.out,
                       images_per_s, wall, test_top1=None if test is None else test["top1"],
                       test_top5=None if test is None else test["top5"])
    if run.dist.is_main:
        summary = RunSummary(state.best_top1, state.best_epoch, result.last_top1, result.last_top5, run.cfg.epochs,
                             images_per_s, wall, sha256_file(run.out / MODEL_FILE), run.info, run.cfg.to_dict(),
                             "test" if test is None else "holdout", result.test_top1, result.test_top5,
                             None if test is None else state.best_epoch)
        write_json(run.out / SUMMARY_FILE, summary.to_dict())
    run.log(f"done: last top-1 {result.last_top1:.2f}%, best {state.best_top1:.2f}% (epoch {state.best_epoch}); "
            f"checkpoint {run.out / MODEL_FILE}")
    if test is not None:
        run.log(f"test top-1 {test['top1']:.2f}% (top-5 {test['top5']:.2f}%): epoch {state.best_epoch}, chosen on the "
                "held-out validation split, read once on the test split")
    return result


def _test_once(run: _Run) -> dict[str, float] | None:
    """With a held-out validation split, the test split read once with the weights of the epoch chosen on it.

    The weights come from ``best.safetensors`` (written when that epoch was saved), so a resumed run
    reads the same ones; the deployable's own weights (the last epoch's) are put back afterwards.
    """
    if run.data.test is None:
        return None
    deployed = run.method.deployable()
    last = {name: tensor.detach().clone() for name, tensor in deployed.state_dict().items()}
    deployed.load_state_dict(read_weights(run.out / BEST_FILE), strict=True)
    try:
        return evaluate(deployed, run.data.test, run.autocast, run.dist)
    finally:
        deployed.load_state_dict(last, strict=True)


__all__ = ["COMPILE_MODES", "EpochStats", "FitResult", "TrainConfig", "amp_dtype", "evaluate", "fit", "lr_factor",
           "resolve_device", "save_epoch", "seed_everything", "train_one_epoch", "write_metrics"]
