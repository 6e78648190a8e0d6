"""Training settings (``TrainConfig``) and what they decide: device, mixed precision, seeds, the schedule."""

from __future__ import annotations

import math
import os
import random
import re
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from compress.bounds import MAX_EPOCHS, MAX_LR, MAX_SAVE_EVERY_S, MAX_SEED, check_range, shown, within
from compress.errors import ConfigError, DeviceError

if TYPE_CHECKING:  # the config is read without torch (the command line, recipes); the functions below load it
    import torch

COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune")
MAX_LOG_EVERY = 1_000_000  # steps between log lines


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
    # seconds of an epoch between resume states saved in its middle (only epochs longer than this get one);
    # 0: only at the end of each epoch
    save_every_s: float = 300.0
    compile: str = "off"  # off | default | reduce-overhead (adds CUDA graphs) | max-autotune: torch.compile the step
    strict: bool = False  # stop when the method reports a health warning (e.g. teacher collapse)

    def validate(self) -> None:
        check_range("epochs", self.epochs, 1, MAX_EPOCHS)
        if not within(self.lr, 0, MAX_LR, above=True):
            raise ConfigError(f"learning rate must be a positive number up to {MAX_LR:g}, got {shown(self.lr)}")
        check_range("momentum", self.momentum, 0, 1, below=True)
        check_range("weight decay", self.weight_decay, 0, 1)
        check_range("gamma (the multistep lr factor)", self.gamma, 0, 1, above=True)
        if self.schedule not in ("cosine", "multistep", "constant"):
            raise ConfigError(f"schedule must be cosine, multistep or constant, got '{self.schedule}'")
        if self.schedule == "multistep" and not self.milestones:
            raise ConfigError("schedule multistep needs milestones (epochs), e.g. --milestones 150,180,210")
        if not all(within(m, 1, MAX_EPOCHS) for m in self.milestones):
            raise ConfigError(f"milestones must be epochs from 1 to {MAX_EPOCHS}, got {shown(list(self.milestones))}")
        if not within(self.warmup_epochs, 0, self.epochs, below=True):
            raise ConfigError(f"warm-up must be >= 0 and shorter than training ({self.epochs} epochs), "
                              f"got {shown(self.warmup_epochs)}")
        check_range("seed", self.seed, 0, MAX_SEED)
        if self.amp not in ("auto", "bf16", "off"):
            raise ConfigError(f"amp must be auto, bf16 or off, got '{self.amp}'")
        if self.compile not in COMPILE_MODES:
            raise ConfigError(f"compile must be one of {', '.join(COMPILE_MODES)}, got '{self.compile}'")
        check_range("log-every", self.log_every, 1, MAX_LOG_EVERY)
        check_range("save-every (seconds)", self.save_every_s, 0, MAX_SAVE_EVERY_S)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["milestones"] = list(self.milestones)
        return data


_DEVICE_NAME = re.compile(r"auto|cpu|mps|cuda(:[0-9]{1,3})?")


def resolve_device(name: str) -> torch.device:
    import torch

    if not isinstance(name, str) or not _DEVICE_NAME.fullmatch(name):  # torch.device would raise a RuntimeError
        raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, got {str(name)[:60]!r}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"device '{name}' requested but no CUDA GPU is available: use --device cpu")
    return device


def amp_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    """The autocast dtype: bf16 when asked for (GPU or CPU) or on a GPU by default; None for fp32."""
    if cfg.amp == "off" or (cfg.amp == "auto" and device.type != "cuda"):
        return None
    import torch

    return torch.bfloat16


def cpu_bf16_native() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX512-BF16 or AMX tiles). ``amp: bf16`` runs on any
    CPU, but without these oneDNN emulates it and the step is slower than fp32."""
    import torch

    checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(check() for check in checks if check is not None)


def seed_everything(seed: int, deterministic: bool) -> None:
    import numpy as np
    import torch

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
