"""Helpers for the hostile-input tests: the deploy CLI in a memory-bounded process, and hand-made files
(ONNX graphs, metadata edits, sidecars, TIFFs) that ``compress`` would never write.
"""

from __future__ import annotations

import json
import os
import re
import resource
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from compress.export.onnx import META_PREPROCESSING, set_metadata
from deploy.integrity import sha256_file

ROOT = Path(__file__).resolve().parents[2]
MEMORY_LIMIT = 2 << 30  # address space for one CLI run: a memory bomb fails fast instead of swapping

FASHION = {"mean": [0.286], "std": [0.353], "image_size": 28, "channels": 1, "source_channels": 1,
           "resize_size": None, "class_names": [f"class {i}" for i in range(10)]}


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str

    @property
    def error_lines(self) -> list[str]:
        return self.stderr.splitlines()


def run_cli(*args: Any, limit: int = MEMORY_LIMIT, timeout: float = 60) -> Run:
    """``python -m deploy ARGS`` with its address space capped at ``limit`` bytes."""
    def cap_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-m", "deploy", *map(str, args)], capture_output=True, cwd=ROOT,
                         env=env, timeout=timeout, preexec_fn=cap_memory)
    return Run(out.returncode, out.stdout.decode(errors="replace"), out.stderr.decode(errors="replace"))


def assert_error(run: Run, returncode: int, pattern: str, lines: int = 1) -> None:
    """Exit status ``returncode`` and ``lines`` clean one-line errors on stderr, one matching ``pattern``."""
    assert "Traceback" not in run.stderr, run.stderr[-2000:]
    assert run.returncode == returncode, (run.returncode, run.stderr[-2000:])
    assert len(run.error_lines) == lines, run.stderr
    assert all(line.startswith("error: ") for line in run.error_lines), run.stderr
    assert any(re.search(pattern, line) for line in run.error_lines), run.stderr


def write_sidecar(path: Path) -> Path:
    """The minimal sidecar deploy verifies: the file's SHA-256."""
    Path(f"{path}.json").write_text(json.dumps({"sha256": sha256_file(path)}))
    return path


def with_metadata(src: Path, dst: Path, text: str) -> Path:
    """A copy of the ONNX model ``src`` whose preprocessing metadata is ``text``, with a matching sidecar."""
    model = onnx.load(str(src))
    set_metadata(model, {META_PREPROCESSING: text})
    onnx.save(model, str(dst))
    return write_sidecar(dst)


def pooled_onnx(path: Path, *, input_type: int = TensorProto.FLOAT, spatial: tuple[Any, Any] = ("h", "w"),
                channels: int = 1, weight: np.ndarray | None = None, scalar_output: bool = False,
                preprocessing: dict[str, Any] | str | None = None) -> Path:
    """A tiny classifier, logits = mean over H x W of the input @ weight (channels x 10), with a sidecar.

    ``spatial`` ("h", "w") leaves the image size dynamic; ``scalar_output`` sums the logits to a
    rank-0 output; ``input_type`` other than float adds a Cast, as a float16 export would have.
    """
    weight = np.linspace(-1, 1, channels * 10, dtype=np.float32).reshape(channels, 10) if weight is None else weight
    nodes, source = [], "input"
    if input_type != TensorProto.FLOAT:
        nodes.append(helper.make_node("Cast", ["input"], ["as_float"], to=TensorProto.FLOAT))
        source = "as_float"
    nodes += [helper.make_node("ReduceMean", [source, "axes"], ["pooled"], keepdims=0),
              helper.make_node("MatMul", ["pooled", "weight"], ["scores" if scalar_output else "logits"])]
    out_shape: list[Any] = ["batch", 10]
    if scalar_output:
        nodes.append(helper.make_node("ReduceSum", ["scores"], ["logits"], keepdims=0))
        out_shape = []
    graph = helper.make_graph(
        nodes, "pooled",
        [helper.make_tensor_value_info("input", input_type, ["batch", channels, *spatial])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, out_shape)],
        [numpy_helper.from_array(np.array([2, 3], dtype=np.int64), "axes"), numpy_helper.from_array(weight, "weight")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    if preprocessing is not None:
        text = preprocessing if isinstance(preprocessing, str) else json.dumps(preprocessing)
        set_metadata(model, {META_PREPROCESSING: text})
    onnx.save(model, str(path))
    return write_sidecar(path)


def write_grey_tiff(path: Path, values: np.ndarray, sample_format: int) -> Path:
    """A minimal little-endian one-strip grey TIFF with any sample type: Pillow cannot write uint32.

    ``sample_format``: 1 unsigned integer, 2 signed integer, 3 float (TIFF tag 339).
    """
    h, w = values.shape
    data = np.ascontiguousarray(values, dtype=values.dtype.newbyteorder("<")).tobytes()
    short, long = 3, 4
    tags = [(256, long, w), (257, long, h), (258, short, values.dtype.itemsize * 8), (259, short, 1),
            (262, short, 1), (273, long, 8), (277, short, 1), (278, long, h), (279, long, len(data)),
            (339, short, sample_format)]
    entries = b"".join(struct.pack("<HHI", tag, kind, 1)
                       + (struct.pack("<HH", value, 0) if kind == short else struct.pack("<I", value))
                       for tag, kind, value in tags)
    ifd = struct.pack("<H", len(tags)) + entries + struct.pack("<I", 0)
    path.write_bytes(b"II*\x00" + struct.pack("<I", 8 + len(data)) + data + ifd)
    return path


def png_header_size(data: bytes, width: int, height: int) -> bytes:
    """A PNG whose IHDR declares ``width`` x ``height`` (CRC fixed, so Pillow believes it)."""
    import zlib

    ihdr = data[12:29]  # b"IHDR" + 13 bytes: the chunk type and body the CRC covers
    body = b"IHDR" + struct.pack(">II", width, height) + ihdr[12:]
    return data[:12] + body + struct.pack(">I", zlib.crc32(body)) + data[33:]
