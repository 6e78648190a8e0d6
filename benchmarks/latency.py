"""CPU latency/accuracy: PyTorch eager vs ONNX Runtime fp32 vs ONNX Runtime INT8.

Models: a Fashion-MNIST student (resnet8, small input; from --checkpoint, or trained here for
--train-seconds) and mobilenet_v2 at 224 px (random weights: fine for latency, its accuracy is not
meaningful and is not reported). Variants of one model are timed in interleaved blocks with short
pauses (``compress.export.timing.interleaved``) because timing noise on the shared 2-core box is about
+-20 %; the ratios against PyTorch eager are the per-round medians.

    .venv/bin/python benchmarks/latency.py --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from compress.data import DataConfig, load_data  # noqa: E402
from compress.data.preprocessing import Preprocessing  # noqa: E402
from compress.deployable import load_deployable  # noqa: E402
from compress.export.onnx import export_onnx, ort_session  # noqa: E402
from compress.export.quantize import QuantConfig, onnx_predict, quantize_int8  # noqa: E402
from compress.export.timing import interleaved, ratio  # noqa: E402
from compress.models import create_model  # noqa: E402

NAIVE = QuantConfig(per_channel=False, activation_type="int8", preprocess=False)  # ORT defaults, no pre-processing


def train_student(data: Any, seconds: float) -> torch.nn.Module:
    torch.manual_seed(0)
    model = create_model("resnet8", num_classes=10, in_channels=1, image_size=28)
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    model.train()
    start = time.time()
    while time.time() - start < seconds:
        for x, y in data.train:
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if time.time() - start >= seconds:
                break
    return model.eval()


def accuracy(predict: Callable[[np.ndarray], np.ndarray], x: np.ndarray, y: np.ndarray) -> float:
    return round(float((predict(x).argmax(1) == y).mean()), 4)


def bench_model(name: str, model: torch.nn.Module, pre: Preprocessing, calib: np.ndarray, work: Path,
                eval_xy: tuple[np.ndarray, np.ndarray] | None, args: argparse.Namespace) -> dict[str, Any]:
    fp32 = export_onnx(model, pre, work / f"{name}.onnx")
    int8 = quantize_int8(fp32, work / f"{name}.int8.onnx", calib)
    naive = quantize_int8(fp32, work / f"{name}.naive-int8.onnx", calib, NAIVE)
    sessions = {"onnxruntime_fp32": ort_session(fp32, args.threads), "onnxruntime_int8": ort_session(int8, args.threads),
                "onnxruntime_int8_naive": ort_session(naive, args.threads)}
    result: dict[str, Any] = {"model": name, "input": [pre.channels, pre.image_size, pre.image_size], "latency": {}}
    for batch in (1, 32):
        x = np.random.default_rng(0).standard_normal((batch, pre.channels, pre.image_size, pre.image_size))
        x = x.astype(np.float32)
        xt = torch.from_numpy(x)

        def eager() -> None:
            with torch.inference_mode():
                model(xt)

        variants: dict[str, Callable[[], object]] = {"pytorch_eager": eager}
        for key, sess in sessions.items():
            variants[key] = lambda s=sess: s.run(None, {"input": x})
        stats, rounds_p50 = interleaved(variants, batch, rounds=args.rounds, block_s=args.block_s, pause_s=0.1)
        result["latency"][str(batch)] = {
            k: {**stats[k].to_dict(), "p50_ratio_vs_eager": round(ratio(rounds_p50, k, "pytorch_eager"), 3),
                "p50_ratio_vs_ort_fp32": round(ratio(rounds_p50, k, "onnxruntime_fp32"), 3)} for k in variants}
    if eval_xy is not None:
        x, y = eval_xy
        with torch.inference_mode():
            result["accuracy"] = {"pytorch_eager": accuracy(lambda a: model(torch.from_numpy(a)).numpy(), x, y)}
        for key, sess in sessions.items():
            result["accuracy"][key] = accuracy(lambda a, s=sess: onnx_predict(s, a), x, y)
        result["accuracy"]["n"] = len(y)
    else:
        result["accuracy"] = "random weights: not meaningful"
    return result


def markdown(results: dict[str, Any]) -> str:
    lines = ["# CPU latency: PyTorch eager vs ONNX Runtime fp32 vs ONNX Runtime INT8", "",
             f"Command: `{results['command']}`  ", f"Host: {results['host']}, {results['threads']} threads; "
             f"torch {results['versions']['torch']}, onnxruntime {results['versions']['onnxruntime']}.  ",
             "Interleaved blocks (variants alternate every round with pauses); ratio = per-round median p50 "
             "ratio vs PyTorch eager / vs ONNX Runtime fp32. INT8 = QDQ, U8S8, per-channel, pre-processed (the shipped default); "
             "INT8 naive = ONNX Runtime defaults (S8S8, per-tensor, no pre-processing).", ""]
    for model in results["models"]:
        lines += [f"## {model['model']} (input {'x'.join(map(str, model['input']))})", ""]
        if isinstance(model["accuracy"], dict):
            acc = model["accuracy"]
            lines += [f"Fashion-MNIST top-1 on {acc['n']} validation images: " + ", ".join(
                f"{k} {v:.2%}" for k, v in acc.items() if k != "n"), ""]
        else:
            lines += [f"Accuracy: {model['accuracy']}.", ""]
        lines += ["| batch | runtime | p50 ms | p90 ms | p99 ms | img/s | ratio vs eager | ratio vs ORT fp32 |",
                  "|---:|---|---:|---:|---:|---:|---:|---:|"]
        for batch, rows in model["latency"].items():
            for name, r in rows.items():
                lines.append(f"| {batch} | {name} | {r['p50_ms']:.3f} | {r['p90_ms']:.3f} | {r['p99_ms']:.3f} | "
                             f"{r['throughput']:.0f} | {r['p50_ratio_vs_eager']:.3f} | {r['p50_ratio_vs_ort_fp32']:.3f} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", type=Path, default=None, help="deployable Fashion-MNIST student")
    p.add_argument("--train-seconds", type=float, default=60.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--block-s", type=float, default=0.4)
    p.add_argument("--eval-images", type=int, default=2000)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    p.add_argument("--skip-224", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    import onnxruntime

    data = load_data(DataConfig(val_limit=args.eval_images, train_limit=20000, augment=False, batch_size=128,
                                eval_batch_size=500))
    val = list(data.val)
    eval_xy = (torch.cat([x for x, _ in val]).numpy(), torch.cat([y for _, y in val]).numpy())
    calib = torch.cat([x for x, _ in list(data.train)[:4]]).numpy()[:512]
    if args.checkpoint:
        student, pre, _ = load_deployable(args.checkpoint)
        student_name = "student (checkpoint)"
    else:
        student, pre = train_student(data, args.train_seconds), data.preprocessing
        student_name = f"resnet8 (trained here for {args.train_seconds:.0f} s)"
    models = []
    with tempfile.TemporaryDirectory() as tmp:
        models.append(bench_model(student_name, student, pre, calib, Path(tmp), eval_xy, args))
        if not args.skip_224:
            torch.manual_seed(0)
            mv2 = create_model("mobilenet_v2", num_classes=10, in_channels=3, image_size=224).eval()
            pre224 = Preprocessing((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 224, 3, 3, 256)
            # calibration: the Fashion-MNIST images upsampled to 224 px and repeated to RGB
            calib224 = F.interpolate(torch.from_numpy(calib[:64]), size=224, mode="bilinear").repeat(1, 3, 1, 1).numpy()
            models.append(bench_model("mobilenet_v2 224 (random weights)", mv2, pre224, calib224, Path(tmp), None, args))
    results = {"command": " ".join([".venv/bin/python", "benchmarks/latency.py", *sys.argv[1:]]),
               "host": f"{platform.machine()} {platform.processor() or ''}".strip(), "threads": args.threads,
               "versions": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__},
               "models": models}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latency_cpu.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "latency_cpu.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
