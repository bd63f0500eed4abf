"""``python -m juicectl`` and the ``juicectl`` command: call, shell and demo (see ``--help``)."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``juicectl`` command line; return the exit status."""
    try:
        from juicectl._cli import main as cli_main
    except KeyboardInterrupt:
        # Loading the command line takes a few tenths of a second, before its own handling of
        # Ctrl-C is in place: say it as that handling does (130 is 128 + SIGINT).
        print("juicectl: interrupted", file=sys.stderr, flush=True)
        return 130
    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
