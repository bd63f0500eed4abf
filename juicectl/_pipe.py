"""Writing to a pipe: every byte, whatever the pipe takes at once.

``write_all`` is the one write loop of the package: the child runtime writes its answers with
it, the process actor the child's requests, and the in-memory pairs of ``juicectl.testing``
theirs. On a full non-blocking pipe it waits for room with the function it is given.

Only the standard library is used here: the child runtime imports it.
"""

from __future__ import annotations

import os
import select
from collections.abc import Callable

__all__ = ["wait_writable", "write_all"]

WaitForRoom = Callable[[int], None]
"""Called with a pipe's file descriptor when it is full; returns once it may have room."""


def wait_writable(fd: int) -> None:
    """Sleep until ``fd`` has room, or is broken (the next write then says how)."""
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    poller.poll()


def write_all(fd: int, data: bytes, wait_for_room: WaitForRoom = wait_writable) -> None:
    """Write every byte of ``data`` to ``fd``.

    A blocking ``fd`` takes it all in one ``os.write`` almost always. A non-blocking one that
    is full (or takes only part) makes this call ``wait_for_room(fd)`` before each further
    write. Raises ``OSError`` if the pipe is broken (``BrokenPipeError``: nobody reads it).
    """
    try:
        written = os.write(fd, data)  # all of it, almost always: a pipe takes 64 KiB
    except BlockingIOError:
        written = 0
    if written == len(data):
        return
    view = memoryview(data)[written:]
    while view:
        wait_for_room(fd)
        try:
            written = os.write(fd, view)
        except BlockingIOError:
            continue  # woken, and still full: wait again
        view = view[written:]
