"""Export: ONNX (+ parity), ONNX Runtime INT8, OpenVINO IR (fp32, INT8), TensorRT engines, and the choice
among them by measurement (``--target cpu``). Heavy libraries load lazily.

``BACKENDS`` (``compress.export.backends``) is the table of what can be built; each backend's step
function is what ``compress export`` and the pipeline's export stages call. The names below load from
their modules on first use (``compress._lazy``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from compress._lazy import lazy_names

if TYPE_CHECKING:
    from compress.export.backends import BACKENDS, backend_for_file
    from compress.export.base import ExportBackend, ExportImages, ExportSource, Machine, StepResult
    from compress.export.command import export_command
    from compress.export.int8 import Int8Options
    from compress.export.onnx import OnnxOptions, ParityReport, check_parity, export_onnx, read_metadata
    from compress.export.openvino import OpenVinoIrOptions, OpenVinoOptions, export_openvino
    from compress.export.openvino_int8 import OpenVinoInt8Options
    from compress.export.quantize import Int8Report, QuantConfig, compare_int8, quantize_int8
    from compress.export.target import TargetOptions
    from compress.export.tensorrt import Profile, TensorRTOptions, build_engine, parse_batch

__getattr__, __all__ = lazy_names(__name__, {
    "backends": ("BACKENDS", "backend_for_file"),
    "base": ("ExportBackend", "ExportImages", "ExportSource", "Machine", "StepResult"),
    "command": ("export_command",),
    "int8": ("Int8Options",),
    "onnx": ("OnnxOptions", "ParityReport", "check_parity", "export_onnx", "read_metadata"),
    "openvino": ("OpenVinoIrOptions", "OpenVinoOptions", "export_openvino"),
    "openvino_int8": ("OpenVinoInt8Options",),
    "quantize": ("Int8Report", "QuantConfig", "compare_int8", "quantize_int8"),
    "target": ("TargetOptions",),
    "tensorrt": ("Profile", "TensorRTOptions", "build_engine", "parse_batch"),
})
