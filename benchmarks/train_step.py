"""Training-step throughput of distillation: ATSC reference semantics vs the project default.

Compute only: one synthetic batch already on the device is reused every step, so the number is the
step's cost (forward, backward, method hooks, optimizer), not the input pipeline's. The step is
the loop's own ``compress.step.train_step`` with ``fit``'s settings (``amp_dtype``, ``make_optimizer``,
``step_forward``), so it measures the real step.
With ``--end-to-end`` the "default" rows also time one epoch through the real ``TensorLoader``
(uint8 images on the device, pad-crop + flip on the device) next to the compute-only number.

Modes (per configuration):
  reference     ATSC, the authors' semantics: second teacher pass + separate bias SGD, autograd
                anchor; fp32, NCHW.
  default       ATSC, the project default (fast path, guards): bf16 autocast + channels_last on GPU
                (on CPU the project default is fp32 NCHW, so there only the algorithm differs).
  simkd         SimKD (teacher frozen), project precision: the cost floor for shared-classifier KD.
  teacher-only  the (first) teacher trained alone with cross-entropy, project precision.
  default-compile  "default" with the step's forward + backward under torch.compile (Inductor).
  default-graphs   "default" with torch.compile mode reduce-overhead: the step replayed as CUDA graphs
                (GPU; for the small, launch-bound models). Warm-up steps include the compilation,
                whose time is recorded as warmup_s.
  kd            Hinton KD (teachers frozen), project precision: the step ATSC's cost is held to (issue 21).
  atsc-*        the project default with one adaptation setting changed (``ATSC_VARIANTS``): frozen
                teacher, BN statistics only, a teacher step every 2nd/4th step, only the last 3 blocks,
                no feedback (the control).

With ``--rounds R`` (R > 1) the modes of a configuration are built and warmed up together, then timed
in R interleaved rounds (each round times every mode for --steps steps, the order reversed every other
round), so a drift of the machine's load hits every mode alike. Each row then reports the median over
the rounds, and the record adds each mode's step cost relative to KD's (the per-round ratio of images/s,
median over rounds). Use --steps as a multiple of every teacher_every measured.

The cost of adapting the teacher, against KD, at the main job's shapes (one thread, interleaved):
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/train_step.py --configs resnet20-resnet8-28 --threads 1 \
        --modes kd simkd atsc-published atsc-frozen atsc-bn atsc-every2 atsc-every4 atsc-last3 atsc-every4-last3 \
        atsc-control atsc-control-every2 atsc-control-every4 --warmup 4 --steps 16 --rounds 7 \
        --out benchmarks/results --tag cpu-adapt-cost
GPU, full size (one call of a few minutes):
    .venv/bin/python benchmarks/train_step.py --end-to-end --out benchmarks/results --tag gpu
CPU, small shapes (1-2 minutes on 2 cores):
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/train_step.py --small --end-to-end --threads 1 \
        --out benchmarks/results --tag cpu
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from compress.artifacts import environment  # noqa: E402
from compress.data import augment_for  # noqa: E402
from compress.data.loaders import TensorLoader  # noqa: E402
from compress.data.preprocessing import Preprocessing  # noqa: E402
from compress.distill import DistillConfig, build_method  # noqa: E402
from compress.distill.base import Method, Supervised  # noqa: E402
from compress.models import ClassifierModel, create_model  # noqa: E402
from compress.step import StepForward, make_optimizer, step_forward, train_step  # noqa: E402
from compress.train import TrainConfig, amp_dtype, seed_everything  # noqa: E402


@dataclass(frozen=True)
class BenchConfig:
    teachers: tuple[str, ...]
    student: str
    image: int
    batch: int
    classes: int
    channels: int
    small_image: int  # --small shapes: same architectures, smaller inputs and batch
    small_batch: int
    note: str


CONFIGS: dict[str, BenchConfig] = {
    "resnet50-mobilenet_v2-224": BenchConfig(("resnet50",), "mobilenet_v2", 224, 128, 1000, 3, 32, 32,
                                             "ImageNet shapes (ATSC.md 'Numbers to know')"),
    "resnet32x4-resnet8x4-32": BenchConfig(("resnet32x4",), "resnet8x4", 32, 256, 10, 1, 16, 16,
                                           "Fashion-MNIST shapes (1 channel padded to 32 px)"),
    "two-teachers-32": BenchConfig(("resnet32x4", "wrn_40_2"), "resnet8x4", 32, 256, 100, 3, 16, 16,
                                   "CIFAR-100 shapes, two teachers (one projector and head each)"),
    "resnet20-resnet8-28": BenchConfig(("resnet20",), "resnet8", 28, 128, 10, 1, 28, 128,
                                       "the main job's shapes (Fashion-MNIST, shipped resnet20 teacher, batch 128)"),
}
# ATSC's adaptation variants (issue 21: what adapting costs), each spelled out so that its meaning does not
# follow the project default ("default" is that: the teacher learns from its own labels, every 4th step).
ATSC_VARIANTS: dict[str, dict[str, Any]] = {
    "atsc-published": {"teacher_feedback": True, "teacher_every": 1},  # the student's features reach the teacher
    "atsc-frozen": {"teacher_adapt": "none"},  # the frozen-teacher shared-classifier arm
    "atsc-bn": {"teacher_adapt": "bn"},  # only the teacher's BN statistics adapt (AdaBN)
    "atsc-every2": {"teacher_feedback": True, "teacher_every": 2},
    "atsc-every4": {"teacher_feedback": True, "teacher_every": 4},
    "atsc-last3": {"teacher_feedback": True, "teacher_every": 1, "adapt_last": 3},
    "atsc-every4-last3": {"teacher_feedback": True, "teacher_every": 4, "adapt_last": 3},
    "atsc-control": {"teacher_feedback": False, "teacher_every": 1},  # the teacher trains on its own CE only
    "atsc-control-every2": {"teacher_feedback": False, "teacher_every": 2},
    "atsc-control-every4": {"teacher_feedback": False, "teacher_every": 4},  # the project default since issue 21
}
MODES = ("reference", "default", "simkd", "teacher-only", "default-compile", "default-graphs", "kd",
         *ATSC_VARIANTS)
DEFAULT_MODES = MODES[:4]  # the compiled modes are asked for by name (compilation takes minutes on a CPU)
FAST_MODES = ("default", "default-compile", "default-graphs")  # compared with "reference"
COMPILE = {"default-compile": "default", "default-graphs": "reduce-overhead"}


def build(config: BenchConfig, mode: str, image: int, device: torch.device) -> tuple[Method, TrainConfig]:
    """The method and train settings of ``mode``, as ``compress distill`` would build them."""
    def model(name: str) -> ClassifierModel:
        # small_input=False: torchvision models keep their ImageNet stems under --small's tiny inputs (the
        # architecture measured stays the full-size one); CIFAR-style models are small-input regardless.
        return create_model(name, config.classes, config.channels, image, small_input=False)

    seed_everything(0, deterministic=False)
    teachers = [model(name).to(device) for name in config.teachers]
    if mode == "reference":
        cfg = TrainConfig(amp="off", channels_last=False)
        method: Method = build_method(DistillConfig(method="atsc", reference=True), model(config.student).to(device),
                                      teachers, image)
    elif mode in FAST_MODES:
        cfg = TrainConfig(compile=COMPILE.get(mode, "off"))
        method = build_method(DistillConfig(method="atsc"), model(config.student).to(device), teachers, image)
    elif mode in ATSC_VARIANTS:
        cfg = TrainConfig()
        method = build_method(DistillConfig(method="atsc", **ATSC_VARIANTS[mode]), model(config.student).to(device),
                              teachers, image)
    elif mode in ("simkd", "kd"):
        cfg = TrainConfig()
        method = build_method(DistillConfig(method=mode), model(config.student).to(device), teachers, image)
    elif mode == "teacher-only":
        cfg = TrainConfig()
        method = Supervised(teachers[0])
    else:
        raise ValueError(f"unknown mode {mode!r}; choose from {', '.join(MODES)}")
    if cfg.channels_last is None:  # the project default (workflows.prepare): channels_last on GPU
        cfg.channels_last = device.type == "cuda"
    method = method.to(device)
    if cfg.channels_last:
        method = method.to(memory_format=torch.channels_last)
    return method, cfg


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:  # Linux: "5" resets the process's peak resident set size (VmHWM)
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def current_memory_mb(device: torch.device) -> float:
    """Memory held before the timed steps (weights, optimizer state; on CPU the whole process)."""
    if device.type == "cuda":
        return torch.cuda.memory_allocated(device) / 2**20
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def peak_memory_mb(device: torch.device) -> tuple[float, str]:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda max_memory_allocated"
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024, "process peak RSS (VmHWM, reset per row)"
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "process peak RSS (whole run)"


def time_steps(method: Method, optimizer: torch.optim.Optimizer, images: torch.Tensor, labels: torch.Tensor,
               lr: float, autocast: torch.dtype | None, steps: int,
               forward: StepForward | None = None) -> tuple[float, list[float]]:
    """Wall seconds for ``steps`` steps and each step's milliseconds (CUDA events on GPU: no per-step sync)."""
    device = images.device
    sync(device)
    if device.type == "cuda":
        events = [torch.cuda.Event(enable_timing=True) for _ in range(steps + 1)]
        start = time.perf_counter()
        events[0].record()
        for i in range(steps):
            train_step(method, optimizer, images, labels, lr, autocast, forward)
            events[i + 1].record()
        sync(device)
        wall = time.perf_counter() - start
        return wall, [events[i].elapsed_time(events[i + 1]) for i in range(steps)]
    marks = [time.perf_counter()]
    for _ in range(steps):
        train_step(method, optimizer, images, labels, lr, autocast, forward)
        marks.append(time.perf_counter())
    return marks[-1] - marks[0], [1000 * (b - a) for a, b in zip(marks, marks[1:])]


