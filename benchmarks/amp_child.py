#!/usr/bin/env python3
"""The baseline child: a Twisted AMP server on stdin/stdout answering Echo."""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor, stdio
from twisted.protocols import amp


class Echo(amp.Command):
    """Answer with the value sent (the same command as the juicectl side's)."""

    arguments = [(b"value", amp.Unicode())]
    response = [(b"value", amp.Unicode())]


class EchoServer(amp.AMP):
    """Echo, and stop the reactor when the parent goes away."""

    @Echo.responder
    def echo(self, value: str) -> dict[str, Any]:
        return {"value": value}

    def connectionLost(self, reason: Any) -> None:
        super().connectionLost(reason)
        if reactor.running:
            reactor.stop()


def main() -> None:
    stdio.StandardIO(EchoServer())
    reactor.run()


if __name__ == "__main__":
    main()
