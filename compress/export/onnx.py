"""PyTorch -> ONNX export with metadata, and the mandatory parity check against ONNX Runtime.

The exported graph has one input ``input`` (N, C, H, W) float32 and one output ``logits`` with a
dynamic batch dimension. Preprocessing, architecture and the tool version travel in the model's
``metadata_props`` so the torch-free ``deploy`` runtime can feed the model the same numbers.
Parity is checked on real images because silently wrong exports of torchvision CNNs are a known
PyTorch bug class: a file that loads is not a file that computes the right thing.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np

from compress.version import __version__
from compress.artifacts import atomic_path, write_sidecar
from compress.bounds import MAX_IMAGES, check_range
from compress.errors import CheckpointError, ConfigError, ExportError, MissingDependency
from compress.export.base import ExportSource, StepResult
from compress.structured import parse_json

if TYPE_CHECKING:  # torch is imported by the functions that use it: the backend table stays light to import
    import torch
    from torch import nn

    from compress.data.preprocessing import Preprocessing

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
EXPORTERS = ("dynamo", "torchscript")
META_PREPROCESSING = "compress.preprocessing"
META_ARCHITECTURE = "compress.architecture"
META_VERSION = "compress.version"


@dataclass
class OnnxOptions:
    """The ONNX backend's options: ``export: {onnx: ...}`` in a recipe, ``--exporter`` on the command line."""

    exporter: str = "dynamo"  # dynamo | torchscript
    opset: int = 18
    parity_images: int = 256  # validation images compared with PyTorch right after export

    def validate(self) -> None:
        if self.exporter not in EXPORTERS:
            raise ConfigError(f"unknown exporter '{self.exporter}': choose one of {', '.join(EXPORTERS)}")
        if self.opset < 18:
            raise ConfigError(f"opset must be at least 18, got {self.opset}")
        check_range("parity_images", self.parity_images, 1, MAX_IMAGES)

    def images_needed(self) -> tuple[int, int]:
        return self.parity_images, 0


def onnx_step(source: ExportSource, options: OnnxOptions, folder: Path) -> StepResult:
    """The student -> ``model.onnx``, checked against PyTorch on real images (``ExportError`` when they disagree)."""
    import torch

    module, preprocessing = source.student()
    images = source.images(options.parity_images, 0, preprocessing.channels)
    source.log(f"exporting ONNX ({options.exporter}) ...")
    path = export_onnx(module, preprocessing, folder / "model.onnx", exporter=options.exporter, opset=options.opset,
                       inputs={"checkpoint": source.student_sha256})
    parity = check_parity(module, path, torch.from_numpy(images.val_x))
    source.log(f"parity: {parity.summary()}")
    return StepResult([path], {"parity": parity.to_dict()}, f"model.onnx, parity: max |Δlogit| "
                      f"{parity.max_abs_diff:.2g}, agreement {parity.top1_agreement:.2%}")


def require_onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise MissingDependency("onnx", "onnx", "ONNX export") from None
    return onnx


def require_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise MissingDependency("onnxruntime", "onnx", "running ONNX models") from None
    return onnxruntime


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporters print progress banners and deprecation warnings; a CLI user needs none of it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with contextlib.redirect_stdout(io.StringIO()):
            yield


def _input_shape(module: nn.Module, preprocessing: Preprocessing, batch: int) -> tuple[int, int, int, int]:
    return (batch, preprocessing.channels, preprocessing.image_size, preprocessing.image_size)


def _export_to(module: nn.Module, example: torch.Tensor, path: Path, exporter: str, opset: int) -> None:
    import torch

    if exporter == "dynamo":
        # The dynamo exporter specialises every dimension it is not told is dynamic, and a batch of 1
        # would be specialised even then (0/1 specialisation) - hence an example batch >= 2.
        batch = torch.export.Dim("batch", min=1, max=65536)
        program = torch.onnx.export(module, (example,), dynamo=True, input_names=[INPUT_NAME],
                                    output_names=[OUTPUT_NAME], dynamic_shapes=({0: batch},),
                                    opset_version=opset, external_data=False, verbose=False)
        program.save(str(path), external_data=False)
    else:
        torch.onnx.export(module, (example,), str(path), dynamo=False, input_names=[INPUT_NAME],
                          output_names=[OUTPUT_NAME], dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                          opset_version=opset, do_constant_folding=True)