def time_epochs(loader: Any, method: Method, optimizer: torch.optim.Optimizer, cfg: TrainConfig,
                autocast: torch.dtype | None, device: torch.device, forward: StepForward | None,
                images: int) -> dict[str, float]:
    """images/s of an epoch of the loader alone (the second one: workers started), then of a training epoch."""
    rates = []
    for epoch in range(2):
        loader.set_epoch(epoch)
        sync(device)
        start = time.perf_counter()
        for x, _ in loader:  # output consumed, so nothing is skipped
            x.sum()
        sync(device)
        rates.append(images / (time.perf_counter() - start))
    loader.set_epoch(2)
    sync(device)
    start = time.perf_counter()
    for x, y in loader:
        train_step(method, optimizer, x, y, cfg.lr, autocast, forward)
    sync(device)
    return {"loader_images_per_s": rates[-1], "e2e_images_per_s": images / (time.perf_counter() - start)}


def end_to_end(method: Method, optimizer: torch.optim.Optimizer, config: BenchConfig, image: int, batch: int,
               steps: int, cfg: TrainConfig, autocast: torch.dtype | None, device: torch.device,
               forward: StepForward | None = None) -> dict[str, float]:
    """One epoch of ``steps`` batches from the real TensorLoader (uint8 on the device, device-side augmentation)."""
    g = torch.Generator().manual_seed(0)
    n = steps * batch
    pixels = torch.randint(0, 256, (n, config.channels, image, image), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, config.classes, (n,), generator=g)
    pre = Preprocessing((0.5,) * config.channels, (0.25,) * config.channels, image, config.channels, config.channels)
    loader = TensorLoader(pixels, labels, batch, pre, shuffle=True, augment=augment_for(image), drop_last=True,
                          device=device, channels_last=bool(cfg.channels_last))
    return time_epochs(loader, method, optimizer, cfg, autocast, device, forward, n)


