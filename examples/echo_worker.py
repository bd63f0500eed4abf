"""The echo worker: ``Echo``, ``Fail`` (a declared error) and ``Sleep``.

Run it under a controller, preferably through the child runtime's command line, which protects
stdout before this module is even imported::

    python -m juicectl.child examples.echo_worker:EchoWorker [--concurrency N]

or directly, as a script (``run()`` protects stdout before the worker is created)::

    python examples/echo_worker.py

``examples/echo_parent.py`` starts it under a ``ProcessController`` and talks to it.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

# Run from a checkout, as a script or with -m, whether juicectl is installed or not.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from examples.commands import Echo, Fail, Sleep
from juicectl.child import JuiceChild, run


class EchoWorker(JuiceChild):
    """Answers ``Echo``, ``Fail`` and ``Sleep``."""

    @Echo.responder
    def echo(self, value: str) -> dict[str, str]:
        print(f"echo {value!r}")  # goes to stderr: stdout belongs to the protocol
        return {"value": value}

    @Fail.responder
    def fail(self, message: str) -> None:
        raise ValueError(message)  # declared by Fail: answered BAD_VALUE, serving goes on

    @Sleep.responder
    def sleep(self, seconds: float) -> dict[str, float]:
        started = time.monotonic()
        time.sleep(seconds)
        return {"slept": time.monotonic() - started}


if __name__ == "__main__":
    run(EchoWorker)
