"""The child's two byte streams: reading requests in chunks, writing answers whole.

A stream is a file descriptor (the usual case: the protected stdin and stdout) or a binary
file object (tests, in-memory pairs). Only the standard library is used.
"""

from __future__ import annotations

import contextlib
import functools
import os
import select
from collections.abc import Callable
from typing import IO, Protocol

from juicectl._busy_poll import BusyPoll
from juicectl._pipe import write_all

__all__ = ["CHUNK", "InputLike", "InputStream", "OutputLike", "OutputStream"]

#: How much to read at once: a Linux pipe holds 64 KiB, so one read empties a full pipe.
CHUNK = 65536


class BinaryReader(Protocol):
    """What a readable binary stream offers."""


    def read(self, size: int = ..., /) -> bytes: ...


class BinaryWriter(Protocol):
    """What a writable binary stream offers."""


    def write(self, data: bytes, /) -> int | None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


InputLike = int | BinaryReader | IO[bytes]
"""Where requests come from: a file descriptor, or a binary stream."""
OutputLike = int | BinaryWriter | IO[bytes]
"""Where answers go: a file descriptor, or a binary stream."""


class InputStream:
    """Reads chunks from a file descriptor or a binary stream, and waits for readability.

    With a ``busy_poll`` budget, a read of a file descriptor may first poll it for that long
    (see ``juicectl._busy_poll``): the worker then sees the next request sooner, on an idle
    machine, than if it slept in ``read()``.
    """

    def __init__(self, source: InputLike, busy_poll: float = 0.0) -> None:
        self.read: Callable[[], bytes]
        self.fd: int | None = None
        if isinstance(source, int):
            self.fd = source
            read_fd = functools.partial(os.read, source, CHUNK)
            self.read = read_fd
            if busy_poll > 0:
                poller = select.poll()
                poller.register(source, select.POLLIN)
                self.read = functools.partial(BusyPoll(busy_poll).read, poller.poll, read_fd)
            return
        read = getattr(source, "read1", None) or source.read
        self.read = lambda: bytes(read(CHUNK) or b"")
        # A stream is waited on through its descriptor only if it buffers nothing itself:
        # data held in a Python-level buffer would not wake select().
        fileno = getattr(source, "fileno", None)
        if fileno is not None and not hasattr(source, "peek"):
            with contextlib.suppress(OSError, ValueError):
                self.fd = int(fileno())

    def wait(self, timeout: float | None, wake_fd: int | None = None) -> bool:
        """Wait until input is readable (True) or ``timeout`` passes / ``wake_fd`` fires."""
        if self.fd is None:
            return True  # cannot wait on it: the read itself blocks
        fds = [self.fd] if wake_fd is None else [self.fd, wake_fd]
        readable, _, _ = select.select(fds, [], [], timeout)
        return self.fd in readable


class OutputStream:
    """Writes whole byte strings to a file descriptor or a binary stream."""

    def __init__(self, target: OutputLike) -> None:
        self._target = target

    def write(self, data: bytes) -> None:
        target = self._target
        if isinstance(target, int):
            write_all(target, data)
        else:
            target.write(data)
            target.flush()

    def close(self) -> None:
        target = self._target
        if isinstance(target, int):
            os.close(target)
        else:
            target.close()
