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
from collections.abc import Callable
from typing import Any

__all__ = ["start_daemon"]


def start_daemon(target: Callable[..., Any], name: str, *args: Any) -> bool:
    """Run ``target(*args)`` on a new daemon thread called ``name``; False if Python refused
    to start one (nothing runs then: the caller does it another way)."""
    thread = threading.Thread(target=target, name=name, args=args, daemon=True)
    try:
        thread.start()
    except RuntimeError:
        return False
    return True