def jpeg_folder(root: Path, classes: int, train_images: int, size: tuple[int, int] = (469, 387)) -> Path:
    """An ImageNet-like folder of JPEGs, ``train_images`` spread over ``classes`` class folders and one
    validation image per class (ImageFolder needs every class). Pictures are smooth shapes plus grain, so
    they compress about like photographs (bytes per pixel), which is what sets the decoding cost."""
    import numpy as np
    from PIL import Image

    import io

    rng = np.random.default_rng(0)
    encoded = []  # 64 distinct pictures, written round-robin: making thousands would take a minute
    for _ in range(64):
        smooth = np.asarray(Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize(size, Image.BICUBIC))
        grain = rng.normal(0, 12, smooth.shape)
        buffer = io.BytesIO()
        Image.fromarray(np.clip(smooth + grain, 0, 255).astype(np.uint8)).save(buffer, format="JPEG", quality=90)
        encoded.append(buffer.getvalue())
    for split, count in (("train", max(train_images, classes)), ("val", classes)):
        for i in range(count):
            folder = root / split / f"c{i % classes:04d}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{i}.jpg").write_bytes(encoded[i % len(encoded)])
    return root


def imagefolder_end_to_end(method: Method, optimizer: torch.optim.Optimizer, config: BenchConfig, image: int,
                           batch: int, steps: int, cfg: TrainConfig, autocast: torch.dtype | None, device: torch.device,
                           forward: StepForward | None, workers: int, folder: Path) -> dict[str, float]:
    """The same epoch timing through the ImageFolder pipeline (JPEG decode, random-resized crop and flip in
    ``workers`` DataLoader workers, pinned uint8 batches, normalisation on the device)."""
    from compress.data import DataConfig, load_data

    data = load_data(DataConfig(name="imagefolder", data_dir=str(folder), image_size=image, channels=config.channels,
                                batch_size=batch, workers=workers), device=device, channels_last=bool(cfg.channels_last))
    timed = time_epochs(data.train, method, optimizer, cfg, autocast, device, forward, len(data.train) * batch)
    return {f"imagefolder_{k}": v for k, v in timed.items()} | {"imagefolder_workers": workers}


