"""Seeded mutations of real deploy inputs, for tests/deploy/test_deploy_fuzz.py.

Each mutator takes a ``random.Random`` and returns a hostile variant plus a short description, so a
failing case can be named and rebuilt from the seed. Mutations are structure-aware where plain byte
flips would rarely reach a check (ONNX metadata, tensor types and shapes, PNG headers), and byte-level
elsewhere.
"""

from __future__ import annotations

import io
import json
import random
from typing import Any

import numpy as np
import onnx
from hostile import png_header_size
from onnx import TensorProto
from PIL import Image

from compress.export.onnx import META_PREPROCESSING, set_metadata

HOSTILE_VALUES: list[Any] = [0, -1, 1, 3, 28, 10**5, 10**12, 2**63, 1.5, float("nan"), float("inf"), True, None,
                             "28", "", [], [0.5], [0.5] * 3, [float("nan")], [0.0], [-1.0], {}, "x" * 10_000,
                             ["a"] * 10, ["a\nb"] * 10, [[[[]]]], list(range(1000))]
FIELDS = ["mean", "std", "image_size", "channels", "resize_size", "class_names", "source_channels"]
ELEM_TYPES = [TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.INT64, TensorProto.UINT8, TensorProto.BOOL,
              TensorProto.STRING]
DIMS: list[Any] = [0, 1, 3, 100_000, "dyn", None]


def flip_bytes(rng: random.Random, data: bytes, count: int) -> bytes:
    out = bytearray(data)
    for _ in range(count):
        out[rng.randrange(len(out))] = rng.randrange(256)
    return bytes(out)


def mutate_metadata(rng: random.Random, pre: dict[str, Any]) -> tuple[str | None, str]:
    """A preprocessing metadata text (None: the key removed)."""
    choice = rng.randrange(5)
    if choice == 0:
        field, value = rng.choice(FIELDS), rng.choice(HOSTILE_VALUES)
        return json.dumps({**pre, field: value}), f"metadata {field}={str(value)[:30]}"
    if choice == 1:
        field = rng.choice(FIELDS)
        return json.dumps({k: v for k, v in pre.items() if k != field}), f"metadata without {field}"
    if choice == 2:
        text = json.dumps(pre)
        return text[: rng.randrange(len(text))], "metadata truncated"
    if choice == 3:
        return rng.choice(["[]", '"x"', "1", "null", "[" * 5000, "{" * 5000, "NaN"]), "metadata not an object"
    return None, "metadata removed"


def _set_dim(dim: Any, value: Any) -> None:
    if value is None:
        dim.Clear()
    elif isinstance(value, str):
        dim.dim_param = value
    else:
        dim.dim_value = value


def mutate_graph(rng: random.Random, model: Any) -> str:
    """Change one structural thing in ``model`` (in place): a tensor type, a shape, a weight or a node."""
    graph = model.graph
    choice = rng.randrange(6)
    if choice in (0, 1):
        tensor = (graph.input if choice == 0 else graph.output)[0].type.tensor_type
        if rng.random() < 0.5:
            tensor.elem_type = rng.choice(ELEM_TYPES)
            return f"{'input' if choice == 0 else 'output'} type {tensor.elem_type}"
        dims = tensor.shape.dim
        if rng.random() < 0.3 and len(dims):
            del dims[rng.randrange(len(dims))]
            return f"{'input' if choice == 0 else 'output'} rank {len(dims)}"
        index, value = rng.randrange(len(dims)), rng.choice(DIMS)
        _set_dim(dims[index], value)
        return f"{'input' if choice == 0 else 'output'} dim {index}={value}"
    if choice == 2 and len(graph.initializer):
        init = graph.initializer[rng.randrange(len(graph.initializer))]
        values = onnx.numpy_helper.to_array(init).copy()
        if values.size and np.issubdtype(values.dtype, np.floating):
            values.flat[rng.randrange(values.size)] = rng.choice([np.nan, np.inf, -np.inf, 1e38])
            init.CopyFrom(onnx.numpy_helper.from_array(values, init.name))
            return f"weight {init.name} non-finite"
    if choice == 3 and len(graph.node):
        node = graph.node[rng.randrange(len(graph.node))]
        node.op_type = rng.choice(["Relu", "Softmax", "Identity", "NoSuchOp", "Flatten"])
        return f"node op {node.op_type}"
    if choice == 4 and len(graph.node):
        node = graph.node[rng.randrange(len(graph.node))]
        if len(node.input):
            node.input[rng.randrange(len(node.input))] = rng.choice(["missing", "input", ""])
            return "node input renamed"
    model.ir_version = rng.choice([0, 3, 99])
    return f"ir_version {model.ir_version}"


