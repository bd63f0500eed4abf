"""The library's helper threads, and what happens when Python will not start one.

Python 3.12 refuses to start a thread from an ``atexit`` handler ("can't create new thread at
interpreter shutdown"; 3.11 and 3.13 allow it), and any Python refuses when the process has
run out of threads. The library closes what it supervises from an ``atexit`` handler, so every
helper thread that handler may need is started through ``start_daemon``, and its caller does
the work another way when it returns False: never an exception that leaves a child running.
The shared timer thread (``juicectl._timer``) is not among them: every launch arms a timer
before anything else, so it runs long before there is a child to stop, and never ends.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

__all__ = ["join_actor_threads", "note_actor_thread", "start_daemon"]

# Each actor's thread by its urn, noted as the actor starts: pykka marks an actor stopped,
# and the futures its on_stop settles are set, before its thread has ended, so a close()
# that must leave no thread behind joins them. Weak: a thread that ended is forgotten.
_actor_threads: weakref.WeakValueDictionary[str, threading.Thread] = (
    weakref.WeakValueDictionary()
)


def start_daemon(target: Callable[..., Any], name: str, *args: Any) -> threading.Thread | None:
    """Run ``target(*args)`` on a new daemon thread called ``name`` and return it; None if
    Python refused to start one (nothing runs then: the caller does it another way)."""
    thread = threading.Thread(target=target, name=name, args=args, daemon=True)
    try:
        thread.start()
    except RuntimeError:
        return None
    return thread


def note_actor_thread(urn: str) -> None:
    """An actor's ``on_start``: remember its thread, for ``join_actor_threads``."""
    _actor_threads[urn] = threading.current_thread()


def join_actor_threads(urns: tuple[str, ...], timeout: float) -> None:
    """Wait, up to ``timeout`` seconds in all, for the threads of these actors to end (an
    actor that noted no thread, or the calling thread itself, is not waited for)."""
    deadline = time.monotonic() + timeout
    for urn in urns:
        thread = _actor_threads.get(urn)
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()))
