"""Writing to a pipe: every byte, whatever the pipe takes at once, and a write end that is
never closed under a write.

``write_all`` is the one write loop of the package: the child runtime writes its answers with
it, and the parent writes requests with it through a ``PipeTransport``. On a full pipe it waits
for room with the function it is given, so that the parent can read the child's output while
it waits (see ``juicectl._reading``): a writer that only slept there could wait for ever on a
child that is itself blocked writing its answers.

Only the standard library is used here: the child runtime imports it.
"""

from __future__ import annotations

import errno
import os
import select
import threading
from collections.abc import Callable
from typing import Protocol

from juicectl._main_thread import poll_slice

__all__ = [
    "PipeTransport",
    "Transport",
    "WouldWait",
    "refuse_to_wait",
    "wait_writable",
    "write_all",
]

WaitForRoom = Callable[[int], None]
"""Called with a pipe's file descriptor when it is full; returns once it may have room."""


def wait_writable(fd: int, timeout: float | None = None) -> None:
    """Sleep until ``fd`` has room, or is broken (the next write then says how), or for
    ``timeout`` milliseconds (None: no limit, but ``MAIN_THREAD_SLICE`` on the main thread:
    see ``juicectl._main_thread``)."""
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    # On the main thread, a slice: its caller waits again.
    poller.poll(poll_slice() if timeout is None else timeout)


class WouldWait(Exception):
    """Raised by a ``wait_for_room`` that will not wait (``refuse_to_wait``): the pipe is
    full, and ``rest`` holds the bytes of the write not written yet, for someone else to
    write."""

    rest: bytes = b""


def refuse_to_wait(fd: int) -> None:
    """A ``wait_for_room`` for a caller that must not block (an event loop's thread)."""
    raise WouldWait


def write_all(
    fd: int, data: bytes | memoryview, wait_for_room: WaitForRoom = wait_writable
) -> None:
    """Write every byte of ``data`` to ``fd``.

    A blocking ``fd`` takes it all in one ``os.write`` almost always. A non-blocking one that
    is full (or takes only part) makes this call ``wait_for_room(fd)`` before each further
    write. Raises ``OSError`` if the pipe is broken (``BrokenPipeError``: nobody reads it), and
    ``WouldWait`` (with the bytes not written) from a ``wait_for_room`` that will not wait.
    """
    try:
        written = os.write(fd, data)  # all of it, almost always: a pipe takes 64 KiB
    except BlockingIOError:
        written = 0
    if written == len(data):
        return
    view = memoryview(data)[written:]
    while view:
        try:
            wait_for_room(fd)
        except WouldWait as refused:
            refused.rest = bytes(view)
            raise
        try:
            written = os.write(fd, view)
        except BlockingIOError:
            continue  # woken, and still full: wait again
        view = view[written:]


class Closable(Protocol):
    """A file object: what ``Popen.stdin`` is."""

    def fileno(self) -> int: ...

    def close(self) -> None: ...


class Transport(Protocol):
    """Where a ``Connection`` writes: the child's input.

    ``write(data, wait_for_room)`` writes every byte or raises ``OSError``; when the pipe is
    full it calls ``wait_for_room(fd)`` (the connection reads the child's output meanwhile).
    ``close()`` ends the child's input; it may be called from any thread, at any time.
    """

    def write(self, data: bytes, wait_for_room: WaitForRoom) -> None: ...

    def close(self) -> None: ...


class PipeTransport:
    """The write end of a pipe into a child, as a ``Transport``. Thread-safe.

    The descriptor is made non-blocking, so a writer that meets a full pipe is never stuck in
    ``os.write``: it waits in ``wait_for_room``, which the connection makes read the child's
    output. ``close()`` never closes the descriptor under a write in progress: its number
    could be reused by the next ``open()``, and the rest of that write would land in whatever
    file got it; the last writer closes it instead.

    Args:
        pipe: a file descriptor (closed with ``os.close``) or a file object such as
            ``Popen.stdin`` (closed with its ``close()``, so that it never closes the number
            again later).
    """

    def __init__(self, pipe: int | Closable) -> None:
        self._pipe = pipe
        fd = pipe if isinstance(pipe, int) else pipe.fileno()
        os.set_blocking(fd, False)
        self._lock = threading.Lock()
        self._fd: int | None = fd
        self._writers = 0  # writes in progress on _fd (under _lock)
        self._close_deferred = False

    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called (the descriptor may still serve a write)."""
        return self._fd is None

    def has_room(self) -> bool:
        """Whether a write of at most ``select.PIPE_BUF`` bytes would go in at once: the pipe
        is open, its reader is there, and it is not full."""
        with self._lock:
            fd = self._fd
            if fd is None:
                return False
            poller = select.poll()
            poller.register(fd, select.POLLOUT)
            return any(events == select.POLLOUT for _, events in poller.poll(0))

    def write(self, data: bytes, wait_for_room: WaitForRoom = wait_writable) -> None:
        """Write every byte of ``data`` (see ``write_all``). Raises ``BrokenPipeError`` once
        closed, or if the child closed its end."""
        with self._lock:
            fd = self._fd
            if fd is None:
                raise BrokenPipeError(errno.EPIPE, "the child's input is closed")
            self._writers += 1
        try:
            try:
                written = os.write(fd, data)  # all of it, almost always (write_all, inlined)
            except BlockingIOError:
                written = 0
            if written != len(data):
                write_all(fd, memoryview(data)[written:], wait_for_room)
        finally:
            with self._lock:
                self._writers -= 1
                close = self._writers == 0 and self._close_deferred
            if close:
                self._close_pipe()

    def close(self) -> None:
        """End the child's input (now, or once the write in progress ends). Idempotent."""
        with self._lock:
            if self._fd is None:
                return
            self._fd = None
            if self._writers:
                self._close_deferred = True
                return
        self._close_pipe()

    def _close_pipe(self) -> None:
        pipe = self._pipe
        try:
            if isinstance(pipe, int):
                os.close(pipe)
            else:
                pipe.close()
        except OSError:
            pass  # a close that fails has still released the descriptor
