"""The training loop: plain functions, readable top to bottom, the same for every method.

``fit`` trains a ``Method`` (teacher training, KD, SimKD, ATSC...) and never branches on which one it
is: the method computes the loss and says what is deployed; the loop schedules the learning rate,
steps the optimizer, evaluates the deployable module each epoch and writes checkpoints atomically.
Per-step numbers stay on the device and are read every ``log_every`` steps, because reading them
every step would force a host sync that stalls a GPU.
"""

from __future__ import annotations

import math
import os
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from compress.artifacts import check_folder_free, ensure_writable_dir, folder_lock, sha256_file, write_json
from compress.checkpoint import flatten_state, load_self_described, save_tensors, unflatten_state
from compress.data import DataBundle
from compress.deployable import save_deployable
from compress.distill.base import Method
from compress.errors import CheckpointError, ConfigError, TrainingDiverged
from compress.parallel import DistContext
from compress.step import make_optimizer, step_forward, train_step

STATE_FILE = "state.safetensors"  # everything needed to resume (method, optimizer, RNG, history)
MODEL_FILE = "model.safetensors"  # the deployable module after the last completed epoch
BEST_FILE = "best.safetensors"  # the deployable module at its best validation top-1
METRICS_FILE = "metrics.jsonl"  # one JSON object per epoch


COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune")


@dataclass
class TrainConfig:
    epochs: int = 10
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    schedule: str = "cosine"  # cosine | multistep | constant
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    warmup_epochs: float = 0.0
    seed: int = 0
    deterministic: bool = False
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: str = "auto"  # auto (bf16 on GPU, off on CPU) | bf16 | off
    channels_last: bool | None = None  # default: on for GPU
    log_every: int = 50
    compile: str = "off"  # off | default | reduce-overhead (adds CUDA graphs) | max-autotune: torch.compile the step
    strict: bool = False  # stop when the method reports a health warning (e.g. teacher collapse)

    def validate(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"epochs must be at least 1, got {self.epochs}")
        if not self.lr > 0 or not math.isfinite(self.lr):
            raise ConfigError(f"learning rate must be a positive number, got {self.lr}")
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"momentum must be in [0, 1), got {self.momentum}")
        if self.weight_decay < 0:
            raise ConfigError(f"weight decay must be >= 0, got {self.weight_decay}")
        if self.schedule not in ("cosine", "multistep", "constant"):
            raise ConfigError(f"schedule must be cosine, multistep or constant, got '{self.schedule}'")
        if self.schedule == "multistep" and not self.milestones:
            raise ConfigError("schedule multistep needs milestones (epochs), e.g. --milestones 150,180,210")
        if any(m < 1 for m in self.milestones):
            raise ConfigError(f"milestones must be positive epochs, got {list(self.milestones)}")
        if self.warmup_epochs < 0 or self.warmup_epochs >= self.epochs:
            raise ConfigError(f"warm-up must be >= 0 and shorter than training ({self.epochs} epochs), got {self.warmup_epochs}")
        if self.amp not in ("auto", "bf16", "off"):
            raise ConfigError(f"amp must be auto, bf16 or off, got '{self.amp}'")
        if self.compile not in COMPILE_MODES:
            raise ConfigError(f"compile must be one of {', '.join(COMPILE_MODES)}, got '{self.compile}'")
        if self.log_every < 1:
            raise ConfigError(f"log-every must be at least 1, got {self.log_every}")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["milestones"] = list(self.milestones)
        return data


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


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        from compress.errors import DeviceError

        raise DeviceError(f"device '{name}' requested but no CUDA GPU is available: use --device cpu")
    return device


def amp_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    if cfg.amp == "off" or (cfg.amp == "auto" and device.type != "cuda"):
        return None
    return torch.bfloat16


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        # cuBLAS needs this workspace setting to be deterministic; harmless on CPU.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    elif torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True


def lr_factor(cfg: TrainConfig, epoch_progress: float) -> float:
    """Learning-rate multiplier at a fractional epoch: linear warm-up, then the schedule."""
    if cfg.warmup_epochs and epoch_progress < cfg.warmup_epochs:
        return (epoch_progress + 1e-8) / cfg.warmup_epochs
    if cfg.schedule == "cosine":
        span = max(cfg.epochs - cfg.warmup_epochs, 1e-8)
        return 0.5 * (1 + math.cos(math.pi * min((epoch_progress - cfg.warmup_epochs) / span, 1.0)))
    if cfg.schedule == "multistep":
        return cfg.gamma ** sum(epoch_progress >= m for m in cfg.milestones)
    return 1.0


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


