"""Diagnostics through the standard ``logging`` module, on stderr; stdout carries results only.

Every module logs to ``logging.getLogger(__name__)`` under the ``compress`` logger. That logger gets
one handler of its own, on first use (``get_logger``): messages at INFO and above go to stderr as plain
lines (``epoch 3/10 ...``), warnings and errors with a ``warning:`` / ``error:`` prefix. This is what
library users and the tests see without configuring anything, as the package printed before it logged.
The command line reconfigures it once per invocation (``configure``): ``-v`` adds debug lines, ``-q``
keeps warnings and errors only, ``--log-file`` writes every line, with time and origin, to a file.

The ``compress`` logger does not pass records on to the root logger, so an application that configures
logging itself sees each line once; it can take them over with ``logging.getLogger("compress")``.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TextIO

ROOT = "compress"
_PREFIX = {logging.DEBUG: "debug: ", logging.WARNING: "warning: ", logging.ERROR: "error: ", logging.CRITICAL: "error: "}
FILE_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """A handler on whatever ``sys.stderr`` is when a record is emitted (pytest and redirections swap it)."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stderr


class _PlainFormatter(logging.Formatter):
    """Information as the bare line; other levels say what they are, as the tools users know do."""

    def format(self, record: logging.LogRecord) -> str:
        return _PREFIX.get(record.levelno, "") + super().format(record)


class _LogFile(logging.FileHandler):
    """``--log-file``: a file that stops accepting lines (a full disk, /dev/full) is reported once, on
    stderr, and then left alone; logging's default would print a traceback for every line."""

    failed = False

    def emit(self, record: logging.LogRecord) -> None:
        if not self.failed:
            super().emit(record)

    def flush(self) -> None:
        try:
            super().flush()
        except (OSError, ValueError) as exc:  # called outside emit too: on close and at exit
            self._give_up(exc)

    def handleError(self, record: logging.LogRecord) -> None:
        self._give_up(sys.exc_info()[1])

    def _give_up(self, exc: BaseException | None) -> None:
        if self.failed:
            return
        self.failed = True
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        try:
            sys.stderr.write(f"warning: cannot write the log file '{self.baseFilename}' ({reason}); "
                             "logging to it stopped\n")
        except (OSError, ValueError):
            pass

    def close(self) -> None:
        try:
            super().close()
        except (OSError, ValueError) as exc:
            self._give_up(exc)


def _ours(handler: logging.Handler) -> bool:
    return getattr(handler, "_compress", False)


def configure(level: int = logging.INFO, log_file: str | os.PathLike[str] | None = None) -> None:
    """Send ``compress`` records at ``level`` and above to stderr, and every record to ``log_file`` if given.

    Replaces the handlers a previous call installed (the CLI calls it once per command, tests many times)."""
    stderr = _Stderr()
    stderr.setLevel(level)
    stderr.setFormatter(_PlainFormatter())
    handlers: list[logging.Handler] = [stderr]
    if log_file is not None:  # opened first: a file that cannot be written leaves the old set-up in place
        file = _LogFile(log_file, encoding="utf-8")
        file.setLevel(logging.DEBUG)
        file.setFormatter(logging.Formatter(FILE_FORMAT))
        handlers.append(file)
    logger = logging.getLogger(ROOT)
    for handler in [h for h in logger.handlers if _ours(h)]:
        logger.removeHandler(handler)
        handler.close()
    for handler in handlers:
        handler._compress = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if log_file is not None else level)
    logger.propagate = False


def stderr_level() -> int:
    """The level from which lines reach stderr (the CLI hides progress bars above INFO)."""
    levels = [h.level for h in logging.getLogger(ROOT).handlers if isinstance(h, _Stderr)]
    return levels[0] if levels else logging.INFO


def get_logger(name: str) -> logging.Logger:
    """The logger of module ``name`` (pass ``__name__``), with the default handler installed on first use."""
    if not any(_ours(h) for h in logging.getLogger(ROOT).handlers):
        configure()
    return logging.getLogger(name)


def level_for(verbose: int, quiet: int) -> int:
    """``-v`` (debug) and ``-q`` (warnings), repeatable: -qq shows errors only."""
    return min(max(logging.INFO + 10 * (quiet - verbose), logging.DEBUG), logging.ERROR)
