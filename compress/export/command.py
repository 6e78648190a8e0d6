"""``compress export``: checkpoint -> model.onnx (+ model.int8.onnx, model.plan), all checked.

Everything is written into a hidden staging folder inside ``out_dir`` and moved into place only
when every step (export, parity, quantization, engine build) has succeeded, so a failure never
leaves a half-finished set of artifacts that looks complete.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any


from compress.artifacts import ensure_writable_dir, sidecar_path
from compress.data import DataConfig, load_data
from compress.data.loaders import take
from compress.deployable import load_deployable
from compress.errors import ConfigError
from compress.export.onnx import EXPORTERS, check_parity, export_onnx
from compress.export.quantize import CALIBRATION_METHODS, QuantConfig, compare_int8, quantize_int8
from compress.export.tensorrt import PRECISIONS, build_engine, parse_batch, require_tensorrt

DEFAULT_DATASET = "fashion-mnist"


def _data_config(record: dict[str, Any], data: DataConfig | None, channels: int, image_size: int,
                 val_limit: int, train_limit: int) -> DataConfig:
    if data is None:
        recorded = record.get("data") if isinstance(record.get("data"), dict) else {}
        data = DataConfig(name=str(recorded.get("name", DEFAULT_DATASET)), data_dir=recorded.get("data_dir"))
    sized = data.name in ("imagefolder", "imagenet", "synthetic")
    return replace(data, val_limit=val_limit, train_limit=train_limit, augment=False, channels=channels,
                   image_size=image_size if sized else data.image_size, workers=0)


def export_command(
    checkpoint: Path,
    out_dir: Path,
    *,
    onnx: bool = True,
    int8: bool = False,
    trt: bool = False,
    precision: str = "fp16",
    batch: str = "1,8,32",
    calibration: int = 512,
    calib_method: str = "minmax",
    exporter: str = "dynamo",
    data: DataConfig | None = None,
    trust: bool = False,
    progress: bool = True,
    parity_images: int = 256,
    eval_images: int = 2000,
    workspace_mb: int = 1024,
) -> dict[str, Any]:
    """Export a deployable checkpoint; returns a summary (paths, parity, INT8 accuracy/latency)."""
    # every option is checked before minutes of work start
    if not (onnx or int8 or trt):
        raise ConfigError("nothing to export: pass --onnx, --int8 and/or --trt")
    if exporter not in EXPORTERS:
        raise ConfigError(f"unknown exporter '{exporter}': choose one of {', '.join(EXPORTERS)}")
    if calib_method not in CALIBRATION_METHODS:
        raise ConfigError(f"unknown calibration method '{calib_method}': choose {', '.join(CALIBRATION_METHODS)}")
    if calibration < 1:
        raise ConfigError(f"--calibration must be at least 1 image, got {calibration}")
    if trt and precision not in PRECISIONS:
        raise ConfigError(f"unknown precision '{precision}': choose one of {', '.join(PRECISIONS)}")
    profile = parse_batch(batch) if trt else None
    if trt:
        require_tensorrt()  # a missing TensorRT is reported before any export work

    def say(message: str) -> None:
        if progress:
            print(message, file=sys.stderr, flush=True)

    module, pre, record = load_deployable(checkpoint, trust=trust)
    cfg = _data_config(record, data, pre.channels, pre.image_size, max(parity_images, eval_images), calibration)
    bundle = load_data(cfg)
    val_x, val_y = take(bundle.val, cfg.val_limit or eval_images)
    summary: dict[str, Any] = {"checkpoint": str(checkpoint), "dataset": cfg.name}

    # the output folder is created only once every input has been read successfully
    out_dir = ensure_writable_dir(out_dir)
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=out_dir))
    try:
        onnx_path = staging / "model.onnx"
        say(f"exporting ONNX ({exporter}) ...")
        export_onnx(module, pre, onnx_path, exporter=exporter, inputs={"checkpoint": str(record.get("sha256", ""))})
        parity = check_parity(module, onnx_path, val_x[:parity_images])
        say(f"parity: {parity.summary()}")
        summary["parity"] = parity.to_dict()
        shipped = [onnx_path]

        if int8 or (trt and precision == "int8"):
            calib_x, _ = take(bundle.train, calibration)
            calib = calib_x.numpy()
        if int8:
            say(f"quantizing to INT8 ({calib_method}, {len(calib)} calibration images) ...")
            int8_path = quantize_int8(onnx_path, staging / "model.int8.onnx", calib, QuantConfig(method=calib_method))
            report = compare_int8(onnx_path, int8_path, val_x.numpy(), val_y.numpy())
            say(f"int8: top-1 {report.int8_accuracy:.2%} vs fp32 {report.fp32_accuracy:.2%}, latency ratio "
                + ", ".join(f"batch {b}: {v['int8_over_fp32']:.2f}x" for b, v in report.latency.items()))
            summary["int8"] = report.to_dict()
            shipped.append(int8_path)
        if trt:
            assert profile is not None
            source = onnx_path
            if precision == "int8":
                # TensorRT takes only symmetric signed Q/DQ: a separate quantization from the ORT one
                source = quantize_int8(onnx_path, staging / "model.trt-int8.onnx", calib,
                                       QuantConfig.for_tensorrt(calib_method))
            say(f"building TensorRT engine ({precision}, batch {profile.min},{profile.opt},{profile.max}) ...")
            engine = build_engine(source, staging / "model.plan", precision=precision, batch=profile,
                                  workspace_mb=workspace_mb, timing_cache_path=out_dir / "timing.cache")
            shipped.append(engine)
            if precision == "int8":
                shipped.append(source)
        if not onnx:
            shipped.remove(onnx_path)
        paths = {}
        for path in shipped:  # artifacts first, then their sidecars: a sidecar never points at nothing
            os.replace(path, out_dir / path.name)
            os.replace(sidecar_path(path), sidecar_path(out_dir / path.name))
            paths[path.name] = str(out_dir / path.name)
        summary["files"] = paths
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return summary
