"""Distillation at the budgets users train to, chosen honestly (issue 21's records).

Two records, one protocol:

- ``--record budgets``: few labels + many unlabelled images from the same domain, the shipped teacher
  (trained on all labels: a big pretrained model). Schedules of ``--passes`` (default 1, 4 and 16) passes
  over a fixed training subset, every arm, ``--seeds``.
- ``--record shift``: the device sees other images than the teacher was trained on: every image (training
  and test) goes through the seeded ``--shift`` (``compress.data.shift``, e.g. reduced contrast + blur +
  sensor noise), the teacher is the same clean one. One schedule (``--passes``), every arm plus the
  adaptation variants and the two-stage baseline a user would try first (fine-tune the teacher on the
  labelled device images, then KD from it).

The protocol: a validation split is carved from the labelled training images (``--holdout-per-class``
per class: all a user with few labels would have) and removed from training. Every choice is made on it:
each arm's settings (a grid of the same size, ``GRIDS``, tried on seed ``--tune-seed`` at
``--tune-passes``), and the best epoch of every run. The test split is read once per final run, for the
epoch chosen on validation (``compress.train.fit`` does that and writes ``test_top1`` to summary.json).

Runs go to ``--work`` (a finished run with the same settings is reused, so an interrupted record
continues), ``--jobs`` processes of one thread each. The record is rewritten after every finished run.

    python benchmarks/distill_budgets.py --record budgets --work /work/runs/budgets \\
        --out benchmarks/results/distill_budgets_cpu
    python benchmarks/distill_budgets.py --record shift --passes 4 --work /work/runs/shift \\
        --out benchmarks/results/distill_shift_cpu
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import statistics
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# An arm: which labels it sees and its fixed settings; GRIDS holds its tuning grid (the same size for every arm).
# Grid keys are distill settings, or ``lr`` (the training schedule's learning rate).
ARMS: dict[str, dict[str, Any]] = {
    "none": {"labels": "few", "settings": {"method": "none"}},
    "none-ls": {"labels": "few", "settings": {"method": "none", "label_smoothing": 0.1}},
    "kd": {"labels": "few", "settings": {"method": "kd"}},
    "simkd": {"labels": "few", "settings": {"method": "simkd"}},
    # ATSC's arms name what the teacher learns from explicitly, so they mean the same whatever the default is.
    "atsc": {"labels": "few", "settings": {"method": "atsc", "teacher_feedback": True, "teacher_every": 1}},
    "atsc-control": {"labels": "few", "settings": {"method": "atsc", "teacher_feedback": False, "teacher_every": 1}},
    # the control with the teacher stepping on every 4th step only (a step within 1.5x of KD's)
    "atsc-control-every4": {"labels": "few", "settings": {"method": "atsc", "teacher_feedback": False,
                                                          "teacher_every": 4}},
    "atsc-frozen": {"labels": "few", "settings": {"method": "atsc", "teacher_adapt": "none"}},
    "all-labels": {"labels": "all", "settings": {"method": "none"}},
    # shift regime: what the teacher adapts, and what it learns from
    "atsc-bn": {"labels": "few", "settings": {"method": "atsc", "teacher_adapt": "bn"}},
    "atsc-pseudo": {"labels": "few", "settings": {"method": "atsc", "pseudo_threshold": 0.9, "teacher_feedback": True,
                                                  "teacher_every": 1}},
    "two-stage": {"labels": "few", "settings": {"method": "kd"}, "teacher": "fine-tuned"},
}
GRIDS: dict[str, dict[str, list[Any]]] = {
    "none": {"lr": [0.025, 0.05, 0.1, 0.2]},
    "all-labels": {"lr": [0.025, 0.05, 0.1, 0.2]},
    "none-ls": {"label_smoothing": [0.05, 0.1, 0.2, 0.3]},
    "kd": {"temperature": [2.0, 4.0], "ce_weight,kl_weight": [(0.5, 0.5), (0.1, 0.9)]},
    "two-stage": {"temperature": [2.0, 4.0], "ce_weight,kl_weight": [(0.5, 0.5), (0.1, 0.9)]},
    "simkd": {"beta": [0.5, 1.0, 2.0, 4.0]},
    "atsc": {"shared_kl": [1.0, 2.0], "teacher_lr_scale": [0.1, 0.3]},
    "atsc-control": {"shared_kl": [1.0, 2.0], "teacher_lr_scale": [0.1, 0.3]},
    "atsc-control-every4": {"shared_kl": [1.0, 2.0], "teacher_lr_scale": [0.1, 0.3]},
    "atsc-frozen": {"shared_kl": [0.5, 1.0, 2.0, 4.0]},
    "atsc-bn": {"shared_kl": [0.5, 1.0, 2.0, 4.0]},
    "atsc-pseudo": {"shared_kl": [1.0, 2.0], "pseudo_threshold": [0.8, 0.95]},
}
# The shift record's grids: two trials per arm (time), around what the budgets record chose on its own
# validation split (lr 0.1-0.2, T 2 with 0.5/0.5, shared_kl 2, teacher lr x 0.3).
SHIFT_GRIDS: dict[str, dict[str, list[Any]]] = {
    "none": {"lr": [0.1, 0.2]},
    "all-labels": {"lr": [0.05, 0.1]},
    "none-ls": {"label_smoothing": [0.1, 0.2]},
    "kd": {"temperature": [2.0, 4.0], "ce_weight,kl_weight": [(0.5, 0.5)]},
    "two-stage": {"temperature": [2.0, 4.0], "ce_weight,kl_weight": [(0.5, 0.5)]},
    "simkd": {"beta": [1.0, 2.0]},
    "atsc": {"shared_kl": [2.0], "teacher_lr_scale": [0.1, 0.3]},
    "atsc-control": {"shared_kl": [2.0], "teacher_lr_scale": [0.1, 0.3]},
    "atsc-control-every4": {"shared_kl": [2.0], "teacher_lr_scale": [0.1, 0.3]},
    "atsc-frozen": {"shared_kl": [1.0, 2.0]},
    "atsc-bn": {"shared_kl": [1.0, 2.0]},
    "atsc-pseudo": {"shared_kl": [2.0], "teacher_lr_scale": [0.3], "pseudo_threshold": [0.8, 0.95]},
}
RECORD_ARMS = {
    "budgets": ["none", "none-ls", "kd", "simkd", "atsc", "atsc-control", "atsc-control-every4", "atsc-bn",
                "atsc-frozen", "all-labels"],
    "shift": ["none", "none-ls", "kd", "simkd", "atsc", "atsc-control", "atsc-control-every4", "atsc-frozen",
              "atsc-bn", "atsc-pseudo", "two-stage", "all-labels"],
}
COMPARED = ("none", "none-ls", "kd", "simkd", "atsc", "atsc-control", "atsc-control-every4", "atsc-frozen", "atsc-bn",
            "two-stage", "all-labels")


def grid_points(arm: str) -> list[dict[str, Any]]:
    """The arm's trials: the product of its grid, with paired keys ("a,b") spread out."""
    grid = GRIDS[arm]
    points: list[dict[str, Any]] = []
    for values in itertools.product(*grid.values()):
        point: dict[str, Any] = {}
        for key, value in zip(grid, values):
            if "," in key:
                point.update(zip(key.split(","), value))
            else:
                point[key] = value
        points.append(point)
    return points


