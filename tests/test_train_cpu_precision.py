"""CPU training in bf16 autocast (``amp: bf16``) and channels_last: the step runs, its loss is finite and
close to the fp32 NCHW step's from the same weights and batch, and a short fit trains and evaluates with it.
These are the options a 224 px CPU run may turn on (benchmarks/train_224.py measures what they are worth)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from compress.data import DataConfig, load_data
from compress.distill import DistillConfig, build_method
from compress.models import create_model
from compress.step import make_optimizer, train_step
from compress.train import TrainConfig, amp_dtype, fit
from compress.train_config import cpu_bf16_native

CPU = torch.device("cpu")


def _method(name: str, classes: int = 3) -> torch.nn.Module:
    """The 224 px story's models (ImageNet stems) at 32 px, from seed 0."""
    torch.manual_seed(0)
    student = create_model("mobilenet_v2", classes, 3, 32, small_input=False)
    teacher = create_model("resnet18", classes, 3, 32, small_input=False)
    return build_method(DistillConfig(method=name), student, [teacher], 32).train()


def _losses(name: str, cfg: TrainConfig, steps: int = 3) -> list[float]:
    """The loss of each of ``steps`` steps from the same weights on the same batch."""
    method = _method(name)
    g = torch.Generator().manual_seed(1)
    images, labels = torch.randn(16, 3, 32, 32, generator=g), torch.randint(0, 3, (16,), generator=g)
    if cfg.channels_last:
        method = method.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    optimizer = make_optimizer(method, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return [float(train_step(method, optimizer, images, labels, cfg.lr, amp_dtype(cfg, CPU)).loss.detach())
            for _ in range(steps)]


def test_amp_bf16_autocasts_on_the_cpu_and_auto_stays_fp32() -> None:
    assert amp_dtype(TrainConfig(amp="bf16"), CPU) is torch.bfloat16
    assert amp_dtype(TrainConfig(amp="auto"), CPU) is None and amp_dtype(TrainConfig(amp="off"), CPU) is None


def test_cpu_bf16_native_follows_the_cpu_flags() -> None:
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        pytest.skip("no /proc/cpuinfo to compare with")
    flags = next(line for line in cpuinfo.read_text().splitlines() if line.startswith("flags")).split()
    assert cpu_bf16_native() == bool({"avx512_bf16", "amx_tile"} & set(flags))


@pytest.mark.parametrize("name", ["kd", "atsc"])
def test_a_bf16_cpu_step_is_finite_and_close_to_fp32(name: str) -> None:
    fp32, bf16 = _losses(name, TrainConfig(amp="off")), _losses(name, TrainConfig(amp="bf16"))
    assert all(math.isfinite(loss) for loss in bf16)
    # From the same weights: bf16 keeps 8 bits of mantissa, ~0.4 % per rounding, a few percent through a
    # network (measured ~1 % here). The later steps are not compared: from random weights on one batch of
    # noise, fp32 itself moves its update a lot for an input change of 1e-3.
    assert bf16[0] == pytest.approx(fp32[0], rel=0.05) and bf16[0] != fp32[0]  # close, and computed in bf16


@pytest.mark.parametrize("name", ["kd", "atsc"])
def test_a_channels_last_cpu_step_matches_nchw(name: str) -> None:
    nchw = _losses(name, TrainConfig(channels_last=False))
    assert _losses(name, TrainConfig(channels_last=True))[0] == pytest.approx(nchw[0], rel=1e-5)


def test_a_short_cpu_fit_trains_and_evaluates_in_bf16_channels_last(tmp_path: Path) -> None:
    data = load_data(DataConfig(name="synthetic", image_size=32, synthetic_size=(64, 32), batch_size=16, workers=0),
                     channels_last=True)
    method = _method("kd", data.num_classes).to(memory_format=torch.channels_last)
    cfg = TrainConfig(epochs=1, lr=0.05, amp="bf16", channels_last=True, device="cpu")
    result = fit(method, data, cfg, tmp_path / "run", log=lambda _: None, progress=False)
    row = result.history[0]
    assert math.isfinite(row["train_loss"]) and math.isfinite(row["val_loss"]) and 0 <= result.last_top1 <= 100
    assert (tmp_path / "run" / "model.safetensors").is_file()
