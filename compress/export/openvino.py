"""ONNX -> OpenVINO IR (``.xml`` + ``.bin``), fp32 or fp16 weights, and INT8 two ways, all checked.

INT8 routes:
- ``nncf``: NNCF post-training quantization of the IR, calibrated on the same preprocessed images the
  ONNX Runtime INT8 uses (FakeQuantize placement chosen for OpenVINO's CPU kernels).
- ``qdq``: OpenVINO reading our own QDQ ``model.int8.onnx``, so ONNX Runtime and OpenVINO run the very
  same quantization and any accuracy difference is the runtime's, not the calibration's.

Parity is checked with OpenVINO forced to f32 inference. On CPUs with AVX512-BF16 or AMX, OpenVINO's
default is bf16 (measured here: |Δlogit| 0.04 against 1e-5 in f32), which would hide a wrong export
inside rounding noise. The IR's ``.bin`` is hashed into the ``.xml`` sidecar, so the pair is verified
together. ``compress.*`` metadata travels in the IR's ``rt_info`` under ``compress``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from compress.artifacts import sha256_file, write_sidecar, writing
from compress.errors import ConfigError, ExportError, MissingDependency
from compress.export.base import ExportSource, StepResult
from compress.export.onnx import INPUT_NAME, ParityReport, check_parity, load_onnx

WEIGHT_FORMATS = ("fp32", "fp16")
INT8_ROUTES = ("nncf", "qdq")
NNCF_PRESETS = ("mixed", "performance")
RT_INFO_SECTION = "compress"  # rt_info["compress"][key] for each ONNX "compress.<key>" metadata entry
FLOAT_FILE = "model.xml"
INT8_FILES = {"nncf": "model.int8-nncf.xml", "qdq": "model.int8-qdq.xml"}
# f32 parity tolerance, as for ONNX; fp16 weights round every weight to 11 significant bits, which moved
# logits by up to 2e-4 of their range on the test CNNs (top-1 unchanged): a 1e-3 relative bound fits.
PARITY_RTOL = {"fp32": 1e-4, "fp16": 1e-3}


def require_openvino() -> Any:
    try:
        import openvino
    except ImportError:
        raise MissingDependency("openvino", "openvino", "OpenVINO export") from None
    return openvino


def require_nncf() -> Any:
    try:
        import nncf
    except ImportError:
        raise MissingDependency("nncf", "openvino", "OpenVINO INT8 with NNCF") from None
    return nncf


@dataclass(frozen=True)
class OpenVinoOptions:
    weights: str = "fp32"  # IR weight storage: "fp32" or "fp16" (half the file; f32 compute on CPU)
    int8: tuple[str, ...] = ()  # INT8 routes to build: "nncf" and/or "qdq"
    nncf_preset: str = "mixed"  # "mixed": asymmetric activations (ReLU nets); "performance": symmetric
    fast_bias_correction: bool = True  # NNCF's cheap bias correction; False runs the slower full one
    parity_atol: float = 1e-4  # largest logit difference from PyTorch (fp32 weights)

    def validate(self) -> None:
        if self.weights not in WEIGHT_FORMATS:
            raise ConfigError(f"unknown OpenVINO weight format '{self.weights}': choose {' or '.join(WEIGHT_FORMATS)}")
        unknown = [r for r in self.int8 if r not in INT8_ROUTES]
        if unknown:
            raise ConfigError(f"unknown OpenVINO INT8 route '{unknown[0]}': choose from {', '.join(INT8_ROUTES)}")
        if len(set(self.int8)) != len(self.int8):
            raise ConfigError(f"OpenVINO INT8 routes listed twice: {', '.join(self.int8)}; name each once")
        if self.nncf_preset not in NNCF_PRESETS:
            raise ConfigError(f"unknown NNCF preset '{self.nncf_preset}': choose {' or '.join(NNCF_PRESETS)}")
        if not self.parity_atol > 0:
            raise ConfigError(f"parity_atol must be positive, got {self.parity_atol}")


@dataclass(frozen=True)
class OpenVinoIrOptions:
    """The ``openvino`` backend's options: ``export: {openvino: ...}`` in a recipe (``--openvino``)."""

    weights: str = "fp32"  # "fp32" or "fp16" (half the .bin; the CPU still computes in f32)
    parity_images: int = 256  # validation images compared with PyTorch, as for the ONNX model
    parity_atol: float = 1e-4

    def validate(self) -> None:
        OpenVinoOptions(weights=self.weights, parity_atol=self.parity_atol).validate()
        if self.parity_images < 1:
            raise ConfigError(f"parity_images must be at least 1, got {self.parity_images}")

    def images_needed(self) -> tuple[int, int]:
        return self.parity_images, 0


