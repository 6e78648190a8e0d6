"""Errors a user can act on. The CLI prints ``str(error)`` as one line and exits 1.

Every message says what was wrong and how to fix it. Anything that is not a
``CompressError`` is a bug and keeps its traceback.
"""

from __future__ import annotations


class CompressError(Exception):
    """Base class: a user-facing problem with a one-line explanation."""


class ConfigError(CompressError):
    """A bad option, number or recipe field."""


class UnknownNameError(ConfigError):
    """A registry lookup failed (model, dataset, method, ...)."""


class DataError(CompressError):
    """A dataset is missing, empty or unreadable."""


class CheckpointError(CompressError):
    """A checkpoint or model file is missing, corrupt, unsafe or does not fit the model."""


class IntegrityError(CheckpointError):
    """An artifact's hash does not match its sidecar."""


class DiskFull(CompressError):
    """A write failed for lack of space (disk or quota); the message names the path and the space needed."""


class MissingDependency(CompressError):
    """An optional library is not installed; the message names the extra to install."""

    def __init__(self, module: str, extra: str, purpose: str = "") -> None:
        why = f" (needed for {purpose})" if purpose else ""
        super().__init__(f"'{module}' is not installed{why}: pip install 'compress-edge[{extra}]'")
        self.module = module
        self.extra = extra


class DeviceError(CompressError):
    """The requested device or accelerator is not available."""


class ExportError(CompressError):
    """Export failed or produced a model that disagrees with PyTorch."""


class TrainingDiverged(CompressError):
    """A non-finite loss stopped training."""


class GateFailed(CompressError):
    """One or more validation gates failed."""