class _Progress:
    """A tqdm bar on a terminal; nothing on a pipe (per-epoch lines are printed either way)."""

    def __init__(self, total: int, desc: str, enabled: bool) -> None:
        self.bar = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True, file=sys.stderr)

    def update(self, n: int, **postfix: str) -> None:
        if self.bar is not None:
            self.bar.update(n)
            if postfix:
                self.bar.set_postfix(postfix, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(state["cuda"]))


def save_training_state(out_dir: Path, method: Method, optimizer: torch.optim.Optimizer, epoch: int,
                        history: list[dict[str, Any]], best: tuple[float, int], meta: dict[str, Any]) -> None:
    tensors: dict[str, torch.Tensor] = {f"method.{k}": v for k, v in method.state_dict().items()}
    skeleton = {
        "optimizer": flatten_state(optimizer.state_dict(), "optim", tensors),
        "rng": flatten_state(_rng_state(), "rng", tensors),
    }
    save_tensors(out_dir / STATE_FILE, tensors, "training-state",
                 {"epoch": epoch, "history": history, "best": list(best), "skeleton": skeleton, **meta})


def load_training_state(out_dir: Path, method: Method, optimizer: torch.optim.Optimizer,
                        fingerprint: dict[str, Any]) -> tuple[int, list[dict[str, Any]], tuple[float, int]]:
    tensors, record = load_self_described(out_dir / STATE_FILE)
    for key, value in fingerprint.items():
        if record.get(key) != value:
            raise CheckpointError(
                f"cannot resume '{out_dir}': it was trained with a different {key} ({record.get(key)!r} vs {value!r}); "
                "use the original settings or another --out"
            )
    own = {k[len("method."):]: v for k, v in tensors.items() if k.startswith("method.")}
    try:
        method.load_state_dict(own, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"cannot resume '{out_dir}': saved state does not fit ({str(exc).splitlines()[0][:120]})") from None
    chosen = [(g.get("fused"), g.get("foreach")) for g in optimizer.param_groups]
    optimizer.load_state_dict(unflatten_state(record["skeleton"]["optimizer"], tensors))
    for group, (fused, foreach) in zip(optimizer.param_groups, chosen):  # this machine's kernels, not the saver's
        group["fused"], group["foreach"] = fused, foreach
    _set_rng_state(unflatten_state(record["skeleton"]["rng"], tensors))
    best = record.get("best", [-1.0, 0])
    return int(record["epoch"]), list(record["history"]), (float(best[0]), int(best[1]))


def write_metrics(out_dir: Path, history: list[dict[str, Any]]) -> None:
    import json

    from compress.artifacts import atomic_write_text

    atomic_write_text(out_dir / METRICS_FILE, "".join(json.dumps(row) + "\n" for row in history))


def fit(
    method: Method,
    data: DataBundle,
    cfg: TrainConfig,
    out_dir: str | os.PathLike[str],
    *,
    resume: bool = False,
    meta: dict[str, Any] | None = None,
    inputs: dict[str, str] | None = None,
    log: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr, flush=True),
    progress: bool = True,
    dist: DistContext | None = None,
) -> FitResult:
    """Train ``method`` for ``cfg.epochs`` epochs; checkpoints and metrics go to ``out_dir``.

    ``meta`` (model, data, method settings) is recorded in every sidecar; ``inputs`` maps input names
    (e.g. teacher checkpoints) to their SHA-256. With ``resume`` training continues from the last
    completed epoch in ``out_dir/state.safetensors``.
    """
    cfg.validate()
    dist = dist or DistContext.single()
    if not dist.is_main:  # metrics are reduced over ranks: rank 0's lines speak for all
        log = lambda msg: None  # noqa: E731
    if isinstance(getattr(data.train, "batch_size", None), int):  # TensorLoader: the global batch
        dist.check_batch(data.train.batch_size)  # before anything is written
    out = Path(out_dir)
    if dist.is_main:
        check_folder_free(out)  # "in use" says more than whatever the half-written folder looks like
    state_exists = (out / STATE_FILE).exists()
    if resume and not state_exists:
        raise ConfigError(f"nothing to resume in '{out}' (no {STATE_FILE}): drop --resume to start a new run")
    if not resume and state_exists:
        raise ConfigError(f"'{out}' already holds a training run: pass --resume to continue it, or choose another --out")
    if not dist.is_main:
        return _train(method, data, cfg, out, resume, meta, inputs, log, progress, dist)
    ensure_writable_dir(out)
    with folder_lock(out):  # a second run into the same folder fails here instead of corrupting this one
        return _train(method, data, cfg, out, resume, meta, inputs, log, progress, dist)


