"""Commands shared by the echo example's parent (``echo_parent.py``) and worker
(``echo_worker.py``): both sides import the same classes, so they cannot disagree."""

from __future__ import annotations

from juicectl.juice import Command, Float, String


class Echo(Command):
    """Answer with the value sent."""

    arguments = [("value", String())]
    response = [("value", String())]


class Fail(Command):
    """Fail on purpose, with an error the command declares: the worker keeps serving."""

    arguments = [("message", String())]
    errors = {ValueError: "BAD_VALUE"}


class Sleep(Command):
    """Sleep a while, then answer how long it slept: shows what ``--concurrency`` changes."""

    arguments = [("seconds", Float())]
    response = [("slept", Float())]
