"""The close, at interpreter exit, of every pool and controller still open: all at once.

Each ``ProcessPool`` and ``ProcessController`` handle enters itself here as it is made and
leaves as its ``close()`` begins. At exit one handler closes what is left in two waves: first
every pool and every controller of the application's own; then any pool's worker still open
(a pool closes its own workers as it stops, and a worker closed apart from its pool would be
replaced, so they wait for the second wave, which finds them closed unless their pool could
not close them). Within a wave it *begins* each close (the handle tells its actor to stop)
before it waits for any, so busy children stop in parallel: an exit takes one stop bound, not
one per child.

The references are strong: a handle the application dropped still has its actors and its
child, which this close must stop as it stops the others.

A handle leaves only once its close has *ended*: one interrupted (Ctrl-C while ``close()``
waits) is still closed here at exit, and waited for, so that its child gets the whole stop.
A process made by ``os.fork()`` starts with nothing here: the handles, their actors' threads
and their children are its parent's.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
from collections.abc import Callable
from enum import IntEnum
from typing import Any, TypeVar

import pykka

from juicectl._log import get_logger
from juicectl.messages import _HurryStop

__all__ = ["Wave", "enter", "finish_close", "leave"]

log = get_logger(__name__)

_Result = TypeVar("_Result")

#: What a handle's close hands back once it has begun: the wait for its end.
Finish = Callable[[], object]
#: A handle's close, begun: the wait for its end, or None if there is nothing to wait for.
BeginClose = Callable[[], Finish | None]


class Wave(IntEnum):
    """The order of the exit-time close."""

    OWNERS = 0
    """Pools, and the controllers the application started."""
    OWNED = 1
    """The workers' controllers of pools."""


# Guards _open; held only to add, remove or copy.
_lock = threading.Lock()
_open: dict[Wave, dict[object, BeginClose]] = {wave: {} for wave in Wave}


def _forget_in_child() -> None:
    # After os.fork(), in the child: only the forking thread exists, so the lock may be held
    # by a thread that is not there, and every handle is the parent's.
    global _lock
    _lock = threading.Lock()
    for handles in _open.values():
        handles.clear()


os.register_at_fork(after_in_child=_forget_in_child)


def enter(wave: Wave, handle: object, begin_close: BeginClose) -> None:
    """Have ``handle`` closed at exit, in ``wave``, by ``begin_close`` (then its result)."""
    with _lock:
        _open[wave][handle] = begin_close


def leave(handle: object) -> None:
    """``handle``'s close has ended: the exit-time close leaves it alone."""
    with _lock:
        for handles in _open.values():
            handles.pop(handle, None)


def finish_close(
    handle: object, wait: Callable[[], _Result], actor: pykka.ActorRef[Any]
) -> _Result:
    """``handle``'s close, begun: ``wait()`` for its end, then leave the exit-time close. If
    Ctrl-C interrupts the wait, whoever pressed it will not wait for the polite steps: its
    ``actor`` is told to hurry the stop under way (SIGTERM now; a pool passes it to each
    worker), and the interrupt goes on, the handle still here for the exit (or its next
    close) to wait for the rest: kill_timeout, then SIGKILL."""
    try:
        result = wait()
    except KeyboardInterrupt:
        with contextlib.suppress(pykka.ActorDeadError):
            actor.tell(_HurryStop())
        raise
    leave(handle)
    return result


@atexit.register
def _close_all_at_exit() -> None:
    """Interpreter exit: stop every child this process still supervises (no orphans)."""
    for wave in Wave:
        with _lock:
            handles = list(_open[wave].items())
        finishing: list[tuple[object, Finish]] = []
        for handle, begin_close in handles:
            try:
                finish = begin_close()
            except Exception:
                log.exception("close_at_exit_failed", handle=repr(handle))
                continue
            if finish is not None:
                finishing.append((handle, finish))
        for handle, finish in finishing:
            try:
                finish()
            except Exception:
                log.exception("close_at_exit_failed", handle=repr(handle))
