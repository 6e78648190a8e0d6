"""Runners: one interface over ONNX Runtime sessions and TensorRT engines.

``predict_logits`` takes the model's own input (float32 NCHW, preprocessed); ``predict`` takes raw
images and applies the preprocessing recorded with the model. ONNX Runtime sessions may be shared
between threads (``InferenceSession.run`` is thread-safe); the TensorRT runner serialises calls
because an execution context and its buffers belong to one caller at a time.
"""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np

from deploy.errors import DeployError
from deploy.metadata import check_preprocessing, parse_json
from deploy.preprocess import prepare

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}
META_PREPROCESSING = "compress.preprocessing"  # the key compress.export.onnx writes
MAX_CLASSES = 100_000  # ImageNet-21k has 21,843; an output wider than this is a broken or hostile model
# More intra-op threads than this only oversubscribe the CPU; a million makes ONNX Runtime crash.
MAX_THREADS = max(64, os.cpu_count() or 1)


def check_threads(threads: int | None) -> None:
    if threads is not None and (type(threads) is not int or not 1 <= threads <= MAX_THREADS):
        raise DeployError(f"threads must be an integer from 1 to {MAX_THREADS} (or None for the runtime's "
                          f"default), got {threads!r}")


def check_classes(num_classes: int | None, path: Path) -> None:
    """A declared class count is bounded before any output of that width is allocated."""
    if num_classes is not None and num_classes > MAX_CLASSES:
        raise DeployError(f"'{path}' declares {num_classes} output classes, more than the {MAX_CLASSES} a classifier "
                          "has; use a classifier exported by compress")


def checked_logits(out: Any, batch: int) -> np.ndarray:
    """The model's output as float32 N x classes, or a one-line error: never print NaN as an answer."""
    out = np.asarray(out)
    if out.ndim != 2 or out.shape[0] != batch or not 1 <= out.shape[1] <= MAX_CLASSES:
        raise DeployError(f"the model returned an output of shape {out.shape} for a batch of {batch}, not "
                          "N x classes logits; use a classifier exported by compress")
    if not np.issubdtype(out.dtype, np.floating):
        raise DeployError(f"the model returned {out.dtype} values, not float logits; use a classifier exported "
                          "by compress")
    out = out.astype(np.float32, copy=False)
    if not np.isfinite(out).all():
        raise DeployError("the model returned non-finite logits (NaN or inf): its weights or preprocessing "
                          "metadata are broken; re-export it with compress")
    return out


class Runner:
    """Base class: input checks and preprocessing; subclasses implement ``_run``."""

    preprocessing: dict[str, Any] | None  # checked by deploy.metadata.check_preprocessing
    input_shape: tuple[int | None, int | None, int | None]  # C, H, W (None where dynamic)
    num_classes: int | None = None  # None where the model leaves it dynamic (or a runner does not say)

    @property
    def class_names(self) -> list[str]:
        return list((self.preprocessing or {}).get("class_names") or [])

    def predict_logits(self, x: np.ndarray) -> np.ndarray:
        if not isinstance(x, np.ndarray):
            raise DeployError(f"predict_logits wants a numpy array, got {type(x).__name__}")
        if x.dtype != np.float32:
            raise DeployError(f"predict_logits wants float32 preprocessed input, got {x.dtype}; "
                              "use predict() for raw images")
        if x.ndim != 4:
            raise DeployError(f"predict_logits wants N x C x H x W input, got shape {x.shape}")
        for axis, (want, got) in enumerate(zip(self.input_shape, x.shape[1:]), start=1):
            if want is not None and want != got:
                name = "channels" if axis == 1 else "height" if axis == 2 else "width"
                raise DeployError(f"model expects {want} {name} (input N x {self._shape_text()}), got shape {x.shape}")
        if x.shape[0] == 0:
            raise DeployError("got an empty batch")
        return checked_logits(self._run(np.ascontiguousarray(x)), len(x))

    def predict(self, images: Any) -> tuple[np.ndarray, np.ndarray]:
        """Raw images -> (logits N x classes, labels N)."""
        if self.preprocessing is None:
            raise DeployError("this model carries no preprocessing metadata; call predict_logits with "
                              "preprocessed float32 NCHW input, or re-export it with compress")
        logits = self.predict_logits(prepare(images, self.preprocessing))
        return logits, logits.argmax(axis=1)

    def _shape_text(self) -> str:
        return " x ".join("?" if v is None else str(v) for v in self.input_shape)

    def _run(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


def _static_dim(value: Any) -> int | None:
    """A dimension ONNX Runtime reports: a positive int when fixed, a name/None/-1 when dynamic."""
    return value if type(value) is int and value > 0 else None


EXTERNAL_DATA_FOLDER = "session.model_external_initializers_file_folder_path"  # onnxruntime >= 1.21
MIN_ORT_FOR_BYTES = (1, 21)


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("+")[0].split(".")[:2] if part.isdigit())


