"""Waits that let the main thread's signal handlers run: Ctrl-C during a ``get()`` raises.

CPython runs Python signal handlers (the one that raises ``KeyboardInterrupt`` on Ctrl-C among
them) on the main thread only, between bytecodes. A wait blocked in C (a lock, ``poll()``)
runs one at once only if the signal interrupts that very system call. A signal that lands
just before the call begins, or on another thread, is handled when the wait ends: after the
answer, the timeout, or never. On a loaded machine that happens often enough to see: a host
pressing Ctrl-C while its main thread waits on us must not wait on.

So a wait of this package that may run on the main thread blocks in C for at most
``MAIN_THREAD_SLICE`` at a time there, comes back to Python (which runs any pending handler)
and waits again. Other threads wait in one piece.
"""

from __future__ import annotations

import threading
import time
from _thread import LockType, get_ident

MAIN_THREAD_SLICE = 0.05
"""The longest the main thread blocks in C at once while it waits (seconds)."""

_MAIN_IDENT = threading.main_thread().ident


def on_main_thread() -> bool:
    """Whether the calling thread is the main thread (where signal handlers run)."""
    return get_ident() == _MAIN_IDENT


def acquire(lock: LockType, timeout: float | None) -> bool:
    """``lock.acquire(True, timeout)`` (None: no limit; ``timeout`` > 0), in slices on the main
    thread. Returns whether the lock was acquired."""
    if (timeout is not None and timeout <= MAIN_THREAD_SLICE) or get_ident() != _MAIN_IDENT:
        return lock.acquire() if timeout is None else lock.acquire(True, timeout)
    deadline = None if timeout is None else time.monotonic() + timeout
    while not lock.acquire(True, MAIN_THREAD_SLICE):
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= MAIN_THREAD_SLICE:
                return lock.acquire(True, left) if left > 0 else lock.acquire(False)
    return True


def one_slice(timeout: float | None) -> float | None:
    """``timeout`` (seconds; None: no limit), cut to ``MAIN_THREAD_SLICE`` on the main thread:
    for a wait that may end early because its caller waits again."""
    if (timeout is None or timeout > MAIN_THREAD_SLICE) and get_ident() == _MAIN_IDENT:
        return MAIN_THREAD_SLICE
    return timeout


def poll_slice() -> float | None:
    """Milliseconds for ``poll()`` where it would wait with no limit: none off the main
    thread, one slice on it (its caller polls again)."""
    return MAIN_THREAD_SLICE * 1000.0 if get_ident() == _MAIN_IDENT else None
