"""Training at 224 px on the CPU: compress's step against a bare PyTorch loop, and the data side alone.

The step (per teacher and variant, same models, batch, threads and input):
  compress  ``compress.step.train_step`` on the KD method as ``compress distill --method kd`` builds it
            (``build_method``, ``make_optimizer``, ``amp_dtype``; channels_last as ``TrainConfig`` sets it)
  bare      a loop a user would write: torchvision's mobilenet_v2 and teacher, the teacher's forward under
            ``no_grad``, ``0.1 CE + 0.9 T^2 KL`` written out, SGD, zero_grad / backward / step
  atsc      (``--methods kd atsc``) compress's default method, ATSC, for its cost; it has no bare twin
Variants: ``fp32`` (NCHW), ``channels_last``, ``bf16`` (autocast; only where the CPU computes bf16 in
hardware, AVX512-BF16 or AMX, unless ``--force-bf16``).

Every (variant, side) runs ``--steps`` steps in each of ``--blocks`` blocks, in an order rotated from block
to block, with a pause between blocks, so a change in the machine's load hits every row alike. A ratio is
the median over blocks of the two rows' images/s in the same block.

The data side: the PNG folder's training images (labelled and unlabelled, as the recipe reads them)
through compress's ImageFolder loader (decode, random-resized crop, flip, uint8 to float) with 0, 1 and 2
DataLoader workers, images/s of the loader alone (its second pass: workers started, files cached).

    python scripts/make_imagefolder_224.py data/fmnist224      # the recipe's folder (built here if missing)
    python benchmarks/train_224.py --out benchmarks/results     # ~8 min on the 2-core EPYC (resnet18)
    python benchmarks/train_224.py --teachers resnet18 resnet50 --methods kd atsc --out benchmarks/results

writes ``train_224_<tag>.{json,md}`` (tag ``cpu``).
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from compress.artifacts import environment  # noqa: E402
from compress.distill import DistillConfig, build_method  # noqa: E402
from compress.models import create_model  # noqa: E402
from compress.step import make_optimizer, train_step  # noqa: E402
from compress.train_config import TrainConfig, amp_dtype, cpu_bf16_native, seed_everything  # noqa: E402

VARIANTS = ("fp32", "channels_last", "bf16")
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16")
TEMPERATURE, CE_WEIGHT, KL_WEIGHT = 4.0, 0.1, 0.9  # compress's KD defaults, written out in the bare loop
LR, MOMENTUM, WEIGHT_DECAY = 0.05, 0.9, 5e-4


def train_config(variant: str) -> TrainConfig:
    return TrainConfig(lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY, device="cpu",
                       amp="bf16" if variant == "bf16" else "off", channels_last=variant == "channels_last")


@dataclass
class Row:
    """One (teacher, method, side, variant): a step function and its images/s in each block."""

    teacher: str
    method: str  # kd | atsc
    side: str  # compress | bare
    variant: str
    step: Callable[[], None]
    rates: list[float]

    @property
    def key(self) -> tuple[str, str, str, str]:
        return self.teacher, self.method, self.side, self.variant


def compress_step(method_name: str, teacher: str, variant: str, images: torch.Tensor, labels: torch.Tensor,
                  classes: int) -> Callable[[], None]:
    """compress's step on ``method_name``, built as ``compress distill`` builds it (workflows.distill_run)."""
    image = images.shape[-1]
    cfg = train_config(variant)
    seed_everything(0, deterministic=False)
    student = create_model("mobilenet_v2", classes, 3, image, small_input=False)
    teachers = [create_model(teacher, classes, 3, image, small_input=False)]
    method = build_method(DistillConfig(method=method_name), student, teachers, image)
    if cfg.channels_last:
        method = method.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    method.train()
    optimizer = make_optimizer(method, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    autocast = amp_dtype(cfg, torch.device("cpu"))

    def step() -> None:
        train_step(method, optimizer, images, labels, cfg.lr, autocast)

    return step


def bare_step(teacher_name: str, variant: str, images: torch.Tensor, labels: torch.Tensor,
              classes: int) -> Callable[[], None]:
    """The same KD step as a user would write it with torchvision's models."""
    torch.manual_seed(0)
    student: nn.Module = torchvision.models.mobilenet_v2(num_classes=classes)
    teacher: nn.Module = getattr(torchvision.models, teacher_name)(num_classes=classes)
    teacher.requires_grad_(False).eval()
    if variant == "channels_last":
        student = student.to(memory_format=torch.channels_last)
        teacher = teacher.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    student.train()
    optimizer = torch.optim.SGD(student.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    bf16 = variant == "bf16"

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            with torch.no_grad():
                soft = F.softmax(teacher(images).float() / TEMPERATURE, dim=1)
            logits = student(images).float()
        kl = F.kl_div(F.log_softmax(logits / TEMPERATURE, dim=1), soft, reduction="batchmean") * TEMPERATURE**2
        loss = CE_WEIGHT * F.cross_entropy(logits, labels) + KL_WEIGHT * kl
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def time_blocks(rows: list[Row], batch: int, warmup: int, blocks: int, steps: int, pause: float,
                log: Callable[[str], None]) -> None:
    """Warm every row up, then ``blocks`` rounds of ``steps`` timed steps per row, the order rotated each round."""
    for row in rows:
        for _ in range(warmup):
            row.step()
    for block in range(blocks):
        shift = block % len(rows)
        for row in rows[shift:] + rows[:shift]:
            started = time.perf_counter()
            for _ in range(steps):
                row.step()
            row.rates.append(batch * steps / (time.perf_counter() - started))
        log(f"block {block + 1}/{blocks}: " + ", ".join(f"{r.method} {r.side} {r.variant} {r.rates[-1]:.1f}"
                                                       for r in rows))
        if block + 1 < blocks:
            time.sleep(pause)  # let the machine settle: each block starts from the same state


def block_ratio(a: Row, b: Row) -> dict[str, float]:
    """a's images/s over b's, block by block: the median and the spread."""
    ratios = [x / y for x, y in zip(a.rates, b.rates)]
    return {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}


def summary(row: Row, batch: int) -> dict[str, Any]:
    median = statistics.median(row.rates)
    return {"teacher": row.teacher, "method": row.method, "side": row.side, "variant": row.variant,
            "images_per_s": median, "images_per_s_min": min(row.rates), "images_per_s_max": max(row.rates),
            "step_ms": 1000 * batch / median, "blocks": row.rates}


def step_results(args: argparse.Namespace, variants: list[str], log: Callable[[str], None]) -> dict[str, Any]:
    g = torch.Generator().manual_seed(1)
    images = torch.randn(args.batch, 3, args.image, args.image, generator=g)
    labels = torch.randint(0, args.classes, (args.batch,), generator=g)
    rows_out, ratios = [], []
    for teacher in args.teachers:
        rows: list[Row] = []
        for variant in variants:
            rows.append(Row(teacher, "kd", "compress", variant,
                            compress_step("kd", teacher, variant, images, labels, args.classes), []))
            rows.append(Row(teacher, "kd", "bare", variant, bare_step(teacher, variant, images, labels, args.classes),
                            []))
            if "atsc" in args.methods:
                rows.append(Row(teacher, "atsc", "compress", variant,
                                compress_step("atsc", teacher, variant, images, labels, args.classes), []))
        log(f"teacher {teacher}: {len(rows)} rows, {args.blocks} blocks of {args.steps} steps, batch {args.batch}")
        time_blocks(rows, args.batch, args.warmup, args.blocks, args.steps, args.pause, log)
        by_key = {row.key: row for row in rows}
        rows_out += [summary(row, args.batch) for row in rows]
        for variant in variants:
            ratios.append({"teacher": teacher, "what": f"compress/bare kd {variant}",
                           **block_ratio(by_key[(teacher, "kd", "compress", variant)],
                                         by_key[(teacher, "kd", "bare", variant)])})
        for method, side in (("kd", "compress"), ("kd", "bare"), ("atsc", "compress")):
            if (teacher, method, side, "fp32") not in by_key:
                continue
            for variant in [v for v in variants if v != "fp32"]:
                ratios.append({"teacher": teacher, "what": f"{variant}/fp32 {method} {side}",
                               **block_ratio(by_key[(teacher, method, side, variant)],
                                             by_key[(teacher, method, side, "fp32")])})
        del rows, by_key
        gc.collect()
    return {"rows": rows_out, "ratios": ratios}


def folder_for(path: Path, log: Callable[[str], None]) -> Path:
    """The recipe's folder, built with scripts/make_imagefolder_224.py's defaults when it is missing."""
    if path.exists():
        return path
    spec = importlib.util.spec_from_file_location("make_imagefolder_224", ROOT / "scripts" / "make_imagefolder_224.py")
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = script
    spec.loader.exec_module(script)
    log(f"{path} is missing: building it (scripts/make_imagefolder_224.py's defaults)")
    return script.build(path, script.FolderSpec(), log=log)


def data_results(folder: Path, workers: list[int], batch: int, image: int, log: Callable[[str], None]) -> list[dict[str, Any]]:
    """images/s of the recipe's training loader alone (decode + random-resized crop + flip + normalise)."""
    from compress.data import DataConfig, load_data

    rows = []
    for count in workers:
        data = load_data(DataConfig(name="imagefolder", data_dir=str(folder), unlabeled_dir=str(folder / "unlabeled"),
                                    image_size=image, batch_size=batch, workers=count))
        rates = []
        for epoch in range(2):  # the first pass starts the workers and reads the files into the page cache
            data.train.set_epoch(epoch)
            started, n = time.perf_counter(), 0
            for x, _ in data.train:
                n += len(x)
            rates.append(n / (time.perf_counter() - started))
        rows.append({"workers": count, "images": n, "images_per_s": rates[-1], "first_pass_images_per_s": rates[0]})
        log(f"data: {count} workers, {rates[-1]:.0f} images/s ({n} images; first pass {rates[0]:.0f})")
        del data
        gc.collect()
    return rows


def cpu_record() -> dict[str, Any]:
    """The CPU's model, the instruction sets that matter here, and what torch makes of them."""
    model, flags = "", set()
    cpuinfo = Path("/proc/cpuinfo")
    for line in cpuinfo.read_text().splitlines() if cpuinfo.exists() else []:
        if line.startswith("model name") and not model:
            model = line.split(":", 1)[1].strip()
        if line.startswith("flags") and not flags:
            flags = set(line.split(":", 1)[1].split())
    import platform

    return {"model": model or platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "flags": [f for f in CPU_FLAGS if f in flags], "torch_capability": torch.backends.cpu.get_cpu_capability(),
            "bf16_native": cpu_bf16_native()}


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines() if Path("/proc/self/status").exists() else []:
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def markdown(record: dict[str, Any]) -> str:
    cpu, steps = record["cpu"], record["step"]
    lines = [f"# Training at {record['image']} px on the CPU ({cpu['model']})", "",
             f"Command: `{record['command']}`  ",
             f"CPU: {cpu['model']}, {cpu['cores']} cores, flags {' '.join(cpu['flags']) or 'none of interest'}, torch "
             f"capability {cpu['torch_capability']}, bf16 in hardware: {'yes' if cpu['bf16_native'] else 'no'}.  ",
             f"torch {record['environment'].get('torch')}, {record['threads']} threads; load average before/after "
             f"{record['load_average_before']} / {record['load_average_after']}; peak RSS {record['peak_rss_mb']:.0f} MB.",
             ""]
    if record["skipped"]:
        lines += [f"Not measured: {record['skipped']}", ""]
    if steps["rows"]:
        lines += [f"## The training step: mobilenet_v2 student, batch {record['batch']}, {record['classes']} classes", "",
                  f"{record['blocks']} blocks of {record['steps']} steps per row (after {record['warmup']} warm-up "
                  "steps), rows interleaved; images/s is the median over blocks (min-max in brackets).", "",
                  "| teacher | method | side | variant | images/s | step ms |", "|---|---|---|---|---:|---:|"]
        lines += [f"| {r['teacher']} | {r['method']} | {r['side']} | {r['variant']} | {r['images_per_s']:.2f} "
                  f"({r['images_per_s_min']:.2f}-{r['images_per_s_max']:.2f}) | {r['step_ms']:.0f} |"
                  for r in steps["rows"]]
        lines += ["", "Ratios (median over blocks of the two rows' images/s in the same block; min-max):", "",
                  "| teacher | ratio | median | min | max |", "|---|---|---:|---:|---:|"]
        lines += [f"| {r['teacher']} | {r['what']} | {r['median']:.3f} | {r['min']:.3f} | {r['max']:.3f} |"
                  for r in steps["ratios"]]
    if record["data"]:
        fp32 = [r["images_per_s"] for r in steps["rows"] if (r["method"], r["side"], r["variant"]) ==
                ("kd", "compress", "fp32")]
        lines += ["", f"## The data side: {record['folder']} through the ImageFolder loader", "",
                  "PNG decode + random-resized crop + flip in the workers, uint8 to float in the main process, "
                  f"batch {record['batch']}; the loader alone, its second pass.", "",
                  "| workers | images/s | first pass images/s |" + (" decode time per image of a step (kd fp32) |"
                                                                      if fp32 else ""),
                  "|---:|---:|---:|" + ("---:|" if fp32 else "")]
        lines += [f"| {r['workers']} | {r['images_per_s']:.0f} | {r['first_pass_images_per_s']:.0f} |"
                  + (f" {100 * fp32[0] / r['images_per_s']:.1f} % |" if fp32 else "") for r in record["data"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teachers", nargs="+", default=["resnet18"], choices=["resnet18", "resnet34", "resnet50"])
    parser.add_argument("--methods", nargs="+", default=["kd"], choices=["kd", "atsc"],
                        help="kd: compress and bare; atsc: compress's default method, compress only")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--force-bf16", action="store_true", help="measure bf16 even where the CPU emulates it")
    parser.add_argument("--image", type=int, default=224)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--classes", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per row first")
    parser.add_argument("--blocks", type=int, default=4)
    parser.add_argument("--steps", type=int, default=2, help="timed steps per row and block")
    parser.add_argument("--pause", type=float, default=1.0, help="seconds between blocks")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads (default: every core)")
    parser.add_argument("--folder", type=Path, default=ROOT / "data" / "fmnist224",
                        help="the PNG folder for the data side (built with the script's defaults if missing)")
    parser.add_argument("--workers", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--no-step", action="store_true", help="only the data side")
    parser.add_argument("--no-data", action="store_true", help="only the training step")
    parser.add_argument("--out", type=Path, help="write train_224_<tag>.json and .md in this folder")
    parser.add_argument("--tag", default="cpu")
    args = parser.parse_args(argv)

    def log(line: str) -> None:
        print(line, flush=True)

    torch.set_num_threads(args.threads)
    cpu = cpu_record()
    variants, skipped = list(args.variants), ""
    if "bf16" in variants and not (cpu["bf16_native"] or args.force_bf16):
        variants.remove("bf16")
        skipped = "bf16: this CPU has neither AVX512-BF16 nor AMX, so bf16 would be emulated (--force-bf16 measures it)"
        log(f"skipped {skipped}")
    record: dict[str, Any] = {
        "command": " ".join(["python benchmarks/train_224.py", *(argv if argv is not None else sys.argv[1:])]),
        "cpu": cpu, "threads": torch.get_num_threads(), "image": args.image, "batch": args.batch,
        "classes": args.classes, "warmup": args.warmup, "blocks": args.blocks, "steps": args.steps,
        "pause_s": args.pause, "variants": variants, "skipped": skipped,
        "load_average_before": [round(v, 2) for v in os.getloadavg()], "folder": None,
    }
    started = time.perf_counter()
    record["step"] = {"rows": [], "ratios": []} if args.no_step else step_results(args, variants, log)
    record["data"] = []
    if not args.no_data:
        folder = folder_for(args.folder, log)
        record["folder"] = str(folder)
        record["data"] = data_results(folder, args.workers, args.batch, args.image, log)
    record |= {"wall_s": time.perf_counter() - started, "peak_rss_mb": peak_rss_mb(), "environment": environment(),
               "load_average_after": [round(v, 2) for v in os.getloadavg()]}
    for ratio in record["step"]["ratios"]:
        log(f"{ratio['teacher']} {ratio['what']}: {ratio['median']:.3f} ({ratio['min']:.3f}-{ratio['max']:.3f})")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"train_224_{args.tag}.json").write_text(json.dumps(record, indent=2) + "\n")
        (args.out / f"train_224_{args.tag}.md").write_text(markdown(record))
    return record


if __name__ == "__main__":
    main()
