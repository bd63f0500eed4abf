"""A pykka future that can also notify callbacks, and be settled at most once without races.

pykka's ``ThreadingFuture`` raises ``queue.Full`` when set twice; here an answer and a timeout
may race to settle the same request, so ``try_set`` / ``try_set_exception`` report who won.
Callbacks let the connection, ``juicectl.aio`` and the actors react to an outcome without
a thread blocked in ``get()``.

``ReplyFuture`` is a ``pykka.Future`` (it calls the base ``__init__``), not a
``ThreadingFuture``: a future is made for every request, and building and waiting on a
``threading.Condition`` (pure Python) cost more than the rest of the caller's side of a
request. A plain lock, held from creation until the future is settled, is the cheapest
one-shot event there is: a waiter acquires it (blocking in C) and releases it at once for the
next waiter. The behaviour is pykka's: ``get(timeout=...)`` raises ``pykka.Timeout``, a
second ``set()`` raises ``queue.Full``, get hooks (``map``, ``filter``, ``join``...) work.

What of pykka this module relies on, and nothing else in the package does:

* ``pykka.Future.__init__``, ``set_get_hook`` and ``get`` (public): a get hook is stored and
  run by the base class, whose ``get()`` calls it once and remembers its result.
* ``pykka.Future._get_hook`` (private): read only by :func:`has_get_hook`, for pykka futures
  that are not ours, to tell one that computes its value in ``get()``.

``tests/test_reply_future.py`` checks each of these against the installed pykka.
"""

from __future__ import annotations

import queue
import sys
from _thread import allocate_lock
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

import pykka

from juicectl._log import get_logger
from juicectl._main_thread import acquire

T = TypeVar("T")
_log = get_logger(__name__)
_future_init = pykka.Future.__init__


