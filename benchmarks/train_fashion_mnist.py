"""Record one CPU training run on full Fashion-MNIST (issue 2's benchmark: >= 90 % test top-1 in 15 min).

    python benchmarks/train_fashion_mnist.py --model resnet20 --epochs 8 --out benchmarks/results/train_fashion_mnist_cpu

Runs `compress train-teacher` in-process, timing the whole command (data loading, training, per-epoch
evaluation, checkpoints), and writes the record as JSON and Markdown.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from compress.artifacts import environment, write_json  # noqa: E402
from compress.validate.latency import environment_record  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--out", required=True, help="results path without extension")
    args = parser.parse_args()

    run = Path(tempfile.mkdtemp(prefix="fmnist-bench-")) / "run"
    argv = ["train-teacher", "--model", args.model, "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
            "--lr", str(args.lr), "--out", str(run), "--no-progress"]
    from compress.cli import main as cli

    started = time.perf_counter()
    try:
        cli(argv)
    except SystemExit as exc:
        if exc.code:
            raise
    wall = time.perf_counter() - started
    summary = json.loads((run / "summary.json").read_text())
    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    record = {
        "command": "compress " + shlex.join(argv[:-3]) + " --out RUN",
        "model": args.model, "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
        "wall_seconds": wall, "train_images_per_s": summary["train_images_per_s"],
        "last_top1": summary["last_top1"], "best_top1": summary["best_top1"], "best_epoch": summary["best_epoch"],
        "per_epoch": [{k: row[k] for k in ("epoch", "val_top1", "images_per_s", "epoch_seconds")} for row in history],
        "machine": environment_record().to_dict(), "environment": environment(),
    }
    out = Path(args.out)
    write_json(out.with_suffix(".json"), record)
    lines = [f"# CPU training run: {args.model} on Fashion-MNIST (60k train / 10k test)", "",
             f"`{record['command']}`", "",
             f"* wall time {wall / 60:.1f} min (whole command), {record['train_images_per_s']:.0f} training images/s",
             f"* test top-1 after the last epoch **{record['last_top1']:.2f}%** (best {record['best_top1']:.2f}% at "
             f"epoch {record['best_epoch']})", "", "| epoch | test top-1 | images/s | seconds |", "|---|---|---|---|"]
    lines += [f"| {r['epoch']} | {r['val_top1']:.2f} | {r['images_per_s']:.0f} | {r['epoch_seconds']:.0f} |"
              for r in record["per_epoch"]]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
