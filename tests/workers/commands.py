"""Commands shared by the tests' parents and the echo workers."""

from __future__ import annotations

from juicectl.juice import Command, Float, Integer, String


class Echo(Command):
    """Answer with the value sent."""

    arguments = [("value", String())]
    response = [("value", String())]


class Sleep(Command):
    """Sleep, then answer."""

    arguments = [("seconds", Float())]
    response = [("slept", Float())]


class Pid(Command):
    """Answer with the worker's pid."""

    response = [("pid", Integer())]


class Exit(Command):
    """Exit at once with the given status, without answering."""

    arguments = [("status", Integer())]


class Oops(Exception):
    """A declared error."""


class Fail(Command):
    """Raise the declared error ``Oops`` (code ``OOPS``)."""

    errors = {Oops: "OOPS"}