@dataclass(frozen=True)
class Job:
    """One training run: an arm with settings, a schedule and a seed."""

    arm: str
    point: dict[str, Any]
    passes: int
    seed: int
    out: str
    purpose: str  # "tune" or "final"
    teacher: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def settings(self) -> dict[str, Any]:
        settings = dict(ARMS[self.arm]["settings"])
        settings.update({k: v for k, v in self.point.items() if k != "lr"})
        return settings


def _init_worker() -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)


def data_config(args: argparse.Namespace, labels: str, seed: int) -> Any:
    from compress.data import DataConfig

    return DataConfig(name="fashion-mnist", batch_size=args.batch_size, train_limit=args.train_limit, seed=seed,
                      labels_per_class=args.labels_per_class if labels == "few" else None,
                      holdout_per_class=args.holdout_per_class, labeled_share=args.labeled_share,
                      shift=args.shift if args.record == "shift" else None, shift_seed=0, workers=0)


def summary_of(out: Path, settings: dict[str, Any], passes: int, seed: int, lr: float,
               amp: str = "auto") -> dict[str, Any] | None:
    """The summary of a run finished in ``out`` with exactly these settings, else None."""
    path = out / "summary.json"
    if not path.exists():
        return None
    summary = json.loads(path.read_text())
    cfg = summary.get("train_config", {})
    method = summary.get("method") or {}
    from compress.distill.config import LATER_SETTINGS  # a run records these only when away from these values

    same = (all(method.get(k, LATER_SETTINGS.get(k)) == v for k, v in settings.items() if k != "method")
            and method.get("name", method.get("method")) in (None, settings["method"])
            and summary.get("epochs") == passes and cfg.get("seed") == seed and abs(cfg.get("lr", lr) - lr) < 1e-12
            and cfg.get("amp", "auto") == amp)
    return summary if same and summary.get("test_top1") is not None else None


