"""The juicectl side's command and worker, served by ``python -m juicectl.child``."""

from __future__ import annotations

from typing import Any

from juicectl.child import JuiceChild
from juicectl.juice import Command, String


class Echo(Command):
    """Answer with the value sent."""

    arguments = [("value", String())]
    response = [("value", String())]


class EchoWorker(JuiceChild):
    """Echo, nothing else: the benchmarks measure the path, not the work."""

    @Echo.responder
    def echo(self, value: str) -> dict[str, Any]:
        return {"value": value}
