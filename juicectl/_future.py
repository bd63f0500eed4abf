"""A pykka future that can also notify callbacks, and be settled at most once without races.

pykka's ``ThreadingFuture`` raises ``queue.Full`` when set twice; here an answer and a timeout
may race to settle the same request, so ``try_set`` / ``try_set_exception`` report who won.
Callbacks let the reader thread, ``juicectl.aio`` and the actors react to an outcome without
a thread blocked in ``get()``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

import pykka

T = TypeVar("T")


class ReplyFuture(pykka.ThreadingFuture[T]):
    """A ``pykka.ThreadingFuture`` with ``done()``, ``add_done_callback()`` and ``try_set*``.

    Callbacks run on the thread that settles the future (or at once, on the caller's thread,
    if it is already settled); they must be quick and must not raise.
    """

    def __init__(self) -> None:
        super().__init__()
        self._settle_lock = threading.Lock()
        self._settled = False
        self._callbacks: list[Callable[[ReplyFuture[T]], None]] = []

    def done(self) -> bool:
        """Whether the future holds a value or an exception."""
        return self._settled

    def try_set(self, value: Any = None) -> bool:
        """Set the value unless the future is already settled. Returns whether it was set."""
        with self._settle_lock:
            if self._settled:
                return False
            self._settled = True
            super().set(value)
            callbacks, self._callbacks = self._callbacks, []
        self._run(callbacks)
        return True

    def try_set_exception(self, error: BaseException) -> bool:
        """Fail the future with ``error`` unless already settled. Returns whether it was set."""
        with self._settle_lock:
            if self._settled:
                return False
            self._settled = True
            super().set_exception((type(error), error, error.__traceback__))
            callbacks, self._callbacks = self._callbacks, []
        self._run(callbacks)
        return True

    def set(self, value: Any | None = None) -> None:
        """Set the value; raises ``queue.Full`` if already settled (pykka's contract)."""
        if not self.try_set(value):
            import queue

            raise queue.Full

    def set_exception(self, exc_info: Any = None) -> None:
        """Fail the future (pykka's signature: an ``exc_info`` triple, or the current one)."""
        import queue
        import sys

        if exc_info is None:
            exc_info = sys.exc_info()
        if not self.try_set_exception(exc_info[1].with_traceback(exc_info[2])):
            raise queue.Full

    def add_done_callback(self, callback: Callable[[ReplyFuture[T]], None]) -> None:
        """Call ``callback(future)`` once settled (at once if it already is)."""
        with self._settle_lock:
            if not self._settled:
                self._callbacks.append(callback)
                return
        callback(self)

    def exception(self) -> BaseException | None:
        """The exception a settled future holds, or None (also None if not yet settled)."""
        if not self._settled:
            return None
        try:
            self.get(timeout=0)
        except BaseException as error:
            return error
        return None

    def _run(self, callbacks: list[Callable[[ReplyFuture[T]], None]]) -> None:
        for callback in callbacks:
            callback(self)