def fine_tuned_teacher(args: argparse.Namespace, seed: int) -> str:
    """Stage one of the two-stage baseline: the clean teacher fine-tuned on the labelled device images
    (its best epoch on the validation split). Trained once, reused by every seed's KD run."""
    from compress.train import TrainConfig
    from compress.workflows import train_teacher_run

    out = Path(args.work) / "fine-tuned-teacher" / f"seed{seed}"
    best = out / "best.safetensors"
    if (out / "summary.json").exists() and best.exists():
        return str(best)
    shutil.rmtree(out, ignore_errors=True)
    train_teacher_run(args.teacher_model, data_config(args, "few", seed),
                      TrainConfig(epochs=args.fine_tune_epochs, lr=args.fine_tune_lr, seed=seed, device="cpu"), out,
                      init=args.teacher, progress=False)
    return str(best)


def run_job(args: argparse.Namespace, job: Job) -> dict[str, Any]:
    """Train one run (or reuse it) and return its row."""
    from compress.distill import DistillConfig
    from compress.train import TrainConfig
    from compress.workflows import distill_run

    out = Path(job.out)
    lr = float(job.point.get("lr", args.lr))
    summary = summary_of(out, job.settings, job.passes, job.seed, lr, args.amp)
    teacher = args.teacher
    if summary is None:
        if ARMS[job.arm].get("teacher") == "fine-tuned":
            teacher = fine_tuned_teacher(args, args.tune_seed)
        shutil.rmtree(out, ignore_errors=True)
        settings = dict(job.settings)
        method = settings.pop("method")
        distill_run(args.student, [teacher], [], DistillConfig(method, **settings),
                    data_config(args, ARMS[job.arm]["labels"], job.seed),
                    TrainConfig(epochs=job.passes, lr=lr, seed=job.seed, device="cpu", amp=args.amp), out,
                    log=lambda _: None,
                    progress=False)
        summary = summary_of(out, job.settings, job.passes, job.seed, lr, args.amp)
        if summary is None:
            raise RuntimeError(f"{out}: finished without a matching summary with test_top1")
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    chosen = history[int(summary["best_epoch"]) - 1]
    return {"arm": job.arm, "point": job.point, "passes": job.passes, "seed": job.seed, "purpose": job.purpose,
            "val_top1": summary["best_top1"], "best_epoch": summary["best_epoch"], "test_top1": summary["test_top1"],
            "test_epoch": summary.get("test_epoch"), "val_curve": [row["val_top1"] for row in history],
            "teacher_val_top1_after": chosen.get("teacher_top1"), "teacher_kept": chosen.get("teacher_kept"),
            "images_per_s": summary["train_images_per_s"], "wall_s": summary["wall_seconds"]}