class OnnxRunner(Runner):
    """ONNX Runtime on a model file, or on ``content``: the model's bytes as hashed by ``deploy.load``.

    From bytes, ONNX Runtime would look for external data files in the working directory; it is pointed
    at an empty private folder instead, so a model whose weights live outside the hashed file is refused
    (compress writes one self-contained file; ``trust`` loads by path, external data from the model's folder).
    """

    def __init__(self, path: Path, provider: str = "cpu", threads: int | None = None, *,
                 content: bytes | None = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise DeployError("onnxruntime is not installed: pip install onnxruntime "
                              "(or onnxruntime-gpu for cuda/tensorrt)") from None
        if provider not in PROVIDERS:
            raise DeployError(f"unknown provider '{provider}': choose one of {', '.join(PROVIDERS)}")
        check_threads(threads)
        wanted = PROVIDERS[provider]
        if wanted[0] not in ort.get_available_providers():
            raise DeployError(f"ONNX Runtime here has no {wanted[0]}: install onnxruntime-gpu "
                              "(with CUDA/TensorRT libraries) or use provider='cpu'")
        options = ort.SessionOptions()
        options.log_severity_level = 4  # fatal only: failures become our one-line errors, not ORT log lines
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        if content is not None and _version(ort.__version__) < MIN_ORT_FOR_BYTES:
            raise DeployError(f"onnxruntime {ort.__version__} cannot load a verified model without also reading "
                              "files its hash does not cover: pip install 'onnxruntime>=1.21'")
        with tempfile.TemporaryDirectory(prefix="deploy-no-external-data-") as empty:
            if content is not None:
                options.add_session_config_entry(EXTERNAL_DATA_FOLDER, empty)
            try:
                self.session = ort.InferenceSession(str(path) if content is None else content, options,
                                                    providers=wanted)
            except Exception as exc:  # ORT raises its own Fail/InvalidProtobuf types for broken files
                text = str(exc)
                if content is not None and "xternal data" in text:
                    raise DeployError(f"'{path}' keeps weights in external data files, which its sidecar's hash "
                                      "does not cover: use the single-file model compress exports, or pass "
                                      "trust=True (--trust) to load them from the model's folder") from None
                first = (text.strip().splitlines() or [type(exc).__name__])[0]
                raise DeployError(f"cannot load ONNX model '{path}': {first[:160]}; re-export it") from None
        self.path, self.provider = path, provider
        try:
            self._check_signature()
            meta = self.session.get_modelmeta().custom_metadata_map
        except UnicodeDecodeError:  # ONNX strings are UTF-8 by contract; a damaged file breaks the binding
            raise DeployError(f"'{path}' has tensor names or metadata that are not UTF-8 text; re-export it") from None
        self.metadata = dict(meta)
        self.preprocessing = None
        if META_PREPROCESSING in meta:
            what = f"the {META_PREPROCESSING} metadata of '{path}'"
            self.preprocessing = check_preprocessing(parse_json(meta[META_PREPROCESSING], what),
                                                     self.input_shape, self.num_classes, what)

    def _check_signature(self) -> None:
        """One float32 N x C x H x W input and a float N x classes output, before anything is fed to them."""
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise DeployError(f"'{self.path}' is not an image classifier with one N x C x H x W input")
        if inputs[0].type != "tensor(float)":
            raise DeployError(f"'{self.path}' takes {inputs[0].type} input, but deploy feeds float32 "
                              "(tensor(float)) images; re-export it with compress")
        if not outputs or len(outputs[0].shape) != 2:
            shape = outputs[0].shape if outputs else "no output"
            raise DeployError(f"'{self.path}' returns {shape}, not N x classes logits; "
                              "use a classifier exported by compress")
        if outputs[0].type not in ("tensor(float)", "tensor(float16)", "tensor(double)"):
            raise DeployError(f"'{self.path}' returns {outputs[0].type}, not float logits; "
                              "use a classifier exported by compress")
        self.input_name, self.output_name = inputs[0].name, outputs[0].name
        self.input_shape = tuple(_static_dim(v) for v in inputs[0].shape[1:])  # type: ignore[assignment]
        self.num_classes = _static_dim(outputs[0].shape[1])
        check_classes(self.num_classes, self.path)

    def _run(self, x: np.ndarray) -> np.ndarray:
        try:
            return self.session.run([self.output_name], {self.input_name: x})[0]
        except Exception as exc:  # a graph that loads can still fail to run (bad shapes, out of memory)
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise DeployError(f"ONNX Runtime failed to run '{self.path}': {first[:300]}") from None


def _check_cuda(result: Any, what: str) -> Any:
    """cuda-python calls return (error, *values); turn a non-zero error into a DeployError."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise DeployError(f"CUDA error during {what}: {err}")
    return values[0] if len(values) == 1 else values


class TensorRTRunner(Runner):
    """Serialized TensorRT engine; device buffers and stream from cuda-python, ``execute_async_v3``."""

    def __init__(self, path: Path, record: dict[str, Any], content: bytes | None = None) -> None:
        """``content``: the plan's bytes as hashed by ``deploy.load`` (read from ``path`` when not given)."""
        try:
            import tensorrt as trt
        except ImportError:
            raise DeployError("tensorrt is not installed: pip install tensorrt cuda-python") from None
        try:
            from cuda.bindings import runtime as cudart
        except ImportError:
            try:
                from cuda import cudart  # cuda-python < 12.6
            except ImportError:
                raise DeployError("cuda-python is not installed: pip install cuda-python") from None
        self.trt, self.cudart = trt, cudart
        if _check_cuda(cudart.cudaGetDeviceCount(), "device query") < 1:
            raise DeployError("no CUDA GPU is visible: a TensorRT engine needs the GPU it was built for")
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        self.engine = self.runtime.deserialize_cuda_engine(path.read_bytes() if content is None else content)
        if self.engine is None:
            raise DeployError(f"TensorRT cannot load '{path}': built by another TensorRT version or for another "
                              "GPU; rebuild it on this machine (compress export --trt)")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input_name = next(n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
        self.output_name = next(n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT)
        min_shape, _, max_shape = self.engine.get_tensor_profile_shape(self.input_name, 0)
        self.min_batch, self.max_batch = int(min_shape[0]), int(max_shape[0])
        self.input_shape = tuple(int(v) for v in max_shape[1:])  # type: ignore[assignment]
        out_shape = tuple(self.engine.get_tensor_shape(self.output_name))
        self.out_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(self.output_name)))
        if self.engine.get_tensor_dtype(self.input_name) != trt.DataType.FLOAT or len(self.input_shape) != 3:
            raise DeployError(f"'{path}' does not take float32 N x C x H x W input; rebuild it (compress export --trt)")
        if len(out_shape) != 2 or int(out_shape[-1]) < 1 or not np.issubdtype(self.out_dtype, np.floating):
            raise DeployError(f"'{path}' returns {self.out_dtype} {out_shape}, not N x classes float logits; "
                              "rebuild it (compress export --trt)")
        self.num_classes = int(out_shape[-1])
        check_classes(self.num_classes, path)  # it sizes the output buffer
        self.preprocessing = None
        if record.get("preprocessing") is not None:
            self.preprocessing = check_preprocessing(record["preprocessing"], self.input_shape, self.num_classes,
                                                     f"the preprocessing in the sidecar of '{path}'")
        self.metadata = record
        self.stream = _check_cuda(cudart.cudaStreamCreate(), "stream creation")
        in_bytes = self.max_batch * int(np.prod(self.input_shape)) * 4
        self.d_input = _check_cuda(cudart.cudaMalloc(in_bytes), "input allocation")
        self.d_output = _check_cuda(cudart.cudaMalloc(self.max_batch * self.num_classes * self.out_dtype.itemsize),
                                    "output allocation")
        self.context.set_tensor_address(self.input_name, int(self.d_input))
        self.context.set_tensor_address(self.output_name, int(self.d_output))
        self.lock = threading.Lock()

    def _run(self, x: np.ndarray) -> np.ndarray:
        if len(x) < self.min_batch:
            raise DeployError(f"engine accepts batches of {self.min_batch}..{self.max_batch}, got {len(x)}")
        if len(x) > self.max_batch:  # larger batches run in engine-sized chunks
            return np.concatenate([self._run(x[i:i + self.max_batch]) for i in range(0, len(x), self.max_batch)])
        cudart = self.cudart
        out = np.empty((len(x), self.num_classes), dtype=self.out_dtype)
        with self.lock:  # one context, one set of buffers: one caller at a time
            self.context.set_input_shape(self.input_name, x.shape)
            _check_cuda(cudart.cudaMemcpyAsync(self.d_input, x.ctypes.data, x.nbytes,
                                               cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, self.stream), "copy in")
            if not self.context.execute_async_v3(int(self.stream)):
                raise DeployError("TensorRT execution failed; see the TensorRT log above")
            _check_cuda(cudart.cudaMemcpyAsync(out.ctypes.data, self.d_output, out.nbytes,
                                               cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost, self.stream), "copy out")
            _check_cuda(cudart.cudaStreamSynchronize(self.stream), "synchronize")
        return out.astype(np.float32, copy=False)

    def __del__(self) -> None:
        cudart = getattr(self, "cudart", None)
        if cudart is not None:
            for ptr in (getattr(self, "d_input", None), getattr(self, "d_output", None)):
                if ptr is not None:
                    cudart.cudaFree(ptr)
