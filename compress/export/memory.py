"""What an export step will hold in memory, estimated before it starts, and a one-line refusal when the machine
does not have it.

Calibration and evaluation stream their images batch by batch (``compress.export.quantize``), so what still
grows with a setting is (a) the images an export step holds as arrays (``--calibration`` training images and
``eval_images`` validation images) and (b) one calibration batch's activations: the entropy and percentile
calibrators get every intermediate tensor of the batch back from ONNX Runtime (which holds its own copy until
the call returns) and fold them into histograms one tensor at a time; the min/max calibrator holds at most one
inference's worth.
"""

from __future__ import annotations

import os
from pathlib import Path

from compress.errors import ConfigError

GIB = 1024 ** 3
EVAL_BATCH = 32  # images per inference call when a model is scored: what an evaluation holds at once
# bytes held per byte of one batch's activations, by calibration method (see the module docstring)
ACTIVATION_COPIES = {"minmax": 1, "entropy": 2, "percentile": 2}
MARGIN = 512 * 1024 ** 2  # the interpreter, torch, ONNX Runtime and the model itself
CALIBRATION_BUDGET = GIB  # activations a calibration batch may hold, all copies together


def available_bytes(meminfo: str | os.PathLike[str] = "/proc/meminfo") -> int | None:
    """``MemAvailable`` (what can be allocated without swapping); None where the kernel does not say."""
    try:
        for line in Path(meminfo).read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def activation_bytes(onnx_path: str | os.PathLike[str]) -> int:
    """Bytes of every float tensor one image produces inside the graph (shape inference, batch dimension 1);
    weights, stored or made by ``Constant`` nodes, are not activations, nor BatchNorm outputs (folded away)."""
    import onnx

    model = onnx.shape_inference.infer_shapes(onnx.load(str(onnx_path), load_external_data=False))
    floats = {onnx.TensorProto.FLOAT: 4, onnx.TensorProto.FLOAT16: 2, onnx.TensorProto.DOUBLE: 8}
    weights = {t.name for t in model.graph.initializer}
    weights |= {out for node in model.graph.node if node.op_type == "Constant" for out in node.output}
    # quantization pre-processing folds BatchNorm into the convolution before it: those outputs never exist
    weights |= {out for node in model.graph.node if node.op_type == "BatchNormalization" for out in node.output}
    total = 0
    for info in (*model.graph.value_info, *model.graph.output):
        tensor = info.type.tensor_type
        if info.name in weights or tensor.elem_type not in floats or not tensor.HasField("shape"):
            continue
        count = 1
        for i, dim in enumerate(tensor.shape.dim):
            # the batch axis is symbolic ("N"); any other unknown axis leaves this tensor out of the estimate
            count *= dim.dim_value if dim.HasField("dim_value") else (1 if i == 0 else 0)
        total += count * floats[tensor.elem_type]
    return total


def images_bytes(images: int, channels: int, image_size: int) -> int:
    """The float32 arrays an export reads its images into, counted twice: a loader's batches are
    concatenated into the array."""
    return MARGIN + 2 * images * channels * image_size * image_size * 4


def calibration_batch(per_image_activations: int, methods: tuple[str, ...], largest: int = 32) -> int:
    """The calibration batch: ``largest`` images, fewer for a model whose batch would hold more than
    ``CALIBRATION_BUDGET`` of activations (32 images of a 224 px mobilenet_v2 are 1.6 GB, twice over for the
    histogram calibrators). It depends on the model only, so a calibration is the same on every machine."""
    per_batch_image = max(ACTIVATION_COPIES[m] for m in methods) * max(per_image_activations, 1)
    return max(1, min(largest, CALIBRATION_BUDGET // per_batch_image))


def calibration_bytes(per_image_activations: int, batch: int, methods: tuple[str, ...]) -> int:
    """What INT8 calibration allocates beyond the images already held: one batch's activations, as often as
    the hungriest method keeps them."""
    return MARGIN + max(ACTIVATION_COPIES[m] for m in methods) * batch * per_image_activations


def check_fits(needed: int, what: str, bounded_by: str, available: int | None = None) -> None:
    """Refuse, in one line, work that would not fit the memory this machine has available now."""
    available = available_bytes() if available is None else available
    if available is not None and needed > available:
        raise ConfigError(f"{what} needs about {needed / GIB:.1f} GB of memory but only {available / GIB:.1f} GB "
                          f"is available: {bounded_by}")
