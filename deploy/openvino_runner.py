"""OpenVINO runner for ``.xml`` IR files (the ``.bin`` beside it), CPU, torch-free.

Thread safety: one infer request per calling thread, created on that thread's first call and reused.
An ``InferRequest`` owns its input and output tensors, so two threads must never share one; the
compiled model itself may be shared. A request per call would re-allocate those tensors on every
call, and a single request behind a lock would make concurrent callers queue even when the compiled
model has several streams to run them in parallel. A per-thread request has neither cost.

Precision: f32 by default. OpenVINO's own CPU default is bf16 wherever the CPU has AVX512-BF16 or
AMX, which moved logits by 0.04 (and flipped 0.2 % of top-1 answers) on the test CNN against 1e-5
for f32; ``precision="bf16"`` opts into that trade.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import sys
import threading
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from deploy.errors import DeployError, one_line
from deploy.integrity import read_model_bytes
from deploy.metadata import check_preprocessing, parse_json
from deploy.runners import Runner, check_classes, check_threads

PRECISIONS = ("f32", "bf16", "f16")
RT_INFO_SECTION = "compress"  # where compress.export.openvino writes the model's metadata


def _require_openvino() -> Any:
    try:
        import openvino
    except ImportError:
        raise DeployError("openvino is not installed: pip install openvino") from None
    return openvino


_SOURCE_LOCATION = re.compile(r"Exception from \S+:\d+:\s*")


def _reason(exc: Exception) -> str:
    """OpenVINO errors open with C++ "Check '...' failed at file:line" and "Exception from file:line:"
    context; the reason follows it."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip() and not line.startswith("Check '")]
    return _SOURCE_LOCATION.sub("", " ".join(lines)).strip()[:200] or type(exc).__name__


def weights_path(xml: Path) -> Path:
    """Where OpenVINO reads an IR's weights: beside the .xml, same stem, ``.bin`` (never what a sidecar names)."""
    return xml.with_suffix(".bin")


def _verified_files(xml: Path, record: dict[str, Any], content: bytes | None) -> tuple[bytes, bytes]:
    """The .xml and .bin bytes, each matching the sidecar's hash; OpenVINO is then given these bytes."""
    if content is None:  # a runner made without deploy.load: check the .xml here
        content = read_model_bytes(xml)
        if record.get("sha256") != hashlib.sha256(content).hexdigest():
            raise DeployError(f"'{xml}' does not match the SHA-256 in '{xml.name}.json' (modified or partly copied); "
                              "copy it again, or pass trust=True (--trust) to use it anyway")
    weights = record.get("weights")
    if not isinstance(weights, dict) or not isinstance(weights.get("sha256"), str):
        raise DeployError(f"sidecar of '{xml.name}' records no hash for its weights (.bin); "
                          "re-export it with compress, or pass trust=True (--trust)")
    bin_path = weights_path(xml)
    named = weights.get("file", bin_path.name)
    if named != bin_path.name:  # the hash would cover another file than the one OpenVINO loads
        raise DeployError(f"sidecar of '{xml.name}' names weights file {one_line(repr(named))[:80]}, but OpenVINO "
                          f"reads '{bin_path.name}' beside the .xml: copy the sidecar written with the model, "
                          "or pass trust=True (--trust)")
    if not bin_path.is_file():
        raise DeployError(f"weights file '{bin_path}' of '{xml.name}' does not exist: copy it along with the .xml")
    weights_bytes = read_model_bytes(bin_path)
    if hashlib.sha256(weights_bytes).hexdigest() != weights["sha256"]:
        raise DeployError(f"'{bin_path}' does not match the SHA-256 in '{xml.name}.json' (modified or partly "
                          "copied); copy it again, or pass trust=True (--trust) to use it anyway")
    return content, weights_bytes


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """OpenVINO's frontends print their own diagnostics to file descriptor 2 before raising; the error
    that follows says what failed in one line, so that noise is dropped."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real descriptor 2 (an embedding application): nothing to silence
        yield
        return
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _metadata(model: Any) -> dict[str, str]:
    """``rt_info['compress']`` as the ``compress.*`` keys the ONNX runner also reports."""
    info = model.get_rt_info()
    section = info[RT_INFO_SECTION] if RT_INFO_SECTION in info else {}
    return {f"compress.{key}": value.astype(str) for key, value in section.items()}


class OpenVinoRunner(Runner):
    def __init__(self, path: Path, record: dict[str, Any] | None = None, *, threads: int | None = None,
                 precision: str = "f32", trust: bool = False, content: bytes | None = None) -> None:
        """``record``: the .xml's sidecar; ``content``: the .xml's bytes as hashed by ``deploy.load``."""
        ov = _require_openvino()
        if precision not in PRECISIONS:
            raise DeployError(f"unknown OpenVINO precision '{precision}': choose one of {', '.join(PRECISIONS)}")
        check_threads(threads)
        core = ov.Core()
        try:
            with _quiet_stderr():
                if trust:
                    model = core.read_model(str(path))
                else:  # the verified bytes themselves: no file is read again or found by another name
                    model = core.read_model(*_verified_files(path, record or {}, content))
        except DeployError:
            raise
        except Exception as exc:  # RuntimeError with pages of C++ context for a broken .xml/.bin
            raise DeployError(f"cannot load OpenVINO model '{path}': {_reason(exc)}; re-export it") from None
        if len(model.inputs) != 1 or model.input(0).get_partial_shape().rank.get_length() != 4:
            raise DeployError(f"'{path}' is not an image classifier with one N x C x H x W input")
        self.input_shape = tuple(d.get_length() if d.is_static else None  # type: ignore[assignment]
                                 for d in list(model.input(0).get_partial_shape())[1:])
        if len(model.outputs) != 1 or model.output(0).get_partial_shape().rank.get_length() != 2:
            raise DeployError(f"'{path}' is not an image classifier with one N x classes output")
        classes = model.output(0).get_partial_shape()[1]
        self.num_classes = classes.get_length() if classes.is_static else None
        check_classes(self.num_classes, path)
        self.metadata = _metadata(model)
        self.preprocessing = None
        if "compress.preprocessing" in self.metadata:  # checked like the ONNX runner's: sizes drive allocations
            what = f"the compress.preprocessing metadata of '{path}'"
            self.preprocessing = check_preprocessing(parse_json(self.metadata["compress.preprocessing"], what),
                                                     self.input_shape, self.num_classes, what)
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": precision}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        try:
            self.compiled = core.compile_model(model, "CPU", config)
        except Exception as exc:
            raise DeployError(f"OpenVINO cannot compile '{path}' for the CPU ({_reason(exc)})") from None
        self.precision, self.threads = precision, threads
        self._local = threading.local()

    def _request(self) -> Any:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        return request

    def _run(self, x: np.ndarray) -> np.ndarray:
        # infer() copies the outputs out of the request (share_outputs=False), so the result stays valid
        return np.asarray(self._request().infer({0: x})[0], dtype=np.float32)
