"""The echo worker and its commands: ``Echo``, ``Fail`` (a declared error) and ``Sleep``.

Both sides import this module: the parent for the commands, the child for the worker, so they
cannot disagree. Serve it under a controller with::

    python -m juicectl.child juicectl.examples.echo:EchoWorker [--concurrency N]

and talk to it::

    from juicectl import ProcessController
    from juicectl.examples.echo import Echo

    argv = [sys.executable, "-m", "juicectl.child", "juicectl.examples.echo:EchoWorker"]
    with ProcessController.start(argv) as ctl:
        ctl.call(Echo, value="hi")     # {'value': 'hi'}
"""

from __future__ import annotations

import time

from juicectl.child import JuiceChild
from juicectl.juice import Command, Float, String

__all__ = ["Echo", "EchoWorker", "Fail", "Sleep"]


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


class EchoWorker(JuiceChild):
    """Answers ``Echo``, ``Fail`` and ``Sleep``."""

    @Echo.responder
    def echo(self, value: str) -> dict[str, str]:
        """Answer ``value``; the ``print()`` goes to stderr (stdout belongs to the protocol)."""
        print(f"echo {value!r}")
        return {"value": value}

    @Fail.responder
    def fail(self, message: str) -> None:
        """Raise ``ValueError``, which ``Fail`` declares: answered ``BAD_VALUE``, serving goes
        on."""
        raise ValueError(message)

    @Sleep.responder
    def sleep(self, seconds: float) -> dict[str, float]:
        """Sleep ``seconds``, then answer how long it took."""
        started = time.monotonic()
        time.sleep(seconds)
        return {"slept": time.monotonic() - started}
