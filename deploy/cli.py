"""``python -m deploy`` / ``compress-deploy``: classify image files, or time a model. argparse only."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from deploy import load
from deploy.errors import DeployError


def _read_image(path: Path) -> np.ndarray:
    try:
        from PIL import Image
    except ImportError:
        raise DeployError("reading image files needs Pillow: pip install pillow") from None
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB") if img.mode not in ("L", "RGB", "RGBA") else img)
    except (OSError, ValueError) as exc:
        raise DeployError(f"cannot read image '{path}': {exc}") from None


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def classify(args: argparse.Namespace) -> int:
    runner = load(args.model, provider=args.provider, threads=args.threads, trust=args.trust)
    names = runner.class_names
    for path in args.images:
        logits, labels = runner.predict(_read_image(Path(path)))  # one at a time: files differ in size
        probs = _softmax(logits)[0]
        top = np.argsort(-probs)[: args.top]
        text = ", ".join(f"{names[i] if i < len(names) else i} {probs[i]:.3f}" for i in top)
        print(f"{path}: {text}")
    return 0


def bench_cmd(args: argparse.Namespace) -> int:
    from deploy.bench import bench

    runner = load(args.model, provider=args.provider, threads=args.threads, trust=args.trust)
    try:
        batches = [int(b) for b in args.batch.split(",")]
    except ValueError:
        raise DeployError(f"--batch must be comma-separated integers, got '{args.batch}'") from None
    rows = bench(runner, batches, args.seconds)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(f"{'batch':>5} {'p50 ms':>9} {'p90 ms':>9} {'p99 ms':>9} {'img/s':>9} {'runs':>6}")
        for r in rows:
            print(f"{r['batch']:>5} {r['p50_ms']:>9.3f} {r['p90_ms']:>9.3f} {r['p99_ms']:>9.3f} "
                  f"{r['throughput_img_s']:>9.1f} {r['n']:>6}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="compress-deploy", description="Run exported compress models (no torch).")
    sub = p.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("model", help=".onnx, .plan/.engine or OpenVINO .xml (its .bin beside it)")
    common.add_argument("--provider", default="cpu", choices=["cpu", "cuda", "tensorrt"],
                        help="ONNX Runtime device (an OpenVINO .xml runs on the cpu)")
    common.add_argument("--threads", type=int, default=None, help="CPU threads (ONNX Runtime, OpenVINO)")
    common.add_argument("--trust", action="store_true", help="skip the sidecar SHA-256 check")
    c = sub.add_parser("classify", parents=[common], help="classify image files")
    c.add_argument("images", nargs="+")
    c.add_argument("--top", type=int, default=1)
    c.set_defaults(func=classify)
    b = sub.add_parser("bench", parents=[common], help="latency percentiles and throughput")
    b.add_argument("--batch", default="1,32")
    b.add_argument("--seconds", type=float, default=5.0)
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=bench_cmd)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.func(args))
    except DeployError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
