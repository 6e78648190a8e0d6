"""What each CLI command / pipeline stage does, as plain library calls: check inputs, build, train.

Every check that can fail on user input runs before anything is written, so a mistake leaves the
output folder as it was.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from compress.artifacts import sha256_file
from compress.data import DataBundle, DataConfig, load_data
from compress.distill.base import Supervised
from compress.errors import ConfigError
from compress.models import MODELS, build_model, make_spec
from compress.models.weights import load_weights
from compress.parallel import DistContext
from compress.train import FitResult, TrainConfig, fit, resolve_device


def check_output_path(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output path '{out}' is a file, not a folder: pass a folder path to --out")
    parent = next((p for p in [out, *out.parents] if p.exists()), None)
    import os

    if parent is not None and not os.access(parent, os.W_OK):
        raise ConfigError(f"cannot write to '{out}' ('{parent}' is not writable): choose another --out")


def data_record(cfg: DataConfig) -> dict[str, Any]:
    """What a later stage needs to reload the same data (recorded in sidecars)."""
    return {"name": cfg.name, "data_dir": cfg.data_dir, "train_limit": cfg.train_limit, "val_limit": cfg.val_limit,
            "image_size": cfg.image_size}


def prepare(data_cfg: DataConfig, train_cfg: TrainConfig, out: Path,
            dist: DistContext | None = None) -> tuple[torch.device, DataBundle]:
    train_cfg.validate()
    data_cfg.validate()
    check_output_path(out)
    dist = dist or DistContext.single()
    device = resolve_device(dist.device(train_cfg.device))
    channels_last = train_cfg.channels_last if train_cfg.channels_last is not None else device.type == "cuda"
    train_cfg.channels_last = channels_last
    data = load_data(data_cfg, device=device, channels_last=channels_last, rank=dist.rank, world_size=dist.world_size)
    return device, data


def train_teacher_run(model_name: str, data_cfg: DataConfig, train_cfg: TrainConfig, out: Path, *,
                      init: str | None = None, label_smoothing: float = 0.0, resume: bool = False,
                      progress: bool = True, dist: DistContext | None = None) -> FitResult:
    MODELS.canonical(model_name)  # unknown names fail before any data is read
    if not 0 <= label_smoothing < 1:
        raise ConfigError(f"label smoothing must be in [0, 1), got {label_smoothing}")
    device, data = prepare(data_cfg, train_cfg, out, dist)
    spec = make_spec(model_name, data.num_classes, data.preprocessing.channels, data.image_size)
    model = build_model(spec)
    inputs: dict[str, str] = {}
    if init:
        source = load_weights(model, init, allow_new_head=True)
        if Path(init).exists():
            inputs[init] = sha256_file(init)
        else:
            inputs[init] = source
    model = model.to(device)
    if train_cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    meta = {"role": "teacher", "model": spec.to_dict(), "data": data_record(data_cfg),
            "method": {"name": "none", "label_smoothing": label_smoothing}}
    return fit(Supervised(model, label_smoothing), data, train_cfg, out, resume=resume, meta=meta, inputs=inputs,
               progress=progress, dist=dist)


__all__ = ["train_teacher_run", "prepare", "data_record", "check_output_path", "asdict"]