@dataclass
class Prepared:
    """One mode built, with its optimizer and synthetic batch, warmed up and ready to time."""

    mode: str
    method: Method
    cfg: TrainConfig
    optimizer: torch.optim.Optimizer
    autocast: torch.dtype | None
    images: torch.Tensor
    labels: torch.Tensor
    forward: StepForward | None
    warmup_s: float

    def time(self, steps: int) -> tuple[float, list[float]]:
        return time_steps(self.method, self.optimizer, self.images, self.labels, self.cfg.lr, self.autocast, steps,
                          self.forward)


def prepare(config: BenchConfig, mode: str, image: int, batch: int, warmup: int, device: torch.device) -> Prepared:
    method, cfg = build(config, mode, image, device)
    method.train()
    autocast = amp_dtype(cfg, device)
    optimizer = make_optimizer(method, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                               nesterov=cfg.nesterov)
    g = torch.Generator(device="cpu").manual_seed(1)
    images = torch.randn(batch, config.channels, image, image, generator=g).to(device)
    if cfg.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, config.classes, (batch,), generator=g).to(device)
    forward = step_forward(method, cfg.compile)
    sync(device)
    started = time.perf_counter()
    for _ in range(warmup):  # cudnn autotuning, allocator growth, compilation, CUDA-graph recording
        train_step(method, optimizer, images, labels, cfg.lr, autocast, forward)
    sync(device)
    return Prepared(mode, method, cfg, optimizer, autocast, images, labels, forward, time.perf_counter() - started)


def row_of(name: str, config: BenchConfig, p: Prepared, image: int, batch: int, warmup: int, steps: int,
           walls: list[float], step_ms: list[float], memory: float, memory_kind: str, held: float) -> dict[str, Any]:
    """The record's row of one mode: images/s is the median over the timed blocks (one block unless interleaved)."""
    quantiles = statistics.quantiles(step_ms, n=10, method="inclusive") if len(step_ms) > 1 else step_ms * 9
    return {
        "config": name, "mode": p.mode, "teachers": list(config.teachers), "student": config.student, "image": image,
        "batch": batch, "classes": config.classes, "channels": config.channels,
        "amp": str(p.autocast).replace("torch.", "") if p.autocast else "off",
        "channels_last": bool(p.cfg.channels_last),
        "method": getattr(p.method, "name", type(p.method).__name__), "compile": p.cfg.compile, "warmup_s": p.warmup_s,
        "reference_semantics": p.mode == "reference", "settings": ATSC_VARIANTS.get(p.mode, {}),
        "warmup_steps": warmup, "steps": steps, "images_per_s": statistics.median(batch * steps / w for w in walls),
        "step_ms_p50": statistics.median(step_ms), "step_ms_p90": quantiles[8], "step_ms_min": min(step_ms),
        "step_ms_max": max(step_ms), "peak_memory_mb": memory, "memory_before_steps_mb": held,
        "memory_kind": memory_kind,
    }


