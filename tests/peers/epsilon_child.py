"""A child speaking Juice with the reference implementation (Divmod epsilon 0.8.0, Twisted).

Run as ``python tests/peers/epsilon_child.py``: serves on stdin/stdout, like the batch child
of the original system. It answers ``Negotiate`` (built into ``epsilon.juice.Juice``),
``Echo`` and ``Shutdown`` (answer, then close and exit), and, as the reference does, answers an
unknown command with ``UNHANDLED`` and closes the connection. It exits when the connection is
lost. Only the test extra's packages are needed (epsilon, twisted, six, pyopenssl).
"""

from __future__ import annotations

import sys
from typing import Any

from epsilon import juice
from twisted.internet import reactor, stdio
from twisted.python import log


class Echo(juice.Command):
    arguments = [("value", juice.String())]
    response = [("value", juice.String())]


class Shutdown(juice.Command):
    pass


class EpsilonChild(juice.Juice):
    def command_ECHO(self, value: str) -> dict[str, Any]:
        return {"value": value}

    command_ECHO.command = Echo  # type: ignore[attr-defined]

    def command_SHUTDOWN(self) -> dict[str, Any]:
        # Answer first, then close: the answer is written before the connection goes.
        reactor.callLater(0, self.transport.loseConnection)
        return {}

    command_SHUTDOWN.command = Shutdown  # type: ignore[attr-defined]

    def connectionLost(self, reason: Any) -> None:
        juice.Juice.connectionLost(self, reason)
        if reactor.running:
            reactor.stop()


def main() -> None:
    log.startLogging(sys.stderr, setStdout=False)
    stdio.StandardIO(EpsilonChild(False))
    reactor.run()


if __name__ == "__main__":
    main()
