"""Errors a user can act on. The CLI prints ``str(error)`` as one line and exits with the error's
``exit_code``: 1 the run failed, 2 a usage error, 3 a gate failed (see ``EXIT_CODES``); 130 after Ctrl-C
(``Interrupted``).

Every message says what was wrong and how to fix it. Anything that is not a
``CompressError`` is a bug and keeps its traceback.
"""

from __future__ import annotations


# The exit statuses of `compress`, documented in `compress --help` and the README.
EXIT_CODES = {
    0: "success",
    1: "the run failed (a bad file, a bad recipe or setting, a runtime error)",
    2: "usage error: unknown or missing option, a value of the wrong type",
    3: "a gate failed (every artifact and report is still written)",
    130: "interrupted (Ctrl-C): finished epochs and stages are kept",
}


class CompressError(Exception):
    """Base class: a user-facing problem with a one-line explanation."""

    exit_code = 1


class ConfigError(CompressError):
    """A bad option, number or recipe field."""


class UsageError(ConfigError):
    """The command line itself is wrong (a value the option cannot take); exits 2 like click's usage errors."""

    exit_code = 2


class UnknownNameError(ConfigError):
    """A registry lookup failed (model, dataset, method, ...)."""


class DataError(CompressError):
    """A dataset is missing, empty or unreadable."""


class CheckpointError(CompressError):
    """A checkpoint or model file is missing, corrupt, unsafe or does not fit the model."""


class IntegrityError(CheckpointError):
    """An artifact's hash does not match its sidecar."""


class StructuredFileError(CheckpointError, ConfigError):
    """A JSON or YAML file (report, baseline, sidecar, recipe, record) refused by ``compress.structured``: not a
    regular file, too large, too deep, a number too long or not finite, a duplicate key. The message names
    the file and the key path. Both a bad file (``CheckpointError``) and a bad input (``ConfigError``), so
    the handlers written for either before it existed still catch it."""


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
    """One or more validation gates failed; raised after every artifact and report is written."""

    exit_code = 3


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) stopped the work; the message says what was kept. ``resumable``: a saved training
    state lets ``--resume`` continue from the last completed epoch. Still a ``KeyboardInterrupt`` (not a
    ``CompressError``), so that code catching ``Exception`` lets it through, as it would Ctrl-C."""

    exit_code = 130

    def __init__(self, message: str, resumable: bool = False) -> None:
        super().__init__(message)
        self.resumable = resumable
