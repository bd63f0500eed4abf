"""Commands and workers the child-runtime tests serve, in process and as real children.

Run as a child with ``python -m juicectl.child tests.workers.runtime:TestWorker`` from the
repository root.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from juicectl.child import JuiceChild
from juicectl.juice import Boolean, Command, Float, Integer, Shutdown, String


class FatalProblem(Exception):
    """Declared fatal by ``Fatal``: answered with its code, then the child closes."""


class Echo(Command):
    arguments = [("value", String())]
    response = [("value", String())]


class Fail(Command):
    """Raises the declared ``ValueError``: answered ``BAD_VALUE``, the child keeps serving."""

    arguments = [("message", String())]
    errors = {ValueError: "BAD_VALUE"}


class Crash(Command):
    """Raises an undeclared ``RuntimeError``: answered ``UNHANDLED``, the child closes."""


class Fatal(Command):
    arguments = [("message", String())]
    fatal_errors = {FatalProblem: "FATAL_PROBLEM"}


class Block(Command):
    """Waits until ``Release`` (or the test) sets the worker's event."""

    response = [("released", Boolean())]


class Release(Command):
    pass


class Sleep(Command):
    arguments = [("seconds", Float())]


class Double(Command):
    """Answered by the parent: the child's calls to its parent use it."""

    arguments = [("value", Integer())]
    response = [("value", Integer())]
    errors = {ValueError: "NEGATIVE"}


class AskParent(Command):
    """The child asks the parent to double ``value`` and answers with the result."""

    arguments = [("value", Integer())]
    response = [("value", Integer())]
    errors = {ValueError: "NEGATIVE"}


class Note(Command):
    """A request that wants no answer (no ``-Ask``)."""

    arguments = [("value", String())]
    requires_answer = False


class TellParent(Command):
    """The child sends the parent a ``Note``, which needs no answer."""

    arguments = [("value", String())]


class Noisy(Command):
    """Served by ``noisy_worker.NoisyWorker``, which writes to stdout every way it can."""

    arguments = [("value", String())]
    response = [("value", String())]


class Modules(Command):
    """Which of the heavy modules the child has imported (comma-separated)."""

    response = [("names", String())]


class TestWorker(JuiceChild):
    """One handler per behaviour under test."""

    __test__ = False  # not a pytest test class

    def __init__(self) -> None:
        self.release = threading.Event()
        self.seen: list[str] = []

    def release_all(self) -> None:
        """Let every blocked handler return (test clean-up)."""
        self.release.set()

    @Echo.responder
    def echo(self, value: str) -> dict[str, Any]:
        self.seen.append(value)
        return {"value": value}

    @Fail.responder
    def fail(self, message: str) -> None:
        raise ValueError(message)

    @Crash.responder
    def crash(self) -> None:
        raise RuntimeError("this handler is broken")

    @Fatal.responder
    def fatal(self, message: str) -> None:
        raise FatalProblem(message)

    @Block.responder
    def block(self) -> dict[str, Any]:
        return {"released": self.release.wait(timeout=20)}

    @Release.responder
    def release_blocked(self) -> None:
        self.release.set()

    @Sleep.responder
    def sleep(self, seconds: float) -> None:
        threading.Event().wait(seconds)

    @AskParent.responder
    def ask_parent(self, value: int) -> dict[str, Any]:
        answer = self.call(Double, value=value).result(timeout=20)
        return {"value": answer["value"]}

    @TellParent.responder
    def tell_parent(self, value: str) -> None:
        self.call(Note, value=value).result(timeout=20)

    @Modules.responder
    def modules(self) -> dict[str, Any]:
        # The parent's libraries, and what a worker's start used to pay for without needing
        # it (docs/performance.md, "The worker's start").
        heavy = {"pykka", "structlog", "twisted", "dataclasses", "inspect", "logging",
                 "concurrent", "argparse", "shutil"}
        loaded = sorted({name.split(".")[0] for name in sys.modules} & heavy)
        return {"names": ",".join(loaded)}


class ConcurrentWorker(TestWorker):
    """``TestWorker`` that asks for two handler threads itself."""

    concurrency = 2


class ShutdownHookWorker(TestWorker):
    """Has its own ``Shutdown`` responder: it runs, then the runtime closes regardless."""

    @Shutdown.responder
    def shutdown(self) -> None:
        self.seen.append("shutdown hook")


class Exit(Command):
    """The handler calls ``sys.exit(3)``."""


class ExitWorker(TestWorker):
    @Exit.responder
    def exit(self) -> None:
        sys.exit(3)
