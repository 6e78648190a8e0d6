"""Export: ONNX (+ parity), ONNX Runtime INT8, TensorRT engines. Heavy libraries load lazily."""

from compress.export.command import export_command
from compress.export.onnx import ParityReport, check_parity, export_onnx, read_metadata
from compress.export.quantize import Int8Report, QuantConfig, compare_int8, quantize_int8
from compress.export.tensorrt import Profile, build_engine, parse_batch

__all__ = ["Int8Report", "ParityReport", "Profile", "QuantConfig", "build_engine", "check_parity", "compare_int8",
           "export_command", "export_onnx", "parse_batch", "quantize_int8", "read_metadata"]
