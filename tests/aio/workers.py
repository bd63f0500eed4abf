"""A worker for the asyncio tests: the integration tests' commands, plus ``WaitFor``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from juicectl.juice import Command, Float, Integer, String
from tests.workers.echo import EchoWorker


class WaitFor(Command):
    """Answer once the file ``path`` exists (the test's event loop creates it)."""

    arguments = [("path", String())]
    response = [("waited", Float())]


class TimeoutEcho(Command):
    """A command with an argument named ``timeout``: only the mapping forms can send it."""

    arguments = [("timeout", Integer())]
    response = [("timeout", Integer())]


class AioWorker(EchoWorker):
    """Echo, Sleep, Pid, Exit, Fail, WaitFor and TimeoutEcho."""

    @TimeoutEcho.responder
    def timeout_echo(self, timeout: int) -> dict[str, Any]:
        return {"timeout": timeout}

    @WaitFor.responder
    def wait_for(self, path: str) -> dict[str, Any]:
        started = time.monotonic()
        deadline = started + 30
        while not Path(path).exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{path} never appeared")
            time.sleep(0.01)
        return {"waited": time.monotonic() - started}
