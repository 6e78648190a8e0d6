"""float32 ONNX -> float16 ONNX with float32 input/output, for strongly typed TensorRT builds.

TensorRT 11 removed the FP16 builder flag: precision now comes from the tensor types in the graph
("strong typing"). This pass rewrites a float32 graph into float16 while keeping the model's
interface float32 (a Cast after ``input`` and before ``logits``), so runners and preprocessing do
not change. Written with plain ``onnx`` helpers to avoid another dependency; ONNX Runtime's bundled
converter appends its casts out of topological order, which ``onnx.checker`` rejects.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from compress.export.onnx import INPUT_NAME, OUTPUT_NAME, require_onnx

FP16_MAX = float(np.finfo(np.float16).max)
# Inputs that the ONNX spec requires to stay float32 whatever the data type (sizes and scales).
KEEP_FLOAT32_INPUTS = {("Resize", 1), ("Resize", 2), ("Upsample", 1)}


def _to_fp16_tensor(tensor: Any, onnx: Any) -> Any:
    array = onnx.numpy_helper.to_array(tensor)
    # values beyond fp16 range would become inf; clamping keeps e.g. a -1e9 mask a very large number
    converted = np.clip(array, -FP16_MAX, FP16_MAX).astype(np.float16)
    return onnx.numpy_helper.from_array(converted, tensor.name)


def convert_to_fp16(model: Any) -> Any:
    """Return a float16 copy of ``model`` (an onnx.ModelProto) with float32 ``input``/``logits``."""
    onnx = require_onnx()
    from onnx import TensorProto, helper

    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    FLOAT, FLOAT16 = TensorProto.FLOAT, TensorProto.FLOAT16

    keep32 = {node.input[i] for node in graph.node for (op, i) in KEEP_FLOAT32_INPUTS
              if node.op_type == op and len(node.input) > i}
    for index, tensor in enumerate(graph.initializer):
        if tensor.data_type == FLOAT and tensor.name not in keep32:
            graph.initializer[index].CopyFrom(_to_fp16_tensor(tensor, onnx))

    for node in graph.node:
        for attr in node.attribute:
            if node.op_type == "Cast" and attr.name == "to" and attr.i == FLOAT:
                attr.i = FLOAT16
            if node.op_type == "Constant" and attr.name == "value" and attr.t.data_type == FLOAT:
                if not any(o in keep32 for o in node.output):
                    attr.t.CopyFrom(_to_fp16_tensor(attr.t, onnx))
            if node.op_type in ("ConstantOfShape",) and attr.name == "value" and attr.t.data_type == FLOAT:
                attr.t.CopyFrom(_to_fp16_tensor(attr.t, onnx))

    # keep the interface float32: input -> Cast -> (fp16 graph) -> Cast -> logits
    in16, out16 = f"{INPUT_NAME}__fp16", f"{OUTPUT_NAME}__fp16"
    for node in graph.node:
        node.input[:] = [in16 if name == INPUT_NAME else name for name in node.input]
        node.output[:] = [out16 if name == OUTPUT_NAME else name for name in node.output]
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend([helper.make_node("Cast", [INPUT_NAME], [in16], to=FLOAT16, name="compress_cast_input")]
                      + nodes
                      + [helper.make_node("Cast", [out16], [OUTPUT_NAME], to=FLOAT, name="compress_cast_logits")])
    # intermediate types are stale now; shape inference recomputes them from the new initializers
    del graph.value_info[:]
    return onnx.shape_inference.infer_shapes(model, strict_mode=True)
