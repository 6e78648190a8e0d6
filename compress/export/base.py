"""What every export backend shares: the table entry, what a step draws on, and what it hands back.

A backend is one file in ``compress/export/`` (its typed options with ``validate()``, its step
function) plus one ``ExportBackend`` entry in ``compress.export.backends.BACKENDS``. ``compress export``
and the pipeline both call the step; they differ only in where the step's inputs come from
(``ExportSource``) and in what they do with its result (ship the artifacts, or record a stage).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol

import numpy as np

if TYPE_CHECKING:
    from torch import nn

    from compress.data.preprocessing import Preprocessing


class BackendOptions(Protocol):
    """A backend's typed options: a dataclass whose fields are its recipe keys."""

    def validate(self) -> None:
        """Raise ``ConfigError`` (one line, naming the field) on a value the backend cannot use."""

    def images_needed(self) -> tuple[int, int]:
        """(validation images, calibration images) the step reads; (0, 0) when it reads none."""


def within_gate(drop_points: float, gate: float) -> bool:
    """Whether a top-1 drop (points) is within a gate. Drops are counts of images scaled to points, so 20 of
    2000 images is 1.0000000000000009 points in floating point: that is still a 1-point drop."""
    return drop_points <= gate + 1e-9


@dataclass(frozen=True)
class ExportImages:
    """Preprocessed float32 NCHW images for a step's checks and calibration."""

    val_x: np.ndarray  # validation images, for parity and accuracy checks
    val_y: np.ndarray  # their labels
    calibration: np.ndarray  # training images, for INT8 activation ranges (may be empty)


@dataclass
class ExportSource:
    """What a step may draw on. ``compress export`` and the pipeline each fill it in their own way."""

    student: Callable[[], tuple["nn.Module", "Preprocessing"]]  # the deployable student, loaded on first use
    student_sha256: str  # the checkpoint's hash, recorded in the ONNX sidecar
    images: Callable[[int, int, int], ExportImages]  # (validation, calibration, channels) -> images
    built: Mapping[str, Path]  # artifacts built before this step, by backend name ({"onnx": .../model.onnx})
    options: Mapping[str, Any]  # every backend's options by name (TensorRT INT8 follows the int8 method)
    cache_dir: Path  # files kept between builds (TensorRT's timing cache)
    log: Callable[[str], None] = lambda message: None  # progress lines ("quantizing to INT8 ...")
    full_checks: bool = True  # False: the steps' own latency checks are quick (the pipeline times later)

    def upstream(self, backend: str) -> Path:
        """The artifact of ``backend`` this step is built from."""
        if backend not in self.built:
            from compress.errors import ConfigError

            raise ConfigError(f"this export step is built from the {backend} model, which was not built: "
                              f"add {backend} to what is exported")
        return self.built[backend]


@dataclass
class StepResult:
    """What a step wrote and measured."""

    artifacts: list[Path]  # written files, each with its sidecar next to it
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)  # measurements by name ("parity")
    summary: str = ""  # one line for the pipeline's log


@dataclass(frozen=True)
class Machine:
    """Whether this machine can build (and run) a backend's artifact."""

    facts: dict[str, bool]  # what decides it; part of the pipeline stage's inputs, so a GPU appearing re-runs it
    missing: str = ""  # why it cannot, in one line; "" when it can


Step = Callable[[ExportSource, Any, Path], StepResult]  # (source, options, output folder) -> result


@dataclass(frozen=True)
class ExportBackend:
    """One row of the backend table: everything outside the backend's own file derives from it."""

    name: str  # recipe key under `export:`; the name validation gives its artifact
    stage: str  # pipeline stage (and its folder in a run)
    artifact: str  # the file the step writes, e.g. "model.onnx"
    suffixes: tuple[str, ...]  # file-name endings `compress validate` recognises as this backend's artifacts
    engine: str  # what runs it through `deploy.load`: "onnxruntime" (OnnxRunner), "openvino" (OpenVinoRunner)
    #              or "tensorrt" (TensorRTRunner)
    flag: str  # `compress export --<flag>`
    help: str  # that flag's help
    options: type  # the typed options class (a dataclass with validate()); called bare it gives the defaults
    step: Step
    built_from: tuple[str, ...] = ()  # backends whose artifacts the step reads (none: the PyTorch student)
    cpu_threads: bool = True  # runs in a CPU thread pool, timed at each thread count (False: a GPU engine)
    default: bool = False  # built by `compress export` unless told otherwise
    preflight: Callable[[], object] | None = None  # raises MissingDependency before any work (`compress export`)
    machine: Callable[[], Machine] | None = None  # for artifacts that need more than a CPU (the pipeline skips)
    # files that travel with the artifact: its name with this suffix instead of the last one (an OpenVINO
    # model.xml keeps its weights in model.bin); shipped, recorded and hashed together with it
    companions: tuple[str, ...] = ()