def release(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def run_row(name: str, config: BenchConfig, mode: str, image: int, batch: int, warmup: int, steps: int,
            e2e: bool, device: torch.device, folder: Path | None = None, workers: int = 0) -> dict[str, Any]:
    p = prepare(config, mode, image, batch, warmup, device)
    reset_peak_memory(device)
    held = current_memory_mb(device)
    wall, step_ms = p.time(steps)
    memory, memory_kind = peak_memory_mb(device)
    row = row_of(name, config, p, image, batch, warmup, steps, [wall], step_ms, memory, memory_kind, held)
    if e2e and mode in FAST_MODES:
        row.update(end_to_end(p.method, p.optimizer, config, image, batch, steps, p.cfg, p.autocast, device, p.forward))
        if folder is not None:
            row.update(imagefolder_end_to_end(p.method, p.optimizer, config, image, batch, steps, p.cfg, p.autocast,
                                              device, p.forward, workers, folder))
    del p
    release(device)
    return row


def run_interleaved(name: str, config: BenchConfig, modes: list[str], image: int, batch: int, warmup: int, steps: int,
                    rounds: int, device: torch.device) -> list[dict[str, Any]]:
    """Every mode built and warmed up first, then ``rounds`` rounds that time each mode for ``steps`` steps, the
    order reversed every other round: a change of the machine's load during the run hits all modes alike."""
    prepared = [prepare(config, mode, image, batch, warmup, device) for mode in modes]
    held = current_memory_mb(device)  # all modes' models and optimizer states at once
    walls: dict[str, list[float]] = {mode: [] for mode in modes}
    step_ms: dict[str, list[float]] = {mode: [] for mode in modes}
    peaks: dict[str, float] = dict.fromkeys(modes, 0.0)
    memory_kind = ""
    for r in range(rounds):
        for p in prepared if r % 2 == 0 else prepared[::-1]:
            reset_peak_memory(device)
            wall, ms = p.time(steps)
            peak, memory_kind = peak_memory_mb(device)
            walls[p.mode].append(wall)
            step_ms[p.mode] += ms
            peaks[p.mode] = max(peaks[p.mode], peak)
    rows = [row_of(name, config, p, image, batch, warmup, steps, walls[p.mode], step_ms[p.mode], peaks[p.mode],
                   memory_kind, held)
            | {"rounds": rounds, "round_images_per_s": [batch * steps / w for w in walls[p.mode]]}
            for p in prepared]
    del prepared
    release(device)
    return rows


def cost_vs_kd(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Per configuration and mode: its step's cost relative to KD's (KD images/s over its images/s); in an
    interleaved run the median over rounds of the per-round ratio."""
    kd = {r["config"]: r for r in rows if r["mode"] == "kd"}
    costs = {}
    for r in rows:
        base = kd.get(r["config"])
        if base is None or r is base:
            continue
        if "round_images_per_s" in r and "round_images_per_s" in base:
            cost = statistics.median(k / m for k, m in zip(base["round_images_per_s"], r["round_images_per_s"]))
        else:
            cost = base["images_per_s"] / r["images_per_s"]
        costs[f"{r['config']} {r['mode']}"] = cost
    return costs


def ratios(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Per configuration and fast mode: its images/s over the reference's ("config" for default, "config mode" else)."""
    speed = {(r["config"], r["mode"]): r["images_per_s"] for r in rows}
    return {(c if m == "default" else f"{c} {m}"): speed[(c, m)] / speed[(c, "reference")] for c, m in speed
            if m in FAST_MODES and (c, "reference") in speed}


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    import platform

    return platform.processor() or platform.machine()


def markdown(record: dict[str, Any]) -> str:
    lines = [f"# Training-step throughput ({record['device']})", "",
             f"Command: `{record['command']}`  ",
             f"Device: {record['device']} ({record['device_type']}); torch {record['environment'].get('torch')}, "
             f"CUDA {record['cuda']}, {record['threads']} CPU threads; load average before/after "
             f"{record['load_average_before']} / {record['load_average_after']}.  ",
             "Compute only: one synthetic batch on the device, reused. e2e = one epoch through the real "
             "TensorLoader (uint8 on the device, pad-crop + flip there).", "",
             "| config | mode | image | batch | amp | channels_last | images/s | step p50 ms | step p90 ms "
             "| peak MB | held before MB | e2e images/s | loader images/s | warm-up s |",
             "|---|---|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in record["results"]:
        e2e = f"{r['e2e_images_per_s']:.0f}" if "e2e_images_per_s" in r else ""
        loader = f"{r['loader_images_per_s']:.0f}" if "loader_images_per_s" in r else ""
        warmup = f"{r['warmup_s']:.1f}" if "warmup_s" in r else ""
        lines.append(f"| {r['config']} | {r['mode']} | {r['image']} | {r['batch']} | {r['amp']} | "
                     f"{'yes' if r['channels_last'] else 'no'} | {r['images_per_s']:.1f} | {r['step_ms_p50']:.1f} | "
                     f"{r['step_ms_p90']:.1f} | {r['peak_memory_mb']:.0f} | {r['memory_before_steps_mb']:.0f} | {e2e} | "
                     f"{loader} | {warmup} |")
    folder_rows = [r for r in record["results"] if "imagefolder_e2e_images_per_s" in r]
    if folder_rows:
        lines += ["", "ImageFolder pipeline (JPEGs decoded, random-resized-cropped and flipped by DataLoader workers; "
                  "uint8 to the device, normalised there):", "",
                  "| config | mode | workers | loader images/s | e2e images/s | compute-only images/s |",
                  "|---|---|---:|---:|---:|---:|"]
        lines += [f"| {r['config']} | {r['mode']} | {r['imagefolder_workers']} | "
                  f"{r['imagefolder_loader_images_per_s']:.0f} | {r['imagefolder_e2e_images_per_s']:.0f} | "
                  f"{r['images_per_s']:.0f} |" for r in folder_rows]
    lines += ["", f"Peak memory: {record['results'][0]['memory_kind'] if record['results'] else ''}."]
    if record["ratios"]:
        lines += ["", "Ratio fast mode / reference (images/s; a bare configuration name is the default mode):", ""]
        lines += [f"- {c}: {v:.2f}x" for c, v in record["ratios"].items()]
    if record.get("cost_vs_kd"):
        rounds = max((r.get("rounds", 1) for r in record["results"]), default=1)
        how = f"median over {rounds} interleaved rounds of the per-round ratio" if rounds > 1 else "one block each"
        lines += ["", f"Step cost relative to KD (KD images/s over the mode's; {how}):", ""]
        lines += [f"- {c}: {v:.2f}x" for c, v in record["cost_vs_kd"].items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--modes", nargs="+", default=list(DEFAULT_MODES), choices=list(MODES))
    parser.add_argument("--small", action="store_true", help="CPU-sized inputs and batches (same architectures)")
    parser.add_argument("--image", type=int, help="override every configuration's image size")
    parser.add_argument("--batch", type=int, help="override every configuration's batch size")
    parser.add_argument("--warmup", type=int, help="untimed steps first (default 10 GPU, 2 CPU)")
    parser.add_argument("--steps", type=int, help="timed steps (default 30 GPU, 5 CPU); per round with --rounds")
    parser.add_argument("--rounds", type=int, default=1,
                        help="time the modes of a configuration in this many interleaved rounds (default 1: each mode "
                             "once, one after the other)")
    parser.add_argument("--end-to-end", action="store_true", help="also time an epoch through the real TensorLoader")
    parser.add_argument("--imagefolder", action="store_true",
                        help="with --end-to-end: also time epochs through the ImageFolder pipeline (JPEGs made in a "
                             "temporary folder, decoded by DataLoader workers)")
    parser.add_argument("--workers", type=int, default=max(1, min(16, (os.cpu_count() or 2) - 1)),
                        help="DataLoader workers for --imagefolder (default: cores - 1, at most 16)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--out", type=Path, help="write train_step_<tag>.json and .md in this folder")
    parser.add_argument("--tag", help="file tag (default: cpu or gpu)")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.rounds > 1 and args.end_to_end:
        parser.error("--end-to-end times one mode at a time: leave it out with --rounds")

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)
    gpu = device.type == "cuda"
    warmup = args.warmup if args.warmup is not None else (10 if gpu else 2)
    steps = args.steps if args.steps is not None else (30 if gpu else 5)
    record: dict[str, Any] = {
        "command": " ".join([*([f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}"] if "OMP_NUM_THREADS" in os.environ
                                else []), ".venv/bin/python benchmarks/train_step.py",
                              *(argv if argv is not None else sys.argv[1:])]),
        "device": device_name(device), "device_type": device.type, "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if gpu else None, "threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "small": args.small,
        "load_average_before": [round(v, 2) for v in os.getloadavg()], "results": [],
    }
    print(f"{'config':<28} {'mode':<17} {'images/s':>10} {'p50 ms':>9} {'p90 ms':>9} {'peak MB':>9} {'e2e img/s':>10}",
          flush=True)
    scratch = tempfile.TemporaryDirectory(prefix="train-step-jpegs-") if args.imagefolder and args.end_to_end else None
    for name in args.configs:
        config = CONFIGS[name]
        image = args.image or (config.small_image if args.small else config.image)
        batch = args.batch or (config.small_batch if args.small else config.batch)
        folder = None
        if scratch is not None:
            # ImageNet's mean picture is about 469 x 387 px for 224 px crops: the same ratio here
            folder = jpeg_folder(Path(scratch.name) / name, config.classes, steps * batch,
                                 (image * 469 // 224, image * 387 // 224))
        if args.rounds > 1:
            rows = run_interleaved(name, config, args.modes, image, batch, warmup, steps, args.rounds, device)
        else:
            rows = (run_row(name, config, mode, image, batch, warmup, steps, args.end_to_end, device, folder,
                            args.workers) for mode in args.modes)
        for row in rows:
            record["results"].append(row)
            e2e = f"{row['e2e_images_per_s']:.0f}" if "e2e_images_per_s" in row else ""
            print(f"{name:<28} {row['mode']:<17} {row['images_per_s']:>10.1f} {row['step_ms_p50']:>9.1f} "
                  f"{row['step_ms_p90']:>9.1f} {row['peak_memory_mb']:>9.0f} {e2e:>10}", flush=True)
            save(record, args.out, args.tag or ("gpu" if gpu else "cpu"))  # after every row: a timeout keeps them
    for config_name, value in record["ratios"].items():  # last, as the issue asks
        config, _, mode = config_name.partition(" ")
        print(f"ratio {mode or 'default'}/reference {config}: {value:.2f}x", flush=True)
    for config_mode, value in record["cost_vs_kd"].items():
        print(f"step cost / KD {config_mode}: {value:.2f}x", flush=True)
    return record


def save(record: dict[str, Any], out: Path | None, tag: str) -> None:
    record["load_average_after"] = [round(v, 2) for v in os.getloadavg()]
    record["environment"] = environment()
    record["ratios"] = ratios(record["results"])
    record["cost_vs_kd"] = cost_vs_kd(record["results"])
    if out:
        out.mkdir(parents=True, exist_ok=True)
        (out / f"train_step_{tag}.json").write_text(json.dumps(record, indent=2) + "\n")
        (out / f"train_step_{tag}.md").write_text(markdown(record))


if __name__ == "__main__":
    main()
