"""Where distillation pays off: the same methods across label regimes, several seeds (issue 11's record).

Regimes (Fashion-MNIST, CPU-sized):
- ``full``: every training image labelled, the strong teacher;
- ``few-privileged``: ``--labels-per-class`` labels, the rest unlabelled, the strong teacher (trained on all
  labels elsewhere: the real-world case of a big pretrained model);
- ``few-fair``: the same few labels, a teacher trained here on the labelled images alone.
Variants: the student alone, a label-smoothing-only student (separates regularisation from dark
knowledge), KD, SimKD, ATSC with the authors' semantics, ATSC as the project runs it, and the control
for ATSC's claim (``atsc-control``: the teacher keeps learning from its own cross-entropy, with no
feedback from the student). Every run of a seed uses the same data order and initial student weights.

Records mean ± std (population std over seeds) of the student's top-1 per cell, the paired differences
of the deployed ATSC against the student alone, KD and SimKD, the teacher's top-1 after adaptation and
training images/s, as JSON and Markdown. Finished runs in --work are reused, so an interrupted record
continues where it stopped.

    python benchmarks/distill_regimes.py --teacher-checkpoint compress/weights/fashion-mnist-resnet20.safetensors \
        --train-limit 20000 --epochs 1 --seeds 0 1 2 --work /tmp/regimes --out benchmarks/results/distill_regimes_cpu
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import cpu_model  # noqa: E402

from distill_fashion_mnist import finished_run  # noqa: E402

from compress.artifacts import environment, read_sidecar, write_json  # noqa: E402
from compress.data import DataConfig  # noqa: E402
from compress.distill import DistillConfig  # noqa: E402
from compress.train import TrainConfig  # noqa: E402
from compress.workflows import distill_run, train_teacher_run  # noqa: E402

VARIANTS: dict[str, dict[str, Any]] = {
    "none": {"method": "none"},
    "none-ls": {"method": "none", "label_smoothing": 0.1},
    "kd": {"method": "kd"},
    "simkd": {"method": "simkd"},
    "atsc-reference": {"method": "atsc", "reference": True},
    "atsc": {"method": "atsc"},  # the project default at the time of the run
    "atsc-control": {"method": "atsc", "teacher_feedback": False},
    # ablations of the default
    "atsc-no-kl": {"method": "atsc", "shared_kl": 0.0},  # the guards of issue 3 alone
    "atsc-last3": {"method": "atsc", "adapt_last": 3},  # only the teacher's last stage (resnet20) adapts
    # as first explored (before shared_kl = 1 became the default; probe record distill_regimes_probe_cpu)
    "atsc-kl0": {"method": "atsc", "shared_kl": 0.0},
    "atsc-kl1": {"method": "atsc", "shared_kl": 1.0},
    "atsc-kl1-last3": {"method": "atsc", "shared_kl": 1.0, "adapt_last": 3},
}
REGIMES = ("full", "few-privileged", "few-fair")
COMPARED = ("none", "kd", "simkd")  # what the deployed ATSC is compared with, seed by seed


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.pstdev(values) if len(values) > 1 else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher-checkpoint", required=True, help="the strong teacher (trained on all labels)")
    parser.add_argument("--fair-teacher", default="resnet20", help="model trained on the labelled images alone")
    parser.add_argument("--fair-teacher-epochs", type=int, default=4)
    parser.add_argument("--student", default="resnet8")
    parser.add_argument("--train-limit", type=int, default=20000)
    parser.add_argument("--labels-per-class", type=int, default=100)
    parser.add_argument("--labeled-share", type=float, default=0.25)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--regimes", nargs="+", default=list(REGIMES), choices=REGIMES)
    parser.add_argument("--variants", nargs="+",
                        default=["none", "none-ls", "kd", "simkd", "atsc-reference", "atsc", "atsc-control"])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", required=True, help="results path without extension (.json and .md are written)")
    parser.add_argument("--work", required=True, help="folder for the runs (reused when the script is run again)")
    args = parser.parse_args()
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; known: {sorted(VARIANTS)}")
    work = Path(args.work)
    started = time.time()

    def data(regime: str, seed: int) -> DataConfig:
        few = regime != "full"
        return DataConfig(name="fashion-mnist", batch_size=args.batch_size, train_limit=args.train_limit, seed=seed,
                          labels_per_class=args.labels_per_class if few else None, labeled_share=args.labeled_share)

    def schedule(epochs: int, seed: int) -> TrainConfig:
        return TrainConfig(epochs=epochs, lr=args.lr, seed=seed, device=args.device)

    strong_top1 = float(read_sidecar(args.teacher_checkpoint, verify=False)["metrics"]["top1"])
    teachers = {"full": (args.teacher_checkpoint, strong_top1), "few-privileged": (args.teacher_checkpoint, strong_top1)}
    if "few-fair" in args.regimes:  # trained once (seed 0) on the labelled images alone, as a user with few labels would
        folder = work / "fair-teacher"
        summary_path = folder / "summary.json"
        if not summary_path.exists():
            shutil.rmtree(folder, ignore_errors=True)
            train_teacher_run(args.fair_teacher, data("few-fair", 0), schedule(args.fair_teacher_epochs, 0), folder,
                              progress=False)
        fair = json.loads(summary_path.read_text())
        teachers["few-fair"] = (str(folder / "model.safetensors"), float(fair["last_top1"]))
        print(f"fair teacher {args.fair_teacher}: {fair['last_top1']:.2f}%", flush=True)

    rows = []
    for regime in args.regimes:
        teacher_path, teacher_top1 = teachers[regime]
        for seed in args.seeds:
            for variant in args.variants:
                out = work / regime / f"{variant}-seed{seed}"
                settings = DistillConfig(**VARIANTS[variant]).to_dict()
                summary = finished_run(out, settings, args.epochs, seed)
                if summary is None:
                    shutil.rmtree(out, ignore_errors=True)
                    distill_run(args.student, [teacher_path], [], DistillConfig(**VARIANTS[variant]), data(regime, seed),
                                schedule(args.epochs, seed), out, log=lambda msg: None, progress=False)
                    summary = finished_run(out, settings, args.epochs, seed)
                    assert summary is not None
                last = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()][-1]
                row = {"regime": regime, "variant": variant, "seed": seed, "student_top1": summary["last_top1"],
                       "teacher_top1": teacher_top1, "teacher_top1_after": last.get("teacher_top1"),
                       "teacher_kept": last.get("teacher_kept"), "images_per_s": summary["train_images_per_s"],
                       "wall_s": summary["wall_seconds"], "settings": settings}
                rows.append(row)
                after = "" if row["teacher_top1_after"] is None else f", teacher after {row['teacher_top1_after']:.2f}%"
                print(f"{regime:15s} {variant:18s} seed {seed}: student {row['student_top1']:.2f}%{after}, "
                      f"{row['images_per_s']:.0f} img/s", flush=True)

    cells, paired = [], []
    for regime in args.regimes:
        for variant in args.variants:
            mine = [r for r in rows if r["regime"] == regime and r["variant"] == variant]
            top1 = mean_std([r["student_top1"] for r in mine])
            after = [r["teacher_top1_after"] for r in mine if r["teacher_top1_after"] is not None]
            cells.append({"regime": regime, "variant": variant, "student_top1_mean": top1[0], "student_top1_std": top1[1],
                          "per_seed": [r["student_top1"] for r in mine],
                          "teacher_top1_after_mean": statistics.fmean(after) if after else None,
                          "teacher_kept_min": min((r["teacher_kept"] for r in mine if r["teacher_kept"] is not None),
                                                  default=None),
                          "images_per_s_mean": statistics.fmean(r["images_per_s"] for r in mine)})
        if "atsc" not in args.variants:
            continue
        for other in (v for v in COMPARED if v in args.variants):
            diffs = [a["student_top1"] - b["student_top1"] for a in rows for b in rows
                     if a["regime"] == b["regime"] == regime and a["seed"] == b["seed"]
                     and a["variant"] == "atsc" and b["variant"] == other]
            m, s = mean_std(diffs)
            paired.append({"regime": regime, "versus": other, "mean": m, "std": s, "per_seed": diffs,
                           "wins": sum(d > 0 for d in diffs), "seeds": len(diffs)})

    record = {
        "command": "python " + " ".join(sys.argv),
        "setup": {k: v for k, v in vars(args).items() if k not in ("out", "work")},
        "teachers": {k: {"checkpoint": v[0], "top1": v[1]} for k, v in teachers.items()},
        "rows": rows, "cells": cells, "paired": paired, "wall_s": time.time() - started, "cpu": cpu_model(),
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu", "environment": environment(),
    }
    out = Path(args.out)
    write_json(out.with_suffix(".json"), record)
    lines = [f"# Distillation regimes on Fashion-MNIST: teacher → {args.student}", "",
             f"`{record['command']}`", "",
             f"CPU: {record['cpu']} ({torch.get_num_threads()} threads). Student {args.epochs} epoch(s) of "
             f"{args.train_limit // args.batch_size} steps (batch {args.batch_size}, lr {args.lr} cosine) on a fixed "
             f"{args.train_limit}-image training subset; few-label regimes keep {args.labels_per_class} labels per class "
             f"({args.labels_per_class * 10} labelled, {args.train_limit - args.labels_per_class * 10} unlabelled; "
             f"{args.labeled_share:.0%} of each batch labelled for methods that use unlabelled images; the student alone "
             "gets the same steps on labelled batches). Seeds "
             f"{args.seeds}; full 10k test set. Teachers: " + "; ".join(
                 f"{k} {v[1]:.2f}%" for k, v in teachers.items() if k in args.regimes) + ".", "",
             "| regime | method | student top-1, mean ± std | per seed | teacher after | train img/s |",
             "|---|---|---|---|---|---|"]
    for c in cells:
        after = "–" if c["teacher_top1_after_mean"] is None else f"{c['teacher_top1_after_mean']:.2f}"
        lines.append(f"| {c['regime']} | {c['variant']} | {c['student_top1_mean']:.2f} ± {c['student_top1_std']:.2f} | "
                     f"{', '.join(f'{v:.2f}' for v in c['per_seed'])} | {after} | {c['images_per_s_mean']:.0f} |")
    if paired:
        lines += ["", "Deployed ATSC minus each baseline, paired by seed (same data order and student initialisation):", "",
                  "| regime | ATSC − | mean ± std (pt) | per seed | ATSC ahead |", "|---|---|---|---|---|"]
        for p in paired:
            lines.append(f"| {p['regime']} | {p['versus']} | {p['mean']:+.2f} ± {p['std']:.2f} | "
                         f"{', '.join(f'{v:+.2f}' for v in p['per_seed'])} | {p['wins']}/{p['seeds']} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(json.dumps({"wall_s": record["wall_s"]}))


if __name__ == "__main__":
    main()
