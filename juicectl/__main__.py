"""``python -m juicectl`` and the ``juicectl`` command: call, shell and demo (see ``--help``)."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``juicectl`` command line; return the exit status."""
    from juicectl._cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
