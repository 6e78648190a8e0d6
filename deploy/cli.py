"""``python -m deploy`` / ``compress-deploy``: classify image files, or time a model. argparse only.

Every error is one line on stderr starting with ``error:``, never a traceback. Exit status: 0 when all
went well, 1 for a bad model or image file or a failed run, 2 for an option value out of range, 130
after Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Callable, NoReturn

import numpy as np

from deploy import load
from deploy.bench import MAX_BATCH, MAX_SECONDS, bench
from deploy.errors import DeployError, UsageError, one_line
from deploy.images import read_image
from deploy.runners import MAX_THREADS, Runner

MAX_BATCH_SIZES = 16  # each one is timed for --seconds
MAX_TOP = 100_000  # more than any classifier's classes; the model's own count is checked after loading

EXIT_STATUS = ("exit status: 0 all done, 1 a bad model or image file or a failed run, 2 a bad option value, "
               "130 interrupted (Ctrl-C)")


class OneLineParser(argparse.ArgumentParser):
    """argparse reporting a bad option in one line (not the usage text), with exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {one_line(message)} (see '{self.prog} --help')\n")


def _int_in(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be an integer from {low} to {high}, got '{text:.40}'")
        return value
    return parse


def _batch_sizes(text: str) -> list[int]:
    parse = _int_in(1, MAX_BATCH)
    sizes = [parse(part) for part in text.split(",")]
    if len(sizes) > MAX_BATCH_SIZES:
        raise argparse.ArgumentTypeError(f"at most {MAX_BATCH_SIZES} batch sizes, got {len(sizes)}")
    return sizes


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value <= MAX_SECONDS:  # NaN fails this comparison too
        raise argparse.ArgumentTypeError(f"must be a number of seconds above 0 and at most {MAX_SECONDS:.0f}, "
                                         f"got '{text:.40}'")
    return value


def _report(message: object) -> None:
    print(f"error: {one_line(message)}", file=sys.stderr)


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def _load(args: argparse.Namespace) -> Runner:
    return load(args.model, provider=args.provider, threads=args.threads, trust=args.trust)


def _probabilities(runner: Runner, path: str) -> np.ndarray:
    pixels = read_image(path)  # its errors name the file
    try:
        logits, _ = runner.predict(pixels)  # one at a time: files differ in size
    except DeployError as exc:
        raise DeployError(f"cannot classify '{path}': {exc}") from None
    return _softmax(logits)[0]


def classify(args: argparse.Namespace) -> int:
    runner = _load(args)
    if runner.num_classes is not None and args.top > runner.num_classes:
        raise UsageError(f"--top {args.top} is more than the model's {runner.num_classes} classes; "
                         f"use --top 1 to {runner.num_classes}")
    names, failed = runner.class_names, 0
    for path in args.images:
        try:
            probs = _probabilities(runner, path)
        except DeployError as exc:  # one bad file does not stop the batch
            _report(exc)
            failed += 1
            continue
        top = np.argsort(-probs)[: args.top]
        text = ", ".join(f"{names[i] if i < len(names) else i} {probs[i]:.3f}" for i in top)
        print(f"{one_line(path)}: {text}", flush=True)
    return 1 if failed else 0


def bench_cmd(args: argparse.Namespace) -> int:
    rows = bench(_load(args), args.batch, args.seconds)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(f"{'batch':>5} {'p50 ms':>9} {'p90 ms':>9} {'p99 ms':>9} {'img/s':>9} {'runs':>6}")
        for r in rows:
            print(f"{r['batch']:>5} {r['p50_ms']:>9.3f} {r['p90_ms']:>9.3f} {r['p99_ms']:>9.3f} "
                  f"{r['throughput_img_s']:>9.1f} {r['n']:>6}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="compress-deploy", description="Run exported compress models (no torch).",
                      epilog=EXIT_STATUS)
    sub = p.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("model", help=".onnx, .plan/.engine or OpenVINO .xml (its .bin beside it)")
    common.add_argument("--provider", default="cpu", choices=["cpu", "cuda", "tensorrt"],
                        help="ONNX Runtime device (an OpenVINO .xml runs on the cpu)")
    common.add_argument("--threads", type=_int_in(1, MAX_THREADS), default=None,
                        help=f"CPU threads (ONNX Runtime, OpenVINO), 1 to {MAX_THREADS}")
    common.add_argument("--trust", action="store_true", help="skip the sidecar SHA-256 check")
    c = sub.add_parser("classify", parents=[common], help="classify image files", epilog=EXIT_STATUS,
                       description="Print the top classes of each image file (PNG, JPEG, BMP, TIFF, GIF, WebP, "
                       "PPM; 8/16-bit and float grey). A file that cannot be read or classified is reported "
                       "on stderr, one line each; the other files are still classified, and the exit status "
                       "is then 1.")
    c.add_argument("images", nargs="+")
    c.add_argument("--top", type=_int_in(1, MAX_TOP), default=1, help="classes to print, at most the model's")
    c.set_defaults(func=classify)
    b = sub.add_parser("bench", parents=[common], help="latency percentiles and throughput", epilog=EXIT_STATUS)
    b.add_argument("--batch", type=_batch_sizes, default=[1, 32],
                   help=f"comma-separated batch sizes, each 1 to {MAX_BATCH} (default 1,32)")
    b.add_argument("--seconds", type=_seconds, default=5.0, help="timing per batch size (default 5)")
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=bench_cmd)
    return p


def main(argv: list[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):  # a file name that is not UTF-8 must not crash the print
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    try:
        args = parser().parse_args(argv)
        return int(args.func(args))
    except KeyboardInterrupt:  # Ctrl-C while loading or timing: nothing is written, so nothing to finish
        _report("interrupted (Ctrl-C)")
        return 130
    except UsageError as exc:
        _report(exc)
        return 2
    except DeployError as exc:
        _report(exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())