def mutate_model(rng: random.Random, clean: bytes, pre: dict[str, Any]) -> tuple[bytes, str]:
    """A hostile variant of the serialized ONNX model ``clean``."""
    choice = rng.randrange(4)
    if choice == 3:
        data = flip_bytes(rng, clean, rng.choice([1, 8, 64]))
        return (data[: rng.randrange(len(data))] if rng.random() < 0.3 else data), "model bytes flipped"
    model = onnx.load_from_string(clean)
    if choice == 0:
        text, what = mutate_metadata(rng, pre)
        if text is None:
            kept = [p for p in model.metadata_props if p.key != META_PREPROCESSING]
            del model.metadata_props[:]
            model.metadata_props.extend(kept)
        else:
            set_metadata(model, {META_PREPROCESSING: text})
    else:
        what = mutate_graph(rng, model)
    return model.SerializeToString(), what


def mutate_sidecar(rng: random.Random, sha: str) -> tuple[bytes | None, str]:
    """Sidecar bytes (None: no sidecar) that deploy should refuse unless trusted."""
    return rng.choice([
        (None, "no sidecar"), (b"[1, 2]", "sidecar list"), (b'"abc"', "sidecar string"), (b"{bad", "sidecar bad JSON"),
        (b"[" * 100_000, "sidecar deep JSON"), (b"\xff\xfe", "sidecar not UTF-8"),
        (json.dumps({"sha256": sha[::-1]}).encode(), "sidecar wrong sha"), (b"{}", "sidecar without sha"),
        (json.dumps({"sha256": sha, "preprocessing": [1]}).encode(), "sidecar odd preprocessing")])


def image_bytes(rng: random.Random, pixels: np.ndarray) -> tuple[bytes, str]:
    """One of the picture's encodings deploy reads: 8/16-bit, float and integer, grey and colour."""
    u8 = pixels
    rgb = np.stack([u8, u8[::-1], 255 - u8], axis=-1)
    kind = rng.choice(["L.png", "RGB.png", "RGBA.png", "P.gif", "16.png", "F.tif", "I.tif", "RGB.jpg", "L.bmp",
                       "16.ppm", "RGB.webp", "1.png", "LA.png", "CMYK.jpg"])
    mode, fmt = kind.split(".")
    arrays = {"L": u8, "RGB": rgb, "16": u8.astype(np.uint16) * 257, "F": u8.astype(np.float32) / 255,
              "I": u8.astype(np.int32) * 8_421_504}
    img = Image.fromarray(arrays.get(mode, rgb if mode in ("RGBA", "CMYK", "P") else u8))
    if mode in ("RGBA", "P", "1", "LA", "CMYK"):
        img = img.convert(mode)
    buffer = io.BytesIO()
    img.save(buffer, format={"jpg": "JPEG", "tif": "TIFF", "ppm": "PPM"}.get(fmt, fmt.upper()))
    return buffer.getvalue(), kind


def mutate_image(rng: random.Random, data: bytes, kind: str) -> tuple[bytes, str]:
    """A damaged variant of the encoded image ``data``."""
    choice = rng.randrange(5)
    if choice == 0 and kind.endswith(".png"):
        width, height = rng.choice([(100_000, 100_000), (9000, 9000), (1, 10**7), (2**31 - 1, 1), (0, 5)])
        return png_header_size(data, width, height), f"{kind} header {width} x {height}"
    if choice == 1:
        return data[: rng.randrange(len(data))], f"{kind} truncated"
    if choice == 2:
        return data + bytes(rng.randrange(256) for _ in range(64)), f"{kind} trailing bytes"
    if choice == 3:
        return bytes(rng.randrange(256) for _ in range(rng.choice([0, 1, 100, 5000]))), "random bytes"
    return flip_bytes(rng, data, rng.choice([1, 4, 32])), f"{kind} bytes flipped"


def mutate_options(rng: random.Random) -> tuple[list[str], str]:
    """classify/bench options, often out of range."""
    if rng.random() < 0.5:
        top = rng.choice(["-1", "0", "1", "3", "10", "11", "x", "1e3", str(10**30)])
        return ["--top", top], f"--top {top}"
    threads = rng.choice(["0", "1", "2", "-3", str(10**6), "two"])
    return ["--threads", threads], f"--threads {threads}"


def bench_options(rng: random.Random) -> tuple[list[str], str]:
    tokens = ["1", "2", "7", "-1", "0", "1025", "200000", "x", ""]
    batch = ",".join(rng.choice(tokens) for _ in range(rng.choice([1, 2, 3, 17])))
    seconds = rng.choice(["0.01", "0.01", "0", "-1", "nan", "inf", "1e9", "x"])
    return ["--batch", batch, "--seconds", seconds], f"bench --batch {batch[:20]} --seconds {seconds}"
