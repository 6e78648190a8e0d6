"""The ``compress`` command (console script and ``python -m compress``).

``main`` loads the command line (typer and the command modules; no torch) only once it can turn a Ctrl-C
during that load into one line and exit 130, as Ctrl-C anywhere later is (``compress.cli.main``).
"""

from __future__ import annotations

import sys
from typing import Optional

INTERRUPTED_AT_START = "interrupted: compress stopped while starting; run the same command again"


def main(argv: Optional[list[str]] = None) -> None:
    try:
        from compress.cli import main as run_command
    except KeyboardInterrupt:
        from compress import logs

        logs.configure()
        logs.get_logger("compress.cli").error(INTERRUPTED_AT_START)
        sys.exit(130)
    run_command(argv)


if __name__ == "__main__":
    main()
