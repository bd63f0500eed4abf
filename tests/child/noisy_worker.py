"""A worker that writes to stdout every way it can, at import time and in its handler.

None of it may reach the protocol stream: ``python -m juicectl.child`` protects stdio before
this module is imported, and the runtime keeps it protected while handlers run.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import structlog

from juicectl.child import JuiceChild
from tests.workers.runtime import Noisy


def make_noise(when: str) -> None:
    """Write one marker line per route to stdout (all of which must end up on stderr)."""
    print(f"noise: print at {when}")
    sys.stdout.write(f"noise: sys.stdout at {when}\n")
    sys.stdout.flush()
    sys.__stdout__.write(f"noise: sys.__stdout__ at {when}\n")  # type: ignore[union-attr]
    sys.__stdout__.flush()  # type: ignore[union-attr]
    os.write(1, f"noise: fd 1 at {when}\n".encode())
    logging.getLogger("noisy").warning("noise: logging at %s", when)
    structlog.get_logger("noisy").info("noise: structlog", at=when)
    subprocess.run(["echo", f"noise: subprocess at {when}"], check=True)
    print(f"noise: stdin gives {sys.stdin.read()!r} at {when}")


make_noise("import")


class NoisyWorker(JuiceChild):
    def __init__(self) -> None:
        make_noise("init")

    @Noisy.responder
    def noisy(self, value: str) -> dict[str, str]:
        make_noise(f"handler {value}")
        return {"value": value}
