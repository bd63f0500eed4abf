"""The echo worker: ``Echo``, ``Fail`` (a declared error) and ``Sleep``.

Run it under a controller, preferably through the child runtime's command line, which protects
stdout before this module is even imported::

    python -m juicectl.child examples.echo_worker:EchoWorker [--concurrency N]

or directly, as a script (``run()`` protects stdout before the worker is created)::

    python examples/echo_worker.py

``examples/echo_parent.py`` starts it under a ``ProcessController`` and talks to it. The
worker itself ships with juicectl (``juicectl.examples.echo:EchoWorker``, which the
documentation uses); this script is the way to run it as a program of its own. Run by hand,
it serves what you type until end of input; Ctrl-C ends it quietly, with status 130.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run from a checkout, as a script or with -m, whether juicectl is installed or not.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from juicectl.child import run
from juicectl.examples.echo import EchoWorker

__all__ = ["EchoWorker"]


if __name__ == "__main__":
    run(EchoWorker)
