"""Workers and commands for the pool tests, served by ``python -m juicectl.child``."""

from __future__ import annotations

import os
import time
from typing import Any

from juicectl.child import JuiceChild
from juicectl.juice import Command, Float, Integer, String


class Echo(Command):
    arguments = [("value", String())]
    response = [("value", String())]


class Slow(Command):
    """Sleep ``seconds``, then answer ``n`` and the worker's pid."""

    arguments = [("seconds", Float()), ("n", Integer())]
    response = [("n", Integer()), ("pid", Integer())]


class Pid(Command):
    response = [("pid", Integer())]


class Count(Command):
    """Count calls per key in this worker: a stateful worker."""

    arguments = [("name", String())]
    response = [("count", Integer()), ("pid", Integer())]


class Where(Command):
    """Which "host" the worker runs on (its ``POOL_HOST``, set by the test's launcher) and its
    pid."""

    response = [("host", String()), ("pid", Integer())]


class PoolWorker(JuiceChild):
    """Echo, sleep, tell its pid and where it runs, count."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    @Echo.responder
    def echo(self, value: str) -> dict[str, Any]:
        return {"value": value}

    @Slow.responder
    def slow(self, seconds: float, n: int) -> dict[str, Any]:
        time.sleep(seconds)
        return {"n": n, "pid": os.getpid()}

    @Pid.responder
    def pid(self) -> dict[str, Any]:
        return {"pid": os.getpid()}

    @Where.responder
    def where(self) -> dict[str, Any]:
        return {"host": os.environ.get("POOL_HOST", ""), "pid": os.getpid()}

    @Count.responder
    def count(self, name: str) -> dict[str, Any]:
        self.counts[name] = self.counts.get(name, 0) + 1
        return {"count": self.counts[name], "pid": os.getpid()}


class RefusesWhileFlagged(PoolWorker):
    """Exits at its start while the file ``POOL_REFUSE_FLAG`` names exists."""

    def __init__(self) -> None:
        super().__init__()
        if os.path.exists(os.environ["POOL_REFUSE_FLAG"]):
            raise SystemExit(1)


class ConcurrentWorker(PoolWorker):
    """The same handlers, four at a time."""

    concurrency = 4
