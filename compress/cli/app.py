"""The typer application, its global options (-v/-q/--log-file/--version) and the exit-code help."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional

import typer
from typer.core import TyperGroup

from compress import logs
from compress.errors import EXIT_CODES, UsageError

logger = logs.get_logger("compress.cli")  # one logger for every command module
EXIT_HELP = "Exit codes: " + "; ".join(f"{code} {meaning}" for code, meaning in EXIT_CODES.items()) + "."


class _Interrupt(Exception):
    """Carries Ctrl-C from a command to ``main``; typer would turn a ``KeyboardInterrupt`` into a bare 130."""

    def __init__(self, stop: KeyboardInterrupt) -> None:
        super().__init__(str(stop))
        self.stop = stop


class _Commands(TyperGroup):
    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as stop:
            raise _Interrupt(stop) from None


app = typer.Typer(
    cls=_Commands,
    name="compress",
    help="Distil image classifiers (ATSC, SimKD, KD), export them to ONNX / TensorRT, and validate accuracy "
         "and latency at every stage. Start with `compress list models` or `compress train-teacher --help`. "
         "Results go to stdout, diagnostics to stderr.",
    epilog=EXIT_HELP,
    add_completion=True,  # --install-completion / --show-completion
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _show_version(value: bool) -> None:
    if value:
        from compress.version import __version__

        typer.echo(f"compress {__version__}")
        raise typer.Exit()


@app.callback()
def common_options(
    ctx: typer.Context,
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, show_default=False, help="Also debug lines on stderr."),
    quiet: int = typer.Option(0, "--quiet", "-q", count=True, show_default=False,
                              help="Only warnings and errors on stderr, no progress bars; -qq: errors only."),
    log_file: Optional[Path] = typer.Option(None, "--log-file", help="Also write every log line, with its time, to this "
                                                                     "file (appended), whatever -v/-q say."),
    version: bool = typer.Option(False, "--version", callback=_show_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """Options for every command; they come before the command: `compress -q --log-file run.log run ...`."""
    try:
        logs.configure(logs.level_for(verbose, quiet), log_file)
    except OSError as exc:
        raise UsageError(f"--log-file: cannot write '{log_file}' ({exc.strerror}): choose a writable path") from None
    from compress.version import __version__

    logger.debug(f"compress {__version__}, command {ctx.invoked_subcommand}, Python {sys.version.split()[0]}")
