"""Write a worker, and serve it on stdin/stdout as a child of a juicectl controller.

Only the codec (:mod:`juicectl.juice`) and the standard library are imported here, never pykka
or structlog, so a worker starts fast and depends on nothing else.

A worker is a class whose handlers are methods decorated with ``@Command.responder``::

    from juicectl.child import JuiceChild, run
    from juicectl.juice import Command, String

    class Echo(Command):
        arguments = [("value", String())]
        response = [("value", String())]

    class Worker(JuiceChild):
        @Echo.responder
        def echo(self, value: str) -> dict[str, str]:
            return {"value": value}

    if __name__ == "__main__":
        run(Worker)

or, with stdio protected before the worker's module is even imported::

    python -m juicectl.child my_package.my_module:Worker [--concurrency N]

See ``docs/workers.md``.
"""

from __future__ import annotations

from juicectl.child._loader import load_worker
from juicectl.child._main import main
from juicectl.child._runtime import ConnectionLost, JuiceChild, run, serve
from juicectl.child._stdio import (
    ProtocolStreams,
    protect_stdio,
    route_logging_to_stderr,
    route_structlog_to_stderr,
)

__all__ = [
    "ConnectionLost",
    "JuiceChild",
    "ProtocolStreams",
    "load_worker",
    "main",
    "protect_stdio",
    "route_logging_to_stderr",
    "route_structlog_to_stderr",
    "run",
    "serve",
]
