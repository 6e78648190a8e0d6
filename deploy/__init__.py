"""Torch-free runtime for the edge box: load an exported model and classify images.

    import deploy
    runner = deploy.load("model.onnx")            # or model.int8.onnx, model.plan, model.xml
    logits, labels = runner.predict(uint8_images)  # HW, HWC, NHWC or NCHW
    logits, labels = runner.predict(deploy.read_image("photo.png"))  # 8/16-bit, float TIFF...

Only numpy and the model's runtime (onnxruntime, openvino, or tensorrt + cuda-python) are imported; Pillow is
used, when present, to read image files and resize. Never imports torch or compress.

``import deploy`` itself imports nothing heavy: the runners, numpy included, are imported on first use
(PEP 562 ``__getattr__``), so ``python -m deploy`` can report a Ctrl-C during those imports in one line.
"""

from __future__ import annotations

import sys

INTERRUPTED = "error: interrupted (Ctrl-C)"  # the CLI's line for a Ctrl-C before its command runs (__main__ too)

try:
    import importlib
    from pathlib import Path
    from typing import TYPE_CHECKING, Any

    from deploy.errors import DeployError
except KeyboardInterrupt:
    # `python -m deploy` imports this package before its __main__ can catch anything (sys.argv[0] is "-m"
    # while it does): a Ctrl-C this early is the CLI's one line and 130 too, not a traceback.
    if sys.argv[:1] == ["-m"]:
        sys.stderr.write(INTERRUPTED + "\n")
        raise SystemExit(130) from None
    raise

if TYPE_CHECKING:
    from deploy.images import read_image
    from deploy.openvino_runner import OpenVinoRunner
    from deploy.runners import OnnxRunner, Runner, TensorRTRunner

_LAZY = {"read_image": "deploy.images", "OpenVinoRunner": "deploy.openvino_runner", "OnnxRunner": "deploy.runners",
         "Runner": "deploy.runners", "TensorRTRunner": "deploy.runners"}
_SUBMODULES = ("bench", "cli", "images", "integrity", "metadata", "openvino_runner", "preprocess", "runners")


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f"deploy.{name}")
    raise AttributeError(f"module 'deploy' has no attribute '{name}'")


def _runner_class(name: str) -> Any:
    """The runner class by attribute lookup on this module (imported on first use; a test may replace it)."""
    return getattr(sys.modules[__name__], name)


ENGINE_SUFFIXES = (".plan", ".engine", ".trt")


def load(path: str | Path, *, provider: str = "cpu", threads: int | None = None, trust: bool = False) -> "Runner":
    """A runner for an ``.onnx`` model, an OpenVINO ``.xml`` IR or a TensorRT engine, verified against its
    sidecar unless ``trust``. ``provider`` picks the ONNX Runtime device; OpenVINO IRs run on the CPU."""
    from deploy.integrity import read_model_bytes, read_sidecar

    path = Path(path)
    if not path.exists():
        raise DeployError(f"model file '{path}' does not exist: check the path")
    if not path.is_file():  # a FIFO or device would block or never end the SHA-256 read
        raise DeployError(f"model file '{path}' is not a regular file: pass the .onnx/.plan file itself")
    # Each runtime gets the bytes whose hash was checked (read once), so no file can change in between
    if path.suffix in ENGINE_SUFFIXES:
        content = read_model_bytes(path)
        return _runner_class("TensorRTRunner")(path, read_sidecar(path, trust, content), content)
    if path.suffix == ".onnx":
        content = None if trust else read_model_bytes(path)  # trusted: by path, external data allowed
        read_sidecar(path, trust, content)
        return _runner_class("OnnxRunner")(path, provider, threads, content=content)
    if path.suffix == ".xml":
        if provider != "cpu":
            raise DeployError(f"provider '{provider}' applies to ONNX models; an OpenVINO .xml runs on the CPU: "
                              "use provider='cpu'")
        content = None if trust else read_model_bytes(path)
        return _runner_class("OpenVinoRunner")(path, read_sidecar(path, trust, content), threads=threads, trust=trust,
                                               content=content)
    raise DeployError(f"unknown model file type '{path.suffix}': expected .onnx, an OpenVINO .xml "
                      "or a TensorRT .plan/.engine")


__all__ = ["DeployError", "OnnxRunner", "OpenVinoRunner", "Runner", "TensorRTRunner", "load", "read_image"]