def openvino_step(source: ExportSource, options: OpenVinoIrOptions, folder: Path) -> StepResult:
    """``model.onnx`` -> ``model.xml`` + ``model.bin``, checked against PyTorch in f32 inference."""
    import torch

    onnx_path = source.upstream("onnx")
    module, preprocessing = source.student()
    images = source.images(options.parity_images, 0, preprocessing.channels)
    source.log(f"converting to OpenVINO IR ({options.weights} weights) ...")
    result = export_openvino(onnx_path, folder, OpenVinoOptions(weights=options.weights,
                                                                 parity_atol=options.parity_atol),
                             module=module, parity_images=torch.from_numpy(images.val_x))
    assert result.parity is not None  # a module was given, so parity was checked (and passed)
    source.log(f"openvino parity: {result.parity.summary()}")
    return StepResult([result.files[options.weights]], {"openvino": result.parity.to_dict()},
                      f"{FLOAT_FILE} ({options.weights} weights), parity: max |Δlogit| "
                      f"{result.parity.max_abs_diff:.2g}, agreement {result.parity.top1_agreement:.2%}")


@dataclass(frozen=True)
class OpenVinoResult:
    files: dict[str, Path]  # "fp32" | "fp16" | "nncf" | "qdq" -> the .xml (its .bin sits beside it)
    parity: ParityReport | None  # float IR vs PyTorch, f32 inference; None when no module was given
    int8_agreement: dict[str, float] = field(default_factory=dict)  # route -> top-1 agreement with PyTorch

    def to_dict(self) -> dict[str, Any]:
        return {"files": {k: str(v) for k, v in self.files.items()},
                "parity": self.parity.to_dict() if self.parity else None,
                "int8_agreement": {k: round(v, 4) for k, v in self.int8_agreement.items()}}


