"""Keep the child's stdin and stdout for the protocol, and everything else off them.

Why this works at the file-descriptor level rather than by swapping ``sys.stdout`` alone:
``sys.stdout`` is only one of many ways to reach fd 1. C extensions, ``os.write(1, ...)``,
subprocesses that inherit fd 1, and loggers that captured the ``sys.stdout`` object before we
replaced it all write to the descriptor itself. So the protocol moves to private duplicates of
fds 0 and 1, fd 1 is pointed at stderr and fd 0 at ``/dev/null``: whatever writes to "stdout"
from then on lands on stderr, where the parent only logs it, and whatever reads "stdin" (a
subprocess, a stray ``input()``) gets end of file instead of eating the parent's requests.
The duplicates are not inheritable, so a subprocess of the worker never holds the protocol
pipes open: the parent still sees end of file when the worker exits.

Only the standard library is used here: a worker must start without pykka or structlog, and
``structlog`` is touched only if the worker itself imported it.
"""

from __future__ import annotations

import contextlib
import os
import sys

from juicectl.juice._frozen import FrozenRecord

__all__ = [
    "ProtocolStreams",
    "protect_stdio",
    "route_logging_to_stderr",
    "route_structlog_to_stderr",
]


class ProtocolStreams(FrozenRecord):
    """The private file descriptors that carry the protocol once stdio is protected."""

    __match_args__ = ("read_fd", "write_fd")
    __slots__ = __match_args__

    read_fd: int
    """Where the parent's boxes arrive (a duplicate of the original fd 0)."""
    write_fd: int
    """Where boxes for the parent go (a duplicate of the original fd 1)."""

    def __init__(self, read_fd: int, write_fd: int) -> None:
        object.__setattr__(self, "read_fd", read_fd)
        object.__setattr__(self, "write_fd", write_fd)


_protected: ProtocolStreams | None = None


def protect_stdio() -> ProtocolStreams:
    """Take fds 0 and 1 for the protocol and point everything else at stderr.

    After this call fd 1, ``sys.stdout`` and ``print()`` write to stderr, fd 0 and ``sys.stdin``
    read ``/dev/null``, and the returned descriptors are the only way to the parent. Calling it
    again returns the same descriptors: the first call wins.

    ``python -m juicectl.child`` and :func:`juicectl.child.run` call it for you; call it
    yourself at the very top of a worker script that imports noisy modules before ``run()``.
    """
    global _protected
    if _protected is not None:
        return _protected
    # Anything already buffered in sys.stdout was meant for the old fd 1; flushing it there now
    # is all we can do (nothing is buffered before user code runs under ``-m juicectl.child``).
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            if stream is not None:
                stream.flush()
    read_fd = os.dup(0)
    write_fd = os.dup(1)
    try:
        os.dup2(2, 1)
    except OSError:
        # No stderr at all: stray output then goes nowhere rather than into the protocol.
        _dup_devnull_onto(1, os.O_WRONLY)
    _dup_devnull_onto(0, os.O_RDONLY)
    if sys.stderr is not None:
        sys.stdout = sys.stderr
    _protected = ProtocolStreams(read_fd, write_fd)
    return _protected


def _dup_devnull_onto(fd: int, flags: int) -> None:
    devnull = os.open(os.devnull, flags)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def route_logging_to_stderr(*, only_if_imported: bool = False) -> bool:
    """Give the ``logging`` root logger a stderr handler, unless logging is configured already;
    return whether it was called for.

    ``logging.basicConfig`` does nothing when the root logger has a handler, so a worker that
    configured logging itself keeps its configuration. ``only_if_imported``: do nothing (and
    return False) while nothing has imported ``logging``: the runtime imports it only once it
    has something to log, a worker that never logs does not pay for it at its start, and
    until then a record of a worker that imports it later still reaches stderr (``logging``'s
    last-resort handler).
    """
    if only_if_imported and "logging" not in sys.modules:
        return False
    import logging

    logging.basicConfig(stream=sys.stderr)
    return True


def route_structlog_to_stderr() -> bool:
    """Point an imported but unconfigured structlog at stderr; return whether it was changed.

    structlog is never imported here: a worker that does not use it does not pay for it. A
    worker that configured structlog itself keeps its configuration.
    """
    structlog = sys.modules.get("structlog")
    if structlog is None or bool(structlog.is_configured()):
        return False
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=sys.stderr))
    return True