class ReplyFuture(pykka.Future[T]):
    """A ``pykka.Future`` with ``done()``, ``add_done_callback()`` and ``try_set*``.

    Callbacks run on the thread that settles the future (or at once, on the caller's thread,
    if it is already settled); they must be quick. One that raises is logged
    (``future_callback_failed``) and the others still run.
    """

    # The state of an unsettled future, as class-level defaults: an instance gets its own
    # only as it changes, and __init__ stays as short as it can be (see the module docstring).
    _settled = False
    _hooked = False  # a get hook was set: get() computes the value, nothing settles it
    _value: Any = None
    _error: BaseException | None = None
    _traceback: TracebackType | None = None
    _callbacks: list[Callable[[ReplyFuture[T]], None]] | None = None

    def __init__(self) -> None:
        _future_init(self)  # pykka.Future.__init__: its record of a get hook (none yet)
        self._settle_lock = allocate_lock()
        self._done = done = allocate_lock()
        done.acquire()  # released once settled

    def done(self) -> bool:
        """Whether the future holds a value or an exception."""
        return self._settled

    def has_get_hook(self) -> bool:
        """Whether ``get()`` computes the value (a future made by ``map``, ``filter``,
        ``join``...): such a future is never settled, and its callbacks never run."""
        return self._hooked

    def get(self, *, timeout: float | None = None) -> Any:
        """The value (or raise the exception); wait up to ``timeout`` seconds (None: forever).

        Raises:
            pykka.Timeout: not settled within ``timeout``.
            TypeError, ValueError: ``timeout`` is not None or a finite number >= 0.
        """
        if timeout is not None:
            check_wait(timeout)
        if not self._settled:
            if self._hooked:
                return pykka.Future.get(self, timeout=timeout)  # runs the hook, once
            done = self._done
            if timeout is None or timeout > 0:
                acquired = acquire(done, timeout)  # in slices on the main thread: Ctrl-C raises
            else:
                acquired = done.acquire(False)
            if acquired:
                done.release()  # for the next waiter
            elif not self._settled:
                raise pykka.Timeout(f"{timeout} seconds")
        error = self._error
        if error is not None:
            # Raise with the traceback it was set with, not one grown by every get().
            raise error.with_traceback(self._traceback)
        return self._value

    def try_set(self, value: Any = None) -> bool:
        """Set the value unless the future is already settled. Returns whether it was set."""
        with self._settle_lock:
            if self._settled:
                return False
            if self._hooked:
                raise queue.Full  # pykka's rule: a future with a get hook is never set
            self._value = value
            self._settled = True
            callbacks, self._callbacks = self._callbacks, None
        self._done.release()
        if callbacks:
            self._run(callbacks)
        return True

    def try_set_exception(self, error: BaseException) -> bool:
        """Fail the future with ``error`` unless already settled. Returns whether it was set."""
        with self._settle_lock:
            if self._settled:
                return False
            if self._hooked:
                raise queue.Full
            self._error = error
            self._traceback = error.__traceback__
            self._settled = True
            callbacks, self._callbacks = self._callbacks, None
        self._done.release()
        if callbacks:
            self._run(callbacks)
        return True

    def set(self, value: Any | None = None) -> None:
        """Set the value; raises ``queue.Full`` if already settled (pykka's contract)."""
        if not self.try_set(value):
            raise queue.Full

    def set_exception(self, exc_info: Any = None) -> None:
        """Fail the future (pykka's signature: an ``exc_info`` triple, or the current one)."""
        if exc_info is None:
            exc_info = sys.exc_info()
        if not self.try_set_exception(exc_info[1].with_traceback(exc_info[2])):
            raise queue.Full

    def set_get_hook(self, func: Any) -> None:
        """pykka's get hook (used by ``map``, ``filter``, ``join``...): ``get()`` calls it."""
        with self._settle_lock:
            if self._settled:
                raise queue.Full
            self._hooked = True
            pykka.Future.set_get_hook(self, func)

    def add_done_callback(self, callback: Callable[[ReplyFuture[T]], None]) -> None:
        """Call ``callback(future)`` once settled (at once if it already is)."""
        with self._settle_lock:
            if not self._settled:
                if self._callbacks is None:
                    self._callbacks = []
                self._callbacks.append(callback)
                return
        callback(self)

    def exception(self) -> BaseException | None:
        """The exception a settled future holds, or None (also None if not yet settled)."""
        if not self._settled:
            return None
        return self._error

    def _run(self, callbacks: list[Callable[[ReplyFuture[T]], None]]) -> None:
        for callback in callbacks:
            try:
                callback(self)
            except Exception:
                # The thread settling this future is reading answers for others (the
                # connection's reader, or a caller reading its own): a callback that raises
                # must not stop it, nor lose the answers after this one.
                _log.exception("future_callback_failed", callback=repr(callback))


def check_wait(timeout: object) -> None:
    """A ``get(timeout=...)`` other than None: a finite number of seconds, 0 or more (0: do
    not wait); else ``TypeError`` or ``ValueError`` saying so."""
    kind = type(timeout)
    if kind is float:
        if 0.0 <= timeout < _INFINITY:  # type: ignore[operator]  # a float, checked above
            return
    elif kind is int:
        if timeout >= 0:  # type: ignore[operator]  # an int, checked above
            return
    elif isinstance(timeout, int | float) and not isinstance(timeout, bool):
        check_wait(float(timeout))  # a subclass of int or float
        return
    else:
        raise TypeError(f"timeout must be a number of seconds or None, not {timeout!r}")
    raise ValueError(f"timeout must be a finite number of seconds, 0 or more, not {timeout!r}")


_INFINITY = float("inf")


def has_get_hook(future: pykka.Future[Any]) -> bool:
    """Whether ``future`` computes its value in ``get()`` (made by ``map``, ``filter``,
    ``join``...), and so is never settled itself: a ``ReplyFuture`` says so, and for any other
    pykka future this reads pykka's own record of the hook (``Future._get_hook``)."""
    if isinstance(future, ReplyFuture):
        return future.has_get_hook()
    return getattr(future, "_get_hook", None) is not None