class _IrSession:
    """A compiled IR behind the one ONNX Runtime session method ``check_parity`` calls."""

    def __init__(self, compiled: Any) -> None:
        self.request = compiled.create_infer_request()

    def run(self, outputs: Any, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return [self.request.infer({0: feeds[INPUT_NAME]})[0]]


def _reason(exc: Exception) -> str:
    """OpenVINO errors open with a C++ "Check '...' failed at file:line" line; the reason follows it."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip() and not line.startswith("Check '")]
    return " ".join(lines)[:300] or type(exc).__name__


def compile_ir(xml_path: str | os.PathLike[str], precision: str = "f32", threads: int | None = None) -> Any:
    """A CPU-compiled IR with an explicit inference precision (see the module note on bf16)."""
    ov = require_openvino()
    config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": precision}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    try:
        return ov.Core().compile_model(str(xml_path), "CPU", config)
    except Exception as exc:  # OpenVINO raises RuntimeError with multi-line C++ context
        raise ExportError(f"OpenVINO cannot compile '{Path(xml_path).name}': {_reason(exc)}") from None


def ir_predict(compiled: Any, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Logits for preprocessed float32 NCHW images through a compiled IR."""
    request = compiled.create_infer_request()
    outs = [request.infer({0: np.ascontiguousarray(images[i:i + batch_size], np.float32)})[0]
            for i in range(0, len(images), batch_size)]
    return np.concatenate(outs)


@contextlib.contextmanager
def _quiet_nncf(nncf: Any) -> Iterator[None]:
    """NNCF logs INFO lines and draws progress bars; an export command needs none of it."""
    previous = logging.getLogger("nncf").level
    nncf.set_log_level(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        nncf.set_log_level(previous)


def convert_onnx(onnx_path: Path) -> Any:
    """ONNX -> ov.Model, with our ``compress.*`` metadata copied into ``rt_info['compress']``."""
    ov = require_openvino()
    metadata = {p.key: p.value for p in load_onnx(onnx_path).metadata_props if p.key.startswith("compress.")}
    try:
        model = ov.convert_model(str(onnx_path))
    except Exception as exc:
        raise ExportError(f"OpenVINO {ov.get_version().split('-')[0]} cannot convert '{onnx_path.name}': "
                          f"{_reason(exc)}; a newer openvino may support it") from None
    for key, value in metadata.items():
        model.set_rt_info(value, [RT_INFO_SECTION, key.removeprefix("compress.")])
    return model


def ir_bytes(model: Any, compress_to_fp16: bool) -> int | None:
    """About how many bytes the IR's weights file will take (None when the model cannot say)."""
    try:
        weights = sum(op.get_byte_size() for op in model.get_ops() if op.get_type_name() == "Constant")
    except Exception:  # noqa: BLE001 - only an estimate for a message: an older openvino may lack the call
        return None
    return weights // 2 if compress_to_fp16 else weights


def save_ir(model: Any, xml_path: Path, compress_to_fp16: bool) -> Path:
    """Write ``model`` as ``xml_path`` + its ``.bin``. OpenVINO reports a full disk as a failed C++ stream
    ("basic_ios::clear"): ``writing`` makes that, like every other failed write, one line naming the path."""
    with writing(xml_path, ir_bytes(model, compress_to_fp16)):
        require_openvino().save_model(model, str(xml_path), compress_to_fp16=compress_to_fp16)
    return xml_path


def write_ir_sidecar(xml_path: Path, kind: str, meta: dict[str, Any], inputs: dict[str, str]) -> None:
    """The sidecar hashes the .xml; the weights live in the .bin, so it records that hash too."""
    weights = xml_path.with_suffix(".bin")
    write_sidecar(xml_path, kind, {**meta, "weights": {"file": weights.name, "sha256": sha256_file(weights)}}, inputs)


def publish_ir(staged: Path, out_dir: Path) -> Path:
    """Move a staged IR into ``out_dir``: weights, then graph, then sidecar. A crash in between leaves
    files that disagree with their sidecar, which deploy refuses, never a pair that looks complete."""
    for suffix in (".bin", ".xml", ".xml.json"):
        os.replace(staged.with_name(staged.stem + suffix), out_dir / (staged.stem + suffix))
    return out_dir / staged.name


def quantize_nncf(model: Any, calibration: np.ndarray, options: OpenVinoOptions) -> Any:
    """NNCF post-training INT8 of an ``ov.Model``, one calibration image per NNCF sample."""
    nncf = require_nncf()
    calibration = np.ascontiguousarray(calibration, dtype=np.float32)
    if calibration.ndim != 4 or len(calibration) == 0:
        raise ConfigError(f"calibration images must be a non-empty N x C x H x W array, got {calibration.shape}")
    dataset = nncf.Dataset([calibration[i:i + 1] for i in range(len(calibration))])
    preset = {"mixed": nncf.QuantizationPreset.MIXED, "performance": nncf.QuantizationPreset.PERFORMANCE}
    try:
        with _quiet_nncf(nncf):
            return nncf.quantize(model, dataset, preset=preset[options.nncf_preset], subset_size=len(calibration),
                                 target_device=nncf.TargetDevice.CPU,
                                 fast_bias_correction=options.fast_bias_correction)
    except Exception as exc:
        raise ExportError(f"NNCF INT8 quantization failed: {_reason(exc)}") from exc


def _check_float_ir(module: Any, xml_path: Path, images: Any, options: OpenVinoOptions) -> ParityReport:
    session = _IrSession(compile_ir(xml_path, "f32"))
    report = check_parity(module, xml_path, images, atol=options.parity_atol, rtol=PARITY_RTOL[options.weights],
                          raise_on_failure=False, session=session)
    if not report.ok:
        raise ExportError(f"OpenVINO IR '{xml_path.name}' disagrees with PyTorch: {report.summary()}; "
                          "try weights fp32, or re-export the ONNX with --exporter torchscript")
    return report


def _check_inputs(options: OpenVinoOptions, calibration: Any, int8_onnx: Any, module: Any, parity_images: Any) -> None:
    options.validate()
    if "nncf" in options.int8 and calibration is None:
        raise ConfigError("the nncf INT8 route needs calibration images: pass calibration=")
    if "qdq" in options.int8 and (int8_onnx is None or not Path(int8_onnx).is_file()):
        raise ConfigError(f"the qdq INT8 route needs an existing QDQ ONNX model, got {int8_onnx!r}: "
                          "run the ONNX INT8 export first (compress export --int8)")
    if (module is None) != (parity_images is None):
        raise ConfigError("parity needs both module= and parity_images=, or neither")
    require_openvino()  # a missing library is reported before anything is written
    if "nncf" in options.int8:
        require_nncf()


def build_int8_irs(model: Any, stage: Path, options: OpenVinoOptions, calibration: np.ndarray | None,
                int8_onnx: str | os.PathLike[str] | None, onnx_hash: str) -> dict[str, Path]:
    built = {}
    if "nncf" in options.int8:
        assert calibration is not None
        built["nncf"] = save_ir(quantize_nncf(model, calibration, options), stage / INT8_FILES["nncf"], False)
        write_ir_sidecar(built["nncf"], "openvino-int8", {"route": "nncf", "nncf_preset": options.nncf_preset,
                                                  "fast_bias_correction": options.fast_bias_correction,
                                                  "calibration_images": len(calibration)}, {"onnx": onnx_hash})
    if "qdq" in options.int8:
        assert int8_onnx is not None
        built["qdq"] = save_ir(convert_onnx(Path(int8_onnx)), stage / INT8_FILES["qdq"], False)
        write_ir_sidecar(built["qdq"], "openvino-int8", {"route": "qdq", "source": Path(int8_onnx).name},
                 {"onnx-int8": sha256_file(int8_onnx)})
    return built


def export_openvino(
    onnx_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    options: OpenVinoOptions = OpenVinoOptions(),
    calibration: np.ndarray | None = None,
    *,
    int8_onnx: str | os.PathLike[str] | None = None,
    module: Any = None,
    parity_images: Any = None,
) -> OpenVinoResult:
    """Write ``model.xml`` (+ the INT8 IRs ``options.int8`` asks for) into ``out_dir``, each with a sidecar.

    ``calibration`` (preprocessed float32 NCHW) is needed for the ``nncf`` route, ``int8_onnx`` (our QDQ
    ``model.int8.onnx``) for the ``qdq`` route. With ``module`` and ``parity_images`` (a torch N x C x H x W
    batch) the float IR must match PyTorch, and each INT8 IR's top-1 agreement with it is recorded. Files
    are built in a hidden staging folder and moved into ``out_dir`` only once every step has passed.
    """
    _check_inputs(options, calibration, int8_onnx, module, parity_images)
    onnx_path, out_dir = Path(onnx_path), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_hash = sha256_file(onnx_path)
    with tempfile.TemporaryDirectory(prefix=".openvino-", dir=out_dir) as tmp:
        stage = Path(tmp)
        model = convert_onnx(onnx_path)
        xml = save_ir(model, stage / FLOAT_FILE, options.weights == "fp16")
        parity = _check_float_ir(module, xml, parity_images, options) if module is not None else None
        write_ir_sidecar(xml, f"openvino-{options.weights}", {"source": onnx_path.name,
                                                      "parity": parity.to_dict() if parity else None},
                 {"onnx": onnx_hash})
        staged = {options.weights: xml, **build_int8_irs(model, stage, options, calibration, int8_onnx, onnx_hash)}
        agreement = {}
        if module is not None:
            for route in options.int8:
                report = check_parity(module, staged[route], parity_images, raise_on_failure=False,
                                      session=_IrSession(compile_ir(staged[route], "f32")))
                agreement[route] = report.top1_agreement
        files = {name: publish_ir(path, out_dir) for name, path in staged.items()}
    return OpenVinoResult(files, parity, agreement)
