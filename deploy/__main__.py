"""``python -m deploy``: the CLI, with a Ctrl-C that arrives while numpy and the runtimes are still
being imported reported like one during the command (one line, exit status 130)."""

import sys

from deploy import INTERRUPTED  # already imported: `python -m deploy` loads the package first

try:
    from deploy.cli import main
except KeyboardInterrupt:
    print(INTERRUPTED, file=sys.stderr)
    sys.exit(130)

sys.exit(main())