def mean_std(values: list[float]) -> tuple[float, float]:
    return (statistics.fmean(values), statistics.pstdev(values)) if values else (float("nan"), 0.0)


def point_name(point: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in point.items())


class Record:
    """The rows so far, the settings chosen on validation, and the JSON + Markdown written from them."""

    def __init__(self, args: argparse.Namespace, arms: list[str]) -> None:
        self.args, self.arms = args, arms
        self.rows: list[dict[str, Any]] = []
        self.chosen: dict[str, dict[str, Any]] = {}
        self.started = time.time()

    def choose(self, arm: str) -> dict[str, Any] | None:
        """The arm's grid point with the best validation top-1 on the tuning seed (first on ties)."""
        trials = [r for r in self.rows if r["arm"] == arm and r["purpose"] == "tune"]
        if len(trials) < len(grid_points(arm)):
            return None
        best = max(trials, key=lambda r: r["val_top1"])
        self.chosen[arm] = best["point"]
        return best["point"]

    def finals(self, arm: str, passes: int) -> dict[int, dict[str, Any]]:
        return {r["seed"]: r for r in self.rows if r["arm"] == arm and r["passes"] == passes and r["purpose"] == "final"}

    def cells(self) -> list[dict[str, Any]]:
        cells = []
        for passes in self.args.passes:
            for arm in self.arms:
                runs = sorted(self.finals(arm, passes).values(), key=lambda r: r["seed"])
                if not runs:
                    continue
                test, val = mean_std([r["test_top1"] for r in runs]), mean_std([r["val_top1"] for r in runs])
                after = [r["teacher_val_top1_after"] for r in runs if r["teacher_val_top1_after"] is not None]
                cells.append({"passes": passes, "arm": arm, "seeds": [r["seed"] for r in runs],
                              "test_mean": test[0], "test_std": test[1], "val_mean": val[0], "val_std": val[1],
                              "test_per_seed": [r["test_top1"] for r in runs],
                              "best_epochs": [r["best_epoch"] for r in runs],
                              "teacher_val_after": statistics.fmean(after) if after else None,
                              "images_per_s": statistics.fmean(r["images_per_s"] for r in runs)})
        return cells

    def paired(self, reference: str) -> list[dict[str, Any]]:
        out = []
        for passes in self.args.passes:
            mine = self.finals(reference, passes)
            for other in (a for a in COMPARED if a in self.arms and a != reference):
                theirs = self.finals(other, passes)
                seeds = sorted(set(mine) & set(theirs))
                if not seeds:
                    continue
                diffs = [mine[s]["test_top1"] - theirs[s]["test_top1"] for s in seeds]
                m, s = mean_std(diffs)
                out.append({"passes": passes, "reference": reference, "versus": other, "mean": m, "std": s,
                            "per_seed": diffs, "wins": sum(d > 0 for d in diffs), "seeds": len(seeds)})
        return out

    def write(self) -> None:
        args = self.args
        references = [a for a in ("atsc", "atsc-control-every4", "atsc-pseudo", "atsc-bn", "atsc-frozen")
                      if a in self.arms]
        record = {"command": "python " + " ".join(sys.argv), "record": args.record,
                  "setup": {k: v for k, v in vars(args).items() if k not in ("out", "work")},
                  "grids": {a: GRIDS[a] for a in self.arms}, "chosen": self.chosen, "rows": self.rows,
                  "cells": self.cells(), "paired": [p for r in references for p in self.paired(r)],
                  "wall_s": time.time() - self.started, "cpu": cpu_model()}
        from compress.artifacts import environment, write_json

        record["environment"] = environment()
        out = Path(args.out)
        write_json(out.with_suffix(".json"), record)
        out.with_suffix(".md").write_text(self.markdown(record))

    def markdown(self, record: dict[str, Any]) -> str:
        args = self.args
        train_images = args.train_limit - args.holdout_per_class * 10
        labelled = (args.labels_per_class - args.holdout_per_class) * 10
        title = ("Distillation at the budgets users train to" if args.record == "budgets"
                 else f"Distillation when the device sees other images: shift '{args.shift}'")
        lines = [f"# {title} (Fashion-MNIST, teacher → {args.student})", "", f"`{record['command']}`", "",
                 f"CPU: {record['cpu']}; runs of 1 thread, {args.jobs} side by side (images/s compare within a "
                 "column only).", "",
                 "**Protocol.** A fixed training subset of "
                 f"{args.train_limit} images (the first of a fixed permutation of the 60k); {args.labels_per_class} "
                 f"labels per class, of which {args.holdout_per_class} per class are held out as the validation split "
                 f"(removed from training): {labelled} labelled and {train_images - labelled} unlabelled training "
                 f"images, {args.holdout_per_class * 10} validation images. Every arm's settings were chosen on the "
                 f"validation split from a grid of {len(grid_points('kd'))} trials per arm (seed {args.tune_seed}, "
                 f"{args.tune_passes} pass(es)); every run's epoch is chosen on it; the 10k test split is read once "
                 "per final run, at that epoch. `all-labels` trains the student alone on every training image's label "
                 "(the ceiling). A pass is one sweep of the training subset's size "
                 f"({train_images // args.batch_size} steps of batch {args.batch_size}, lr {args.lr} cosine, unless "
                 "tuned); the student alone gets the same steps on labelled batches. Seeds "
                 f"{args.seeds}: same data order and student initialisation per seed across arms.", ""]
        if args.record == "shift":
            lines += [f"Every training and test image goes through the seeded shift `{args.shift}` "
                      "(`compress.data.shift`); the teacher is the clean one. `two-stage`: the teacher fine-tuned on "
                      f"the labelled shifted images ({args.fine_tune_epochs} epochs, lr {args.fine_tune_lr}, best "
                      "epoch on validation; once, for every seed), then KD from it.", ""]
        lines += ["Settings chosen on validation:", "", "| arm | grid | chosen |", "|---|---|---|"]
        for arm in self.arms:
            grid = "; ".join(f"{k}: {v}" for k, v in GRIDS[arm].items())
            chosen = point_name(self.chosen[arm]) if arm in self.chosen else "(tuning not finished)"
            lines.append(f"| {arm} | {grid} | {chosen} |")
        lines += ["", "| passes | arm | test top-1, mean ± std | per seed | val top-1 | chosen epochs | teacher val after "
                  "| train img/s |", "|---|---|---|---|---|---|---|---|"]
        for c in record["cells"]:
            after = "–" if c["teacher_val_after"] is None else f"{c['teacher_val_after']:.1f}"
            lines.append(f"| {c['passes']} | {c['arm']} | {c['test_mean']:.2f} ± {c['test_std']:.2f} | "
                         f"{', '.join(f'{v:.2f}' for v in c['test_per_seed'])} | {c['val_mean']:.2f} | "
                         f"{', '.join(str(e) for e in c['best_epochs'])} | {after} | {c['images_per_s']:.0f} |")
        if record["paired"]:
            lines += ["", "Paired differences on the test split (same seed: same data order and initialisation):", "",
                      "| passes | arm − | other | mean ± std (pt) | per seed | ahead |", "|---|---|---|---|---|---|"]
            for p in record["paired"]:
                lines.append(f"| {p['passes']} | {p['reference']} | {p['versus']} | {p['mean']:+.2f} ± {p['std']:.2f} | "
                             f"{', '.join(f'{v:+.2f}' for v in p['per_seed'])} | {p['wins']}/{p['seeds']} |")
        curves = [r for r in self.rows if r["purpose"] == "final" and r["passes"] == max(args.passes)]
        if curves and max(args.passes) > 1:
            lines += ["", f"Validation top-1 by pass at {max(args.passes)} passes (mean over seeds):", "",
                      "| arm | " + " | ".join(str(i + 1) for i in range(max(args.passes))) + " |",
                      "|---|" + "---|" * max(args.passes)]
            for arm in self.arms:
                runs = [r["val_curve"] for r in curves if r["arm"] == arm]
                if runs:
                    means = [statistics.fmean(c[i] for c in runs) for i in range(len(runs[0]))]
                    lines.append(f"| {arm} | " + " | ".join(f"{v:.1f}" for v in means) + " |")
        return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--record", choices=sorted(RECORD_ARMS), default="budgets")
    parser.add_argument("--teacher", default="fashion-mnist-resnet20",
                        help="the strong clean teacher (a checkpoint)")
    parser.add_argument("--teacher-model", default="resnet20", help="its architecture (for the two-stage baseline)")
    parser.add_argument("--student", default="resnet8")
    parser.add_argument("--arms", nargs="+", default=None, help="default: the record's arms")
    parser.add_argument("--train-limit", type=int, default=3000)
    parser.add_argument("--labels-per-class", type=int, default=100)
    parser.add_argument("--holdout-per-class", type=int, default=20)
    parser.add_argument("--labeled-share", type=float, default=0.25)
    parser.add_argument("--shift", default="camera")
    parser.add_argument("--passes", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--long-arms", nargs="+", default=None,
                        help="only these arms at the longest schedule (default: every arm), when time is short")
    parser.add_argument("--tune-passes", type=int, default=1)
    parser.add_argument("--tune-seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--amp", choices=["auto", "bf16", "off"], default="auto",
                        help="mixed precision of every run (bf16: autocast, for the accuracy check of issue 22)")
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--fine-tune-epochs", type=int, default=4)
    parser.add_argument("--fine-tune-lr", type=float, default=0.01)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", required=True, help="results path without extension (.json and .md are written)")
    parser.add_argument("--work", required=True, help="folder for the runs (reused when run again)")
    args = parser.parse_args()
    arms = args.arms or RECORD_ARMS[args.record]
    if args.record == "shift":
        GRIDS.update(SHIFT_GRIDS)
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        parser.error(f"unknown arms {unknown}; known: {sorted(ARMS)}")
    work = Path(args.work)
    record = Record(args, arms)

    tune = [Job(arm, point, args.tune_passes, args.tune_seed, str(work / "tune" / arm / f"trial{i}"), "tune")
            for arm in arms for i, point in enumerate(grid_points(arm))]

    def finals(arm: str, point: dict[str, Any]) -> list[Job]:
        # longest schedules first: they decide the record and take the longest
        return [Job(arm, point, passes, seed, str(work / f"passes{passes}" / arm / f"seed{seed}"), "final")
                for passes in sorted(args.passes, reverse=True) for seed in args.seeds
                if passes < max(args.passes) or args.long_arms is None or arm in args.long_arms]

    if any(ARMS[a].get("teacher") == "fine-tuned" for a in arms):  # stage one of the two-stage baseline, once
        # once, before any run needs it: a user fine-tunes once; the seeds vary the student
        print(f"fine-tuned teacher: {fine_tuned_teacher(args, args.tune_seed)}", flush=True)
    pending: dict[Future[dict[str, Any]], Job] = {}
    queue = list(tune)
    with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn"), initializer=_init_worker) as pool:
        while queue or pending:
            while queue and len(pending) < args.jobs:
                job = queue.pop(0)
                pending[pool.submit(run_job, args, job)] = job
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                job = pending.pop(future)
                row = future.result()
                record.rows.append(row)
                print(f"{job.purpose:5s} {job.arm:13s} {point_name(job.point):40s} passes {job.passes:2d} seed "
                      f"{job.seed}: val {row['val_top1']:.2f} (epoch {row['best_epoch']}) test {row['test_top1']:.2f} "
                      f"[{time.time() - record.started:.0f} s]", flush=True)
                if job.purpose == "tune":
                    point = record.choose(job.arm)
                    if point is not None:
                        print(f"chosen for {job.arm}: {point_name(point)}", flush=True)
                        # final runs of an arm go behind the tuning still queued, longest first
                        queue.extend(finals(job.arm, point))
                        queue.sort(key=lambda j: (j.purpose != "tune", -j.passes))
                record.write()
    record.write()
    print(Path(args.out).with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