def _train(method: Method, data: DataBundle, cfg: TrainConfig, out: Path, resume: bool, meta: dict[str, Any] | None,
           inputs: dict[str, str] | None, log: Callable[[str], None], progress: bool, dist: DistContext) -> FitResult:
    """The loop itself, once ``fit`` has checked its inputs and holds the output folder."""
    seed_everything(cfg.seed, cfg.deterministic)  # the same on every rank; DDP keeps the weights in sync
    device = next(method.parameters()).device
    autocast = amp_dtype(cfg, device)
    meta = dict(meta or {})
    fingerprint = {"fingerprint": {k: meta.get(k) for k in ("model", "method", "teachers", "data") if k in meta}}
    train_module = dist.wrap(method)  # before the optimizer: SyncBatchNorm conversion replaces BN modules
    forward = step_forward(train_module, cfg.compile)  # DDP first, then compile: DDP's graph splits apply
    optimizer = make_optimizer(method, cfg)
    start_epoch, history, (best_top1, best_epoch) = 0, [], (-1.0, 0)
    if resume:
        start_epoch, history, (best_top1, best_epoch) = load_training_state(out, method, optimizer, fingerprint)
        if start_epoch >= cfg.epochs:
            raise ConfigError(f"'{out}' already finished {start_epoch} epochs; raise --epochs to train longer")
        log(f"resuming from epoch {start_epoch} (best top-1 {best_top1:.2f}% at epoch {best_epoch})")
    train_batches = data.train_for(method.uses_unlabeled)  # labelled batches only, for a labels-only method
    steps_per_epoch = len(train_batches)
    if steps_per_epoch == 0:
        raise ConfigError(f"the training split has {data.train.num_samples} images, fewer than one batch: lower --batch-size")
    deploy_module = method.deployable()
    record_meta = {**meta, "train_config": cfg.to_dict()}
    started = time.perf_counter()
    images_seen, train_seconds = 0, 0.0
    last_eval: dict[str, float] = {}
    for epoch in range(start_epoch, cfg.epochs):
        train_batches.set_epoch(epoch)
        method.train()
        sums = torch.zeros(4, device=device, dtype=torch.float64)  # loss sum, images, correct, labelled images
        window_start, last_logged = time.perf_counter(), 0
        bar = _Progress(steps_per_epoch, f"epoch {epoch + 1}/{cfg.epochs}", progress and dist.is_main)
        epoch_start = time.perf_counter()
        parts_sum: dict[str, torch.Tensor] = {}
        for step, (images, labels) in enumerate(train_batches):
            lr = cfg.lr * lr_factor(cfg, epoch + step / steps_per_epoch)
            output = train_step(method, optimizer, images, labels, lr, autocast, forward)
            loss = output.loss.detach().float()
            known = labels >= 0  # train accuracy over the labelled images (all, unless the data is partly labelled)
            sums += torch.stack([loss * len(labels), torch.tensor(len(labels), device=device),
                                 ((output.logits.detach().argmax(1) == labels) & known).sum(), known.sum()]).to(torch.float64)
            for name, value in output.parts.items():
                parts_sum[name] = parts_sum.get(name, 0) + value.detach().float()
            # CPU: checking every step is free. GPU: only at log points, to avoid a sync per step.
            if device.type == "cpu" or (step + 1) % cfg.log_every == 0 or step + 1 == steps_per_epoch:
                if not torch.isfinite(loss):
                    parts = {k: float(v.detach()) for k, v in output.parts.items()}
                    good = out / MODEL_FILE
                    raise TrainingDiverged(
                        f"loss became {float(loss)} at epoch {epoch + 1} step {step + 1} (parts {parts}); "
                        f"last good checkpoint: {good if good.exists() else 'none yet'}; lower --lr or check the data"
                    )
                if (step + 1) % cfg.log_every == 0 or step + 1 == steps_per_epoch:
                    loss_sum, count, correct, labeled = sums.tolist()
                    rate = (step + 1 - last_logged) * data.train.num_samples / steps_per_epoch / max(
                        time.perf_counter() - window_start, 1e-9)
                    bar.update(step + 1 - last_logged, loss=f"{loss_sum / count:.3f}", acc=f"{100 * correct / max(labeled, 1):.1f}",
                               img_s=f"{rate:.0f}")
                    window_start, last_logged = time.perf_counter(), step + 1
        bar.close()
        dist.all_reduce_sum(sums)
        for value in parts_sum.values():  # per-rank means -> the mean over ranks (equal slices)
            dist.all_reduce_sum(value)
            value /= dist.world_size
        epoch_seconds = time.perf_counter() - epoch_start
        loss_sum, count, correct, labeled = sums.tolist()
        images_seen += int(count)
        train_seconds += epoch_seconds
        last_eval = evaluate(deploy_module, data.val, autocast, dist)
        extra = method.epoch_metrics(data.val)
        row: dict[str, Any] = {
            "epoch": epoch + 1, "lr": lr, "train_loss": loss_sum / count, "train_top1": 100 * correct / max(labeled, 1),
            "val_top1": last_eval["top1"], "val_top5": last_eval["top5"], "val_loss": last_eval["loss"],
            "images_per_s": count / epoch_seconds, "epoch_seconds": epoch_seconds,
            **{f"loss_{k}": float(v) / steps_per_epoch for k, v in parts_sum.items()}, **extra,
        }
        history.append(row)
        improved = last_eval["top1"] > best_top1
        if improved:
            best_top1, best_epoch = last_eval["top1"], epoch + 1
        if dist.is_main:
            metrics = {"top1": last_eval["top1"], "top5": last_eval["top5"], "best_top1": best_top1,
                       "best_epoch": best_epoch}
            side = {**record_meta, "epoch": epoch + 1, "metrics": metrics}
            # Order matters for crash safety: the deployable files first, the resume state last, so a
            # state file never points past checkpoints that were not written.
            if improved:
                save_deployable(out / BEST_FILE, deploy_module, data.preprocessing, side, inputs)
            save_deployable(out / MODEL_FILE, deploy_module, data.preprocessing, side, inputs)
            for stem, module in method.extra_checkpoints().items():
                save_deployable(out / f"{stem}.safetensors", module, data.preprocessing, {**side, "role": stem}, inputs)
            write_metrics(out, history)
            save_training_state(out, method, optimizer, epoch + 1, history, (best_top1, best_epoch),
                                {**fingerprint, "train_config": cfg.to_dict()})
        warnings = method.health(extra)
        extras = " ".join(f"{k} {v:.4g}" for k, v in extra.items())
        log(f"epoch {epoch + 1}/{cfg.epochs}  loss {row['train_loss']:.4f}  train {row['train_top1']:.2f}%  "
            f"val top-1 {row['val_top1']:.2f}%  top-5 {row['val_top5']:.2f}%  {row['images_per_s']:.0f} img/s"
            + (f"  {extras}" if extras else ""))
        dist.barrier()
        for warning in warnings:
            log(f"warning: {warning}")
        if warnings and cfg.strict:
            raise TrainingDiverged(f"stopped by --strict after epoch {epoch + 1}: {warnings[0]}")
    wall = time.perf_counter() - started
    result = FitResult(best_top1, best_epoch, last_eval.get("top1", history[-1]["val_top1"]),
                       last_eval.get("top5", history[-1]["val_top5"]), history, out,
                       images_seen / train_seconds if train_seconds else 0.0, wall)
    if dist.is_main:
        write_json(out / "summary.json", {
            "best_top1": best_top1, "best_epoch": best_epoch, "last_top1": result.last_top1,
            "last_top5": result.last_top5, "epochs": cfg.epochs, "train_images_per_s": result.images_per_s,
            "wall_seconds": wall, "model_sha256": sha256_file(out / MODEL_FILE), **record_meta,
        })
    log(f"done: last top-1 {result.last_top1:.2f}%, best {best_top1:.2f}% (epoch {best_epoch}); "
        f"checkpoint {out / MODEL_FILE}")
    return result
