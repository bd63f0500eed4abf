"""A worker whose answers can be made as big as a test likes, to meet the limits both ways.

Run as a child with ``python -m juicectl.child tests.child.limit_workers:LimitWorker`` from the
repository root.
"""

from __future__ import annotations

import threading
from typing import Any

from juicectl.child import JuiceChild
from juicectl.juice import Bytes, Command, Float, Integer, LimitExceeded, String


class Echo(Command):
    arguments = [("value", String())]
    response = [("value", String())]


class Grow(Command):
    """Answered with ``size`` characters of ``x`` (made once per size, then kept)."""

    arguments = [("size", Integer())]
    response = [("value", String())]


class Blob(Command):
    """Answered with ``size`` bytes as the answer's body."""

    arguments = [("size", Integer())]
    response = [("body", Bytes())]


class Wait(Command):
    """Sleeps ``seconds``: keeps the requests behind it in flight."""

    arguments = [("seconds", Float())]


class Complain(Command):
    """Raises the declared ``ValueError`` with a message of ``size`` characters."""

    arguments = [("size", Integer())]
    errors = {ValueError: "COMPLAINT"}


class ComplainOfAFileName(Command):
    """Raises the declared ``ValueError`` naming a file whose name is not UTF-8 (a lone
    surrogate, as ``os.listdir`` gives it)."""

    errors = {ValueError: "COMPLAINT"}


class AskParentBig(Command):
    """The worker calls the parent with ``size`` characters and says what came of it."""

    arguments = [("size", Integer())]
    response = [("outcome", String())]


class LimitWorker(JuiceChild):
    """Echo, big answers, and a call to the parent past its limits."""

    def __init__(self) -> None:
        self.values: dict[int, str] = {}

    def value_of(self, size: int) -> str:
        """The value ``Grow`` answers with, made before the request (tests measure the rest)."""
        if size not in self.values:
            self.values[size] = "x" * size
        return self.values[size]

    @Echo.responder
    def echo(self, value: str) -> dict[str, Any]:
        return {"value": value}

    @Grow.responder
    def grow(self, size: int) -> dict[str, Any]:
        return {"value": self.value_of(size)}

    @Blob.responder
    def blob(self, size: int) -> dict[str, Any]:
        return {"body": b"b" * size}

    @Wait.responder
    def wait(self, seconds: float) -> None:
        threading.Event().wait(seconds)

    @Complain.responder
    def complain(self, size: int) -> None:
        raise ValueError("c" * size)

    @ComplainOfAFileName.responder
    def complain_of_a_file_name(self) -> None:
        raise ValueError("not indexed: report-\udcff.txt")

    @AskParentBig.responder
    def ask_parent_big(self, size: int) -> dict[str, Any]:
        try:
            self.call(Echo, value="x" * size)
        except LimitExceeded as refused:
            return {"outcome": f"refused: {refused}"}
        return {"outcome": "sent"}