def export_onnx(
    module: nn.Module,
    preprocessing: Preprocessing,
    out_path: str | os.PathLike[str],
    *,
    exporter: str = "dynamo",
    opset: int = 18,
    example_batch: int = 2,
    inputs: dict[str, str] | None = None,
) -> Path:
    """Export ``module`` (eval mode, CPU) to ``out_path`` atomically, with metadata and a sidecar.

    ``inputs`` names the artifacts it came from (e.g. ``{"checkpoint": sha256}``) for the sidecar.
    """
    import torch

    from compress.deployable import architecture_of

    onnx = require_onnx()
    OnnxOptions(exporter=exporter, opset=opset).validate()
    if example_batch < 2:
        raise ConfigError(f"example batch must be at least 2 (a batch of 1 gets specialised), got {example_batch}")
    out_path = Path(out_path)
    module = module.eval().cpu()  # BatchNorm/Dropout must export their inference behaviour
    example = torch.randn(*_input_shape(module, preprocessing, example_batch))
    architecture = architecture_of(module)
    with atomic_path(out_path) as tmp:
        try:
            with _quiet(), torch.no_grad():
                _export_to(module, example, tmp, exporter, opset)
        except Exception as exc:  # exporters raise many unrelated types; the first line is what matters
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ExportError(f"{exporter} export of {type(module).__name__} failed: {first[:200]}; "
                              f"try --exporter {'torchscript' if exporter == 'dynamo' else 'dynamo'}") from exc
        model = onnx.load(str(tmp))
        strip_provenance(model.graph)
        set_metadata(model, {META_PREPROCESSING: json.dumps(preprocessing.to_dict()),
                             META_ARCHITECTURE: json.dumps(architecture), META_VERSION: __version__})
        model.producer_name = "compress"
        model.producer_version = __version__
        try:
            onnx.checker.check_model(model, full_check=True)
        except Exception as exc:
            raise ExportError(f"exported ONNX fails onnx.checker: {str(exc).splitlines()[0][:200]}") from exc
        onnx.save(model, str(tmp))
    write_sidecar(out_path, "onnx", {"exporter": exporter, "opset": opset, "input": INPUT_NAME, "output": OUTPUT_NAME,
                                     "architecture": architecture, "preprocessing": preprocessing.to_dict()},
                  inputs)
    return out_path


def input_channels(onnx_path: str | os.PathLike[str]) -> int:
    """The channel count of the model's N x C x H x W input: what its calibration images must have."""
    return int(load_onnx(onnx_path).graph.input[0].type.tensor_type.shape.dim[1].dim_value)


def strip_provenance(graph: Any) -> None:
    """Drop what the exporter records per node about the machine that exported: source file paths, stack
    traces, Python class paths (node ``metadata_props``) and doc strings. An edge artifact should not
    carry the build machine's paths, and the same model should give the same file from any checkout."""
    for node in graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
        for attribute in node.attribute:  # control flow (If/Loop/Scan) keeps its bodies in attributes
            for body in ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs):
                strip_provenance(body)


def set_metadata(model: Any, props: dict[str, str]) -> None:
    """Replace-or-add ``metadata_props`` entries (ONNX keeps them as a repeated key/value list)."""
    keep = [p for p in model.metadata_props if p.key not in props]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value


