"""Real-data comparison of distillation methods on Fashion-MNIST (issue 3's experiment).

One teacher is trained once; then every variant distils the same student from it with the same
schedule, for each seed. Records student top-1 (last and best), the teacher's top-1 after adaptation
(ATSC), training images/s and wall time, as JSON and a Markdown table.

CPU scale (minutes on 2 cores), as in ATSC.md:
    python benchmarks/distill_fashion_mnist.py --teacher resnet20 --student resnet8 --train-limit 20000 \
        --teacher-epochs 3 --epochs 2 --seeds 0 1 --out benchmarks/results/distill_fashion_mnist_cpu
Full size on a GPU: --teacher resnet32x4 --student resnet8x4 --teacher-epochs 15 --epochs 10 --batch-size 256
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from compress.artifacts import environment, write_json  # noqa: E402
from compress.data import DataConfig  # noqa: E402
from compress.distill import DistillConfig  # noqa: E402
from compress.distill.configs import GUARD_DEFAULTS, REFERENCE_GUARDS  # noqa: E402
from compress.train import TrainConfig  # noqa: E402
from compress.workflows import distill_run, train_teacher_run  # noqa: E402

# name -> DistillConfig settings. "atsc" is whatever the project default is at the time of the run.
VARIANTS: dict[str, dict[str, Any]] = {
    "none": {"method": "none"},
    "kd": {"method": "kd"},
    "simkd": {"method": "simkd"},
    "atsc-reference": {"method": "atsc", "reference": True},
    "atsc": {"method": "atsc"},
    # fast path vs reference semantics with the guards held equal (issue 6's equal-accuracy check)
    "atsc-fast-reference-guards": {"method": "atsc", "reference": False, **REFERENCE_GUARDS},
    "atsc-reference-default-guards": {"method": "atsc", "reference": True, **GUARD_DEFAULTS},
    # guard sweep used to choose the default
    "atsc-ce-lr0.1-bntrain": {"method": "atsc", "teacher_ce": 1.0, "teacher_lr_scale": 0.1, "bn_mode": "train",
                              "anchor_scope": "all"},
    "atsc-ce-lr0.1-bnfrozen": {"method": "atsc", "teacher_ce": 1.0, "teacher_lr_scale": 0.1, "bn_mode": "frozen",
                               "anchor_scope": "all"},
    "atsc-ce-lr0.01-bnfrozen": {"method": "atsc", "teacher_ce": 1.0, "teacher_lr_scale": 0.01, "bn_mode": "frozen",
                                "anchor_scope": "all"},
    "atsc-ce-lr1-bntrain": {"method": "atsc", "teacher_ce": 1.0, "teacher_lr_scale": 1.0, "bn_mode": "train",
                           "anchor_scope": "all"},
    "atsc-ce-lr0.01-bntrain": {"method": "atsc", "teacher_ce": 1.0, "teacher_lr_scale": 0.01, "bn_mode": "train",
                               "anchor_scope": "all"},
}


def finished_run(out: Path, settings: dict[str, Any], epochs: int, seed: int) -> dict[str, Any] | None:
    """The summary of a run already finished in ``out`` with exactly these settings, else None.

    Lets an interrupted comparison continue without re-training what it already has."""
    path = out / "summary.json"
    if not path.exists():
        return None
    summary = json.loads(path.read_text())
    same = (summary.get("method") == settings and summary.get("epochs") == epochs
            and summary.get("train_config", {}).get("seed") == seed)
    return summary if same else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", default="resnet20")
    parser.add_argument("--student", default="resnet8")
    parser.add_argument("--train-limit", type=int, default=20000)
    parser.add_argument("--val-limit", type=int, default=None)
    parser.add_argument("--teacher-epochs", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--variants", nargs="+", default=["none", "kd", "simkd", "atsc-reference", "atsc"])
    parser.add_argument("--teacher-checkpoint", default=None, help="reuse a trained teacher")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", required=True, help="results path without extension (.json and .md are written)")
    parser.add_argument("--work", default=None, help="folder for runs (default: a temporary folder)")
    args = parser.parse_args()
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; known: {sorted(VARIANTS)}")

    work = Path(args.work or tempfile.mkdtemp(prefix="distill-bench-"))
    quiet = dict(progress=False)
    data = lambda seed: DataConfig(name="fashion-mnist", batch_size=args.batch_size,  # noqa: E731
                                   train_limit=args.train_limit, val_limit=args.val_limit, seed=seed)
    train = lambda epochs, seed: TrainConfig(epochs=epochs, lr=args.lr, seed=seed, device=args.device)  # noqa: E731
    started = time.time()
    teacher_path = args.teacher_checkpoint
    teacher_record: dict[str, Any] = {}
    if teacher_path is not None:  # a reused teacher: its accuracy is in its sidecar
        teacher_record = {"top1": json.loads(Path(teacher_path + ".json").read_text())["metrics"]["top1"],
                          "checkpoint": teacher_path}
    else:
        t0 = time.time()
        result = train_teacher_run(args.teacher, data(0), train(args.teacher_epochs, 0), work / "teacher", **quiet)
        teacher_path = str(work / "teacher" / "model.safetensors")
        teacher_record = {"top1": result.last_top1, "images_per_s": result.images_per_s, "wall_s": time.time() - t0}
        print(f"teacher {args.teacher}: {result.last_top1:.2f}% ({teacher_record['wall_s']:.0f} s)", flush=True)

    rows = []
    for seed in args.seeds:
        for variant in args.variants:
            out = work / f"{variant}-seed{seed}"
            settings = DistillConfig(**VARIANTS[variant]).to_dict()
            t0 = time.time()
            summary = finished_run(out, settings, args.epochs, seed)
            if summary is None:
                shutil.rmtree(out, ignore_errors=True)
                distill_run(args.student, [teacher_path], [], DistillConfig(**VARIANTS[variant]), data(seed),
                            train(args.epochs, seed), out, log=lambda msg: None, **quiet)
                summary = finished_run(out, settings, args.epochs, seed)
                assert summary is not None
            history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
            last = history[-1]
            row = {"variant": variant, "seed": seed, "student_top1": summary["last_top1"],
                   "student_best_top1": summary["best_top1"], "teacher_top1_after": last.get("teacher_top1"),
                   "teacher_top1_start": last.get("teacher_top1_start"), "teacher_drift": last.get("teacher_drift"),
                   "images_per_s": summary["train_images_per_s"], "wall_s": summary["wall_seconds"],
                   "settings": settings}
            rows.append(row)
            after = "" if row["teacher_top1_after"] is None else f", teacher after {row['teacher_top1_after']:.2f}%"
            print(f"{variant:26s} seed {seed}: student {row['student_top1']:.2f}%{after}, "
                  f"{row['images_per_s']:.0f} img/s", flush=True)

    summary = []
    for variant in args.variants:
        mine = [r for r in rows if r["variant"] == variant]
        mean = lambda key: (sum(r[key] for r in mine) / len(mine)) if all(r[key] is not None for r in mine) else None  # noqa: E731
        summary.append({"variant": variant, "student_top1_mean": mean("student_top1"),
                        "student_top1_per_seed": [r["student_top1"] for r in mine],
                        "teacher_top1_after_mean": mean("teacher_top1_after"), "images_per_s_mean": mean("images_per_s")})
    record = {
        "command": "python " + " ".join(sys.argv),
        "setup": {k: v for k, v in vars(args).items() if k not in ("out", "work")},
        "teacher": teacher_record, "rows": rows, "summary": summary, "wall_s": time.time() - started,
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "environment": environment(),
    }
    out = Path(args.out)
    write_json(out.with_suffix(".json"), record)
    lines = [f"# Distillation on Fashion-MNIST: {args.teacher} -> {args.student}", "",
             f"`{record['command']}`", "",
             *(["The teacher was trained by an earlier invocation of this script with the same settings and "
                "without --teacher-checkpoint; runs already finished in --work with identical settings are reused.", ""]
               if args.teacher_checkpoint else []),
             f"Teacher trained {args.teacher_epochs} epochs on {args.train_limit} images: "
             f"{teacher_record.get('top1', float('nan')):.2f}% top-1. Student {args.epochs} epochs, batch {args.batch_size}, "
             f"lr {args.lr} cosine, seeds {args.seeds}, device {record['device']}.", "",
             "| method | student top-1 (mean) | per seed | teacher top-1 after | train images/s |",
             "|---|---|---|---|---|"]
    for s in summary:
        teacher = "–" if s["teacher_top1_after_mean"] is None else f"{s['teacher_top1_after_mean']:.2f}"
        lines.append(f"| {s['variant']} | {s['student_top1_mean']:.2f} | "
                     f"{', '.join(f'{v:.2f}' for v in s['student_top1_per_seed'])} | {teacher} | "
                     f"{s['images_per_s_mean']:.0f} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(json.dumps({"wall_s": record["wall_s"]}))


if __name__ == "__main__":
    main()
