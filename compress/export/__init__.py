"""Export: ONNX (+ parity), ONNX Runtime INT8, OpenVINO IR (fp32, INT8), TensorRT engines, and the choice
among them by measurement (``--target cpu``). Heavy libraries load lazily.

``BACKENDS`` (``compress.export.backends``) is the table of what can be built; each backend's step
function is what ``compress export`` and the pipeline's export stages call.
"""

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

__all__ = ["BACKENDS", "ExportBackend", "ExportImages", "ExportSource", "Int8Options", "Int8Report", "Machine",
           "OnnxOptions", "OpenVinoInt8Options", "OpenVinoIrOptions", "OpenVinoOptions", "ParityReport", "Profile",
           "QuantConfig", "StepResult", "TargetOptions", "TensorRTOptions", "backend_for_file", "build_engine",
           "check_parity", "compare_int8", "export_command", "export_onnx", "export_openvino", "parse_batch",
           "quantize_int8", "read_metadata"]

from compress._callable import make_callable  # noqa: E402

make_callable(__name__, "export")  # compress.export(checkpoint, ...) is compress.api.export
