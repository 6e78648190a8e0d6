"""CPU runtimes side by side: PyTorch eager, ONNX Runtime fp32 / INT8, OpenVINO fp32 / INT8 built by compress,
and OpenVINO INT8 made the way OpenVINO's own docs make it (the peer pipeline).

Models: the main job's student (``--student``, Fashion-MNIST; its top-1 is reported) and mobilenet_v2 at
224 px (random weights with BatchNorm statistics from the calibration images: latency is real, accuracy
is not meaningful, so its rows report top-1 agreement with PyTorch eager instead).

Rows:
- ``pytorch_eager``: the module, ``torch.inference_mode``.
- ``ort_fp32`` / ``ort_int8``: compress's ``model.onnx`` and ``model.int8.onnx`` (QDQ, U8S8, per-channel, minmax).
- ``ov_fp32`` / ``ov_int8_nncf`` / ``ov_int8_qdq``: compress's OpenVINO IR and both INT8 routes
  (``compress.export.openvino``), compiled as ``deploy`` runs them: f32 inference.
- ``ov_int8_peer``: OpenVINO's documented flow, outside compress: ``ov.convert_model`` on the PyTorch
  module, ``nncf.quantize`` with its defaults on the same calibration images, ``compile_model`` with
  only the thread count set (so OpenVINO's own precision default applies, bf16 on CPUs that have it).

Timing: one process, every row at exactly the thread count of the point (``torch.set_num_threads``,
ONNX Runtime intra-op threads with one inter-op thread, OpenVINO ``INFERENCE_NUM_THREADS``), all rows in
interleaved blocks with a pause between blocks so the previous runtime's spinning threads go quiet
(``compress.export.timing.interleaved``): drift on a shared machine hits every row alike, and each ratio
is the median over rounds of two p50s measured seconds apart.

    .venv/bin/python benchmarks/runtimes.py --student runs/fashion_mnist/distill/atsc/model.safetensors \\
        --out benchmarks/results
    # a smoke test of the plumbing (seconds): --models student --threads 1 --batches 1 --seconds 0.2 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
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
from compress.data.loaders import take  # noqa: E402
from compress.data.preprocessing import Preprocessing  # noqa: E402
from compress.deployable import load_deployable  # noqa: E402
from compress.export.onnx import export_onnx, ort_session  # noqa: E402
from compress.export.openvino import OpenVinoOptions, compile_ir, export_openvino  # noqa: E402
from compress.export.quantize import quantize_int8  # noqa: E402
from compress.export.timing import interleaved, ratio  # noqa: E402
from compress.models import create_model  # noqa: E402
from compress.validate.latency import cpu_model  # noqa: E402

ROWS = ("pytorch_eager", "ort_fp32", "ort_int8", "ov_fp32", "ov_int8_nncf", "ov_int8_qdq", "ov_int8_peer")
STUDENT = ROOT / "runs" / "fashion_mnist" / "distill" / "atsc" / "model.safetensors"


class Model:
    """One model's artifacts, built once, and a callable per row at a given thread count."""

    def __init__(self, name: str, module: torch.nn.Module, pre: Preprocessing, calibration: np.ndarray,
                 work: Path) -> None:
        import nncf
        import openvino as ov

        self.name, self.module, self.pre = name, module.eval(), pre
        self.input = (pre.channels, pre.image_size, pre.image_size)
        started = time.perf_counter()
        self.onnx = export_onnx(module, pre, work / "model.onnx")
        self.int8 = quantize_int8(self.onnx, work / "model.int8.onnx", calibration)
        irs = export_openvino(self.onnx, work, OpenVinoOptions(int8=("nncf", "qdq")), calibration,
                              int8_onnx=self.int8).files
        self.irs = {"ov_fp32": irs["fp32"], "ov_int8_nncf": irs["nncf"], "ov_int8_qdq": irs["qdq"]}
        # the peer: OpenVINO's documented post-training quantization, every setting at its default. The input
        # shape is given with a dynamic batch, as our ONNX has it: left fully dynamic ([?,?,?,?]), the NNCF
        # model failed to compile at the CPU's default bf16 ("No suitable implementations", OpenVINO 2026.4)
        example = torch.from_numpy(calibration[:1])
        peer = ov.convert_model(module, example_input=example, input=[[-1, *self.input]])
        samples = [calibration[i:i + 1] for i in range(len(calibration))]
        self.peer = nncf.quantize(peer, nncf.Dataset(samples), subset_size=len(samples))
        self.peer_precision = "?"
        self.build_s = round(time.perf_counter() - started, 1)

    def runners(self, threads: int) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
        """Row -> ``f(x) -> logits`` with ``threads`` CPU threads, sessions created now (not while timed)."""
        import openvino as ov

        torch.set_num_threads(threads)

        def eager(x: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return self.module(torch.from_numpy(x)).numpy()

        out: dict[str, Callable[[np.ndarray], np.ndarray]] = {"pytorch_eager": eager}
        for row, path in (("ort_fp32", self.onnx), ("ort_int8", self.int8)):
            session = ort_session(path, threads)
            out[row] = lambda x, s=session: s.run(None, {"input": x})[0]
        for row, xml in self.irs.items():
            out[row] = _infer(compile_ir(xml, "f32", threads).create_infer_request())
        try:
            peer = ov.Core().compile_model(self.peer, "CPU", {"INFERENCE_NUM_THREADS": threads})
            self.peer_precision = str(peer.get_property("INFERENCE_PRECISION_HINT").to_string())
        except RuntimeError as exc:  # recorded, and the row is still timed at f32
            reason = [line for line in str(exc).splitlines() if line.strip()][-1][:120]
            peer = compile_ir_model(self.peer, threads)
            self.peer_precision = f"f32 (the default failed to compile: {reason})"
        out["ov_int8_peer"] = _infer(peer.create_infer_request())
        return out


def compile_ir_model(model: Any, threads: int) -> Any:
    import openvino as ov

    return ov.Core().compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32"})


def _infer(request: Any) -> Callable[[np.ndarray], np.ndarray]:
    return lambda x: request.infer({0: x})[0]


def _predict(fn: Callable[[np.ndarray], np.ndarray], images: np.ndarray, batch: int = 250) -> np.ndarray:
    return np.concatenate([fn(np.ascontiguousarray(images[i:i + batch])) for i in range(0, len(images), batch)])


def accuracy(model: Model, images: np.ndarray, labels: np.ndarray | None, threads: int) -> dict[str, Any]:
    """Top-1 per row with labels; without (random weights), top-1 agreement with PyTorch eager."""
    predictions = {row: _predict(fn, images).argmax(1) for row, fn in model.runners(threads).items()}
    reference = labels if labels is not None else predictions["pytorch_eager"]
    what = "top1" if labels is not None else "agreement_with_eager"
    return {"measure": what, "n": len(images),
            **{row: round(float((p == reference).mean()), 5) for row, p in predictions.items()}}


def time_point(model: Model, threads: int, batch: int, args: argparse.Namespace) -> dict[str, Any]:
    """Every row at (threads, batch), interleaved in one run; ratios per round against eager and ORT fp32."""
    runners = model.runners(threads)
    x = np.ascontiguousarray(np.random.default_rng(0).standard_normal((batch, *model.input)), np.float32)
    calls = {row: (lambda fn=fn: fn(x)) for row, fn in runners.items()}
    stats, rounds_p50 = interleaved(calls, batch, rounds=args.rounds, block_s=args.seconds, pause_s=0.1,
                                    threads=threads)
    return {row: {**{k: round(v, 4) if isinstance(v, float) else v for k, v in stats[row].to_dict().items()},
                  "ratio_vs_eager": round(ratio(rounds_p50, row, "pytorch_eager"), 4),
                  "ratio_vs_ort_fp32": round(ratio(rounds_p50, row, "ort_fp32"), 4)} for row in runners}


def _fashion_mnist(channels: int, args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(calibration images from the training split, validation images, their labels), preprocessed."""
    data = load_data(DataConfig(val_limit=args.eval_images, train_limit=args.calibration, augment=False,
                                channels=channels, workers=0))
    val_x, val_y = take(data.val, args.eval_images)
    return take(data.train, args.calibration)[0].numpy(), val_x.numpy(), val_y.numpy()


def _student(path: Path, args: argparse.Namespace) -> tuple[str, torch.nn.Module, Preprocessing, np.ndarray,
                                                             np.ndarray, np.ndarray | None]:
    if not path.is_file():
        raise SystemExit(f"error: student checkpoint '{path}' does not exist: run `bash scripts/main.sh` "
                         "(it writes runs/fashion_mnist) or pass --student")
    module, pre, _ = load_deployable(path)
    calibration, val_x, val_y = _fashion_mnist(pre.channels, args)
    return f"student ({path.parent.name}, {pre.image_size} px)", module, pre, calibration, val_x, val_y


def _to_224_rgb(images: np.ndarray) -> np.ndarray:
    return F.interpolate(torch.from_numpy(images), size=224, mode="bilinear").repeat(1, 3, 1, 1).numpy()


def _mobilenet(args: argparse.Namespace) -> tuple[str, torch.nn.Module, Preprocessing, np.ndarray, np.ndarray,
                                                   np.ndarray | None]:
    """Random weights; calibration and agreement images are Fashion-MNIST upsampled to 224 px RGB."""
    torch.manual_seed(0)
    module = create_model("mobilenet_v2", num_classes=10, in_channels=3, image_size=224)
    pre = Preprocessing((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 224, 3, 3, 256)
    calibration_28, val_28, _ = _fashion_mnist(1, args)
    calibration, val = _to_224_rgb(calibration_28), _to_224_rgb(val_28[:200])
    module.train()  # BatchNorm statistics from real images: O(1) activations, as a trained net has
    with torch.no_grad():
        for i in range(0, min(len(calibration), 64), 16):
            module(torch.from_numpy(calibration[i:i + 16]))
    return "mobilenet_v2 224 px (random weights)", module.eval(), pre, calibration, val, None


def markdown(record: dict[str, Any]) -> str:
    lines = ["# CPU runtimes: PyTorch, ONNX Runtime and OpenVINO (compress), and OpenVINO's own INT8 flow", "",
             f"Command: `{record['command']}`  ", f"CPU: {record['cpu']} ({record['cores']} cores usable; load "
             f"average {record['load_before']} before, {record['load_after']} after).  ",
             "Versions: " + ", ".join(f"{k} {v}" for k, v in record["versions"].items()) + ".  ",
             f"Every row timed in interleaved blocks of {record['seconds']} s, {record['rounds']} rounds, 0.1 s "
             "pauses; × = median over rounds of the per-round p50 ratio (measured seconds apart). Rows: see the "
             "script's docstring; `ov_int8_peer` is OpenVINO's documented NNCF flow outside compress, compiled "
             f"at OpenVINO's default precision ({record['peer_precision']} here), the compress rows at f32.", ""]
    for model in record["models"]:
        acc = model["accuracy"]
        what = "Fashion-MNIST top-1" if acc["measure"] == "top1" else "top-1 agreement with PyTorch eager"
        lines += [f"## {model['model']}", "", f"{what} on {acc['n']} images: " + ", ".join(
            f"{row} {acc[row]:.2%}" for row in ROWS) + f". Build time {model['build_s']} s.", "",
            "| threads | batch | runtime | p50 ms | p90 ms | img/s | × eager | × ORT fp32 |",
            "|---:|---:|---|---:|---:|---:|---:|---:|"]
        for point in model["points"]:
            for row in ROWS:
                r = point["rows"][row]
                lines.append(f"| {point['threads']} | {point['batch']} | {row} | {r['p50_ms']:.3f} | {r['p90_ms']:.3f} "
                             f"| {r['throughput']:.0f} | {r['ratio_vs_eager']:.3f} | {r['ratio_vs_ort_fp32']:.3f} |")
        lines.append("")
    lines += ["## Side by side (p50 ms)", "", side_by_side(record), ""]
    return "\n".join(lines)


def side_by_side(record: dict[str, Any]) -> str:
    """One row per runtime, one column per (model, threads, batch): the README's table."""
    columns = [(m["model"].split(" (")[0], p) for m in record["models"] for p in m["points"]]
    header = "| runtime | " + " | ".join(f"{name} t{p['threads']} b{p['batch']}" for name, p in columns) + " |"
    lines = [header, "|---|" + "---:|" * len(columns)]
    for row in ROWS:
        lines.append(f"| {row} | " + " | ".join(f"{p['rows'][row]['p50_ms']:.3f}" for _, p in columns) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--student", type=Path, default=STUDENT, help="the main job's deployable student")
    p.add_argument("--models", nargs="+", default=["student", "mobilenet_v2"], choices=["student", "mobilenet_v2"])
    p.add_argument("--threads", default="1,2", help="CPU thread counts, comma-separated")
    p.add_argument("--batches", default="1,32", help="batch sizes, comma-separated")
    p.add_argument("--seconds", type=float, default=0.4, help="seconds each row runs per round")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--calibration", type=int, default=300, help="INT8 calibration images (NNCF's default count)")
    p.add_argument("--eval-images", type=int, default=2000)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    p.add_argument("--tag", default="cpu", help="results/runtimes_<tag>.{json,md}")
    args = p.parse_args(argv)
    import nncf
    import onnxruntime
    import openvino

    threads, batches = [int(t) for t in args.threads.split(",")], [int(b) for b in args.batches.split(",")]
    load_before = round(os.getloadavg()[0], 2)
    specs = [_student(args.student, args) if name == "student" else _mobilenet(args) for name in args.models]
    models, peer_precision = [], "?"
    with tempfile.TemporaryDirectory(prefix="runtimes-") as tmp:
        for i, (label, net, prep, calib, eval_x, eval_y) in enumerate(specs):
            print(f"building {label} ...", file=sys.stderr, flush=True)
            model = Model(label, net, prep, calib, Path(tmp) / str(i))
            entry: dict[str, Any] = {"model": label, "input": list(model.input), "build_s": model.build_s,
                                     "accuracy": accuracy(model, eval_x, eval_y, max(threads)), "points": []}
            for t in threads:
                for b in batches:
                    print(f"timing {label}: {t} thread(s), batch {b} ...", file=sys.stderr, flush=True)
                    entry["points"].append({"threads": t, "batch": b, "rows": time_point(model, t, b, args)})
            peer_precision = model.peer_precision
            models.append(entry)
    record = {"command": " ".join([".venv/bin/python", "benchmarks/runtimes.py", *(argv or sys.argv[1:])]),
              "cpu": cpu_model(), "cores": len(os.sched_getaffinity(0)), "load_before": load_before,
              "load_after": round(os.getloadavg()[0], 2), "seconds": args.seconds, "rounds": args.rounds,
              "peer_precision": peer_precision,
              "versions": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
                           "openvino": openvino.__version__.split("-")[0], "nncf": nncf.__version__},
              "models": models}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"runtimes_{args.tag}.json").write_text(json.dumps(record, indent=2) + "\n")
    (args.out / f"runtimes_{args.tag}.md").write_text(markdown(record))
    print(side_by_side(record))
    return record


if __name__ == "__main__":
    main()
