"""The future of a worker's own request to its parent (``JuiceChild.call()``).

Imported by the runtime on a worker's first call, not at its start: ``concurrent.futures``
imports ``logging``, which a worker that never calls its parent need not pay for.
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any, Protocol

__all__ = ["CallFuture"]


class _Pump(Protocol):
    """What a call's future asks of the session it belongs to."""

    def is_reader_thread(self) -> bool: ...

    def pump_until(self, future: CallFuture, timeout: float | None) -> None: ...


class CallFuture(Future[dict[str, Any]]):
    """A call's future that, waited on from the reading thread, reads input until it is done
    (nobody else would read the answer it waits for)."""

    def __init__(self, session: _Pump) -> None:
        super().__init__()
        self._session = session

    def result(self, timeout: float | None = None) -> dict[str, Any]:
        if not self.done() and self._session.is_reader_thread():
            self._session.pump_until(self, timeout)
            if not self.done():
                timeout = 0
        return super().result(timeout)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        if not self.done() and self._session.is_reader_thread():
            self._session.pump_until(self, timeout)
            if not self.done():
                timeout = 0
        return super().exception(timeout)
