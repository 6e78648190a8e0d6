"""The typer application, its global options (-v/-q/--log-file/--version) and the exit-code help."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional

import typer
from typer.core import TyperGroup

from compress import logs
from compress.bounds import check_option
from compress.errors import EXIT_CODES, UsageError

logger = logs.get_logger("compress.cli")  # one logger for every command module
EXIT_HELP = "Exit codes: " + "; ".join(f"{code} {meaning}" for code, meaning in EXIT_CODES.items()) + "."


class _Interrupt(Exception):
    """Carries Ctrl-C from a command to ``main``; typer would turn a ``KeyboardInterrupt`` into a bare 130."""

    def __init__(self, stop: KeyboardInterrupt) -> None:
        super().__init__(str(stop))
        self.stop = stop


def number_params(command: Any) -> list[Any]:
    """The options of a (typer-built) command that take an int or a float, counted flags included."""
    return [p for p in command.params if p.bare_type() in ("int", "float")]


def long_name(param: Any) -> str:
    return max(param.opts, key=len)


def _bounded(command: Any) -> Any:
    """``command`` with every number option checked against ``compress.bounds.OPTION_BOUNDS`` as it is read:
    an out-of-range value is refused before the command runs (and before any other check)."""
    for param in number_params(command):
        if getattr(param, "_bounded", False):
            continue
        inner = param.callback

        def check(ctx: Any, p: Any, value: Any, inner: Any = inner) -> Any:
            if value is not None and not getattr(p, "count", False):
                check_option(long_name(p), value)
            return inner(ctx, p, value) if inner is not None else value

        param.callback = check
        param._bounded = True  # type: ignore[attr-defined]
    return command


class _Commands(TyperGroup):
    def get_command(self, ctx: Any, name: str) -> Any:
        command = super().get_command(ctx, name)
        return _bounded(command) if command is not None else None

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
