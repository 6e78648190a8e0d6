"""The command line (the only package that imports typer); each command is one library call.

Results go to stdout (``--json`` where a command prints one), diagnostics to stderr through ``logging``
(``compress.logs``: ``-v``/``-q``, ``--log-file``). User mistakes raise ``CompressError``; ``main`` prints
them as one line and exits with the error's code (``compress.errors.EXIT_CODES``): 1 the run failed,
2 a usage error (click's own, such as a missing option or a value of the wrong type, in the same
one-line form), 3 a gate failed, 130 interrupted by Ctrl-C.

Modules: ``app`` (the typer app and its global options), ``options`` (option tables and help shared by
commands), ``listing`` (list, schema), ``training`` (train-teacher, distill), ``deployment`` (export,
validate), ``run`` (run). Importing them registers their commands on ``app``; they import no torch (nor
onnx, openvino, timm): the options come from torch-free tables, and each command imports its library code
when it runs, so --help, completion and usage errors answer at once. The console script
(``compress.__main__:main``) imports this package only once Ctrl-C during that import is handled.
"""

from __future__ import annotations

import errno
import os
import sys
from typing import Optional

import typer

from compress import logs
from compress.cli import deployment, listing, run, training  # noqa: F401  (importing registers the commands)
from compress.cli.app import _Interrupt, app, logger
from compress.errors import CompressError, Interrupted


def _command(args: list[str]) -> str:
    """The command named in ``args`` (the first word that is neither an option nor a global option's value)."""
    words = iter(args)
    for word in words:
        if word == "--log-file":
            next(words, None)
        elif not word.startswith("-"):
            return word
    return ""


def _interrupted(command: str, stop: BaseException | None) -> str:
    """One line: what Ctrl-C stopped, and how to go on from there."""
    what = str(stop) if isinstance(stop, Interrupted) else f"compress {command} stopped".replace("  ", " ")
    if command == "run":
        how = "run the same command again: finished stages are kept and training continues from its last saved epoch"
    elif isinstance(stop, Interrupted) and stop.resumable:
        how = "continue from the last saved epoch with the same command and --resume"
    else:
        how = "run the same command again"
    return f"interrupted: {what}; {how}"


_OUTPUT_ERRORS = {errno.ENOSPC: "no space left on the device written to: free some space or write elsewhere",
                  errno.EDQUOT: "disk quota exceeded: free some space or write elsewhere",
                  errno.EPIPE: "the program reading the output closed it"}


def _output_failed(exc: OSError) -> str | None:
    """One line for a write that failed for lack of room or reader (``compress schema > /dev/full``,
    ``| head``), else None. Standard output then points at /dev/null: the text still buffered in it
    would otherwise fail again, with a traceback, when Python flushes it at exit."""
    reason = _OUTPUT_ERRORS.get(exc.errno or 0)
    if reason is None:
        return None
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):  # not a real descriptor (pytest's capture): nothing buffered to fail at exit
        pass
    return f"cannot write the output ({exc.strerror}): {reason}"


MAX_WORD = 300  # characters of one word an error line repeats: real paths fit (PATH_MAX is 4096, rarely
# used), a 20,000-character hostile value does not


def _short(message: str) -> str:
    """``message`` with each overlong word cut (a 20,000-character value would otherwise be the line)."""
    return " ".join(word if len(word) <= MAX_WORD else f"{word[:MAX_WORD - 20]}...({len(word)} characters)"
                    for word in message.split(" "))


def _not_utf8(args: list[str]) -> str | None:
    """A usage error for an argument that is not UTF-8 text (Python keeps such bytes as surrogates, which no
    file, log or JSON record of ours can hold), or None."""
    for arg in args:
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            shown = arg.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            return f"argument '{_short(shown)}' is not UTF-8 text: rename the file or pass the value in UTF-8"
    return None


def main(argv: Optional[list[str]] = None) -> None:
    """The ``compress`` command: run it, and turn what it raised into one line and an exit code (``EXIT_CODES``)."""
    args = sys.argv[1:] if argv is None else list(argv)
    logs.configure()  # the defaults until the common options are read: a usage error is logged like any other
    not_utf8 = _not_utf8(args)
    if not_utf8 is not None:
        logger.error(not_utf8)
        sys.exit(2)
    try:
        # typer returns 0 after --help and --version, and 130 for a Ctrl-C while it parses the command line
        code = app(args=args, prog_name="compress", standalone_mode=False)
        if code == 130:
            logger.error(_interrupted(_command(args), None))
    except _Interrupt as interrupt:  # Ctrl-C in a command
        logger.error(_interrupted(_command(args), interrupt.stop))
        code = 130
    except CompressError as exc:
        logger.error(_short(str(exc)))
        code = exc.exit_code
    except OSError as exc:
        message = _output_failed(exc)
        if message is None and exc.filename is None:
            raise
        # a path the system refuses (too long, a loop, no permission) where no check of ours named it first
        logger.error(message or _short(f"cannot use '{exc.filename}': {exc.strerror or exc}"))
        code = 1
    except (KeyboardInterrupt, typer.Abort):  # Ctrl-C before typer took over (while importing), or an aborted prompt
        logger.error(_interrupted(_command(args), None))
        code = 130
    except typer.TyperException as exc:  # typer's usage errors (it vendors click): exit 2 like click
        if type(exc).__name__ == "NoArgsIsHelpError":  # bare `compress`: show the help, not an error
            typer.echo(exc.format_message())
            sys.exit(0)
        command = _command(args)
        where = f"compress {command} --help" if command else "compress --help"
        one_line = " ".join(exc.format_message().split())  # click lists choices on lines of their own
        logger.error(_short(f"{one_line} (see `{where}`)"))
        code = exc.exit_code
    if isinstance(code, int) and code != 0:  # success returns, as a console script's entry point may
        sys.exit(code)


if __name__ == "__main__":
    main()