def read_metadata(onnx_path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``compress.*`` metadata of an exported model, JSON fields decoded."""
    onnx = require_onnx()
    model = load_onnx(onnx_path, onnx)
    props = {p.key: p.value for p in model.metadata_props}
    out: dict[str, Any] = {}
    for key, value in props.items():
        if key in (META_PREPROCESSING, META_ARCHITECTURE):
            out[key] = parse_json(value, f"'{onnx_path}' metadata {key}", fix="re-export the model")
        elif key.startswith("compress."):
            out[key] = value
    return out


def load_onnx(path: str | os.PathLike[str], onnx: Any = None) -> Any:
    onnx = onnx or require_onnx()
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"ONNX model '{path}' does not exist: check the path")
    try:
        return onnx.load(str(path))
    except Exception as exc:  # DecodeError and friends for truncated or foreign files
        raise CheckpointError(f"'{path}' is not a readable ONNX model ({type(exc).__name__}); re-export it") from None


def ort_session(onnx_path: str | os.PathLike[str], threads: int | None = None, optimize: str = "all") -> Any:
    """A CPU ONNX Runtime session; a corrupt file is a CheckpointError, not a traceback."""
    ort = require_onnxruntime()
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    options.graph_optimization_level = {
        "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[optimize]
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(f"ONNX Runtime cannot load '{onnx_path}' ({first[:160]}); re-export it") from None


@dataclass(frozen=True)
class ParityReport:
    max_abs_diff: float  # max |logit_onnx - logit_torch| over all images and classes
    top1_agreement: float  # fraction of images with the same arg-max
    n: int  # images compared
    batch_sizes: tuple[int, ...]  # the batch sizes the images were fed in (exercises the dynamic axis)
    tolerance: float  # the |diff| bound that was applied
    real_disagreements: int  # arg-max differences not explained by a near tie within tolerance

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= self.tolerance and self.real_disagreements == 0

    def summary(self) -> str:
        return (f"max |Δlogit| {self.max_abs_diff:.3g} (tolerance {self.tolerance:.3g}), top-1 agreement "
                f"{self.top1_agreement:.2%} on {self.n} images in batches {list(self.batch_sizes)}")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "batch_sizes": list(self.batch_sizes), "ok": self.ok}


def _batches(n: int, batch_sizes: Sequence[int]) -> Iterator[tuple[int, int]]:
    """Cycle through ``batch_sizes`` so every size is used, ending with whatever is left."""
    start, i = 0, 0
    while start < n:
        size = min(batch_sizes[i % len(batch_sizes)], n - start)
        yield start, start + size
        start, i = start + size, i + 1


def check_parity(
    module: nn.Module,
    onnx_path: str | os.PathLike[str],
    images: torch.Tensor,
    *,
    atol: float = 1e-4,
    rtol: float = 1e-4,
    batch_sizes: Sequence[int] = (1, 3, 17),
    raise_on_failure: bool = True,
    session: Any = None,
) -> ParityReport:
    """Run ONNX Runtime and PyTorch on the same preprocessed ``images`` and compare the logits.

    Tolerance is ``atol + rtol * max|logit|`` so a model with large logits is not failed for float32
    rounding. A top-1 difference only counts when PyTorch's margin between the two classes exceeds
    the tolerance: a near tie flipping inside float noise is not a wrong export.
    """
    import torch

    if images.dim() != 4 or len(images) == 0:
        raise ConfigError(f"parity needs a non-empty N x C x H x W batch of images, got shape {tuple(images.shape)}")
    session = session or ort_session(onnx_path)
    module = module.eval().cpu()
    images = images.detach().float().cpu()
    torch_out, onnx_out, used = [], [], []
    with torch.no_grad():
        for lo, hi in _batches(len(images), batch_sizes):
            batch = images[lo:hi]
            torch_out.append(module(batch).numpy())
            onnx_out.append(session.run([OUTPUT_NAME], {INPUT_NAME: batch.numpy()})[0])
            used.append(hi - lo)
    ref, got = np.concatenate(torch_out), np.concatenate(onnx_out)
    if ref.shape != got.shape:
        raise ExportError(f"ONNX output shape {got.shape} differs from PyTorch {ref.shape}; re-export the model")
    tolerance = atol + rtol * float(np.abs(ref).max())
    diff = float(np.abs(ref - got).max()) if np.isfinite(got).all() else float("inf")
    top_ref, top_got = ref.argmax(1), got.argmax(1)
    rows = np.arange(len(ref))
    margin = ref[rows, top_ref] - ref[rows, top_got]
    report = ParityReport(diff, float((top_ref == top_got).mean()), len(ref), tuple(sorted(set(used))),
                          tolerance, int((margin > 2 * tolerance).sum()))
    if raise_on_failure and not report.ok:
        raise ExportError(f"ONNX model '{Path(onnx_path).name}' disagrees with PyTorch: {report.summary()}; "
                          "try --exporter torchscript or report the model")
    return report

