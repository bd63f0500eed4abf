"""Every exception juicectl raises, under the one base class ``JuicectlError``.

Transient failures (the child is not there right now; try again later) are
``ProcessUnavailable`` or one of its subclasses. ``ControllerClosed`` is not one of them: a
closed controller never starts a child again, so retrying cannot help.
"""

from __future__ import annotations

from collections.abc import Sequence

from juicectl.juice import (
    ArgumentError,
    JuicectlError,
    LimitExceeded,
    MalformedBox,
    ProtocolError,
    RemoteJuiceError,
    SerializationError,
    TruncatedBox,
    UnhandledRemoteJuiceError,
)

__all__ = [
    "ArgumentError",
    "ControllerClosed",
    "JuicectlError",
    "LimitExceeded",
    "MalformedBox",
    "ProcessLaunchError",
    "ProcessUnavailable",
    "ProtocolError",
    "RemoteJuiceError",
    "RequestTimeout",
    "RequestWithdrawn",
    "SerializationError",
    "TooManyRequests",
    "TruncatedBox",
    "UnhandledRemoteJuiceError",
]


class ProcessUnavailable(JuicectlError):
    """The child process is not available right now: a transient failure, retry later.

    Raised by ``get_process()`` while the controller is stopping, by requests outstanding on a
    connection that was lost, and to waiters when a start fails.

    Attributes:
        reason: why, in words (exit status or signal, launch error, ...).
        stderr_tail: the last lines the child wrote to stderr, when known.
    """

    def __init__(self, reason: str, *, stderr_tail: tuple[str, ...] = ()) -> None:
        message = reason
        if stderr_tail:
            message += "\nlast lines on the child's stderr:\n  " + "\n  ".join(stderr_tail)
        super().__init__(message)
        self.reason = reason
        self.stderr_tail = stderr_tail


class ProcessLaunchError(ProcessUnavailable):
    """The child could not be launched at all (no such executable, permission denied, ...).

    Attributes:
        argv: the command that could not be launched.
        os_error: the underlying ``OSError``.
    """

    def __init__(self, argv: tuple[str, ...], os_error: OSError) -> None:
        super().__init__(
            f"cannot launch {command_text(argv)}: {os_error.strerror or os_error}"
        )
        self.argv = argv
        self.os_error = os_error


#: The most characters of a command line that a message or a log line shows.
COMMAND_TEXT_LIMIT = 1000


def command_text(argv: Sequence[str]) -> str:
    """``argv`` as a message shows it: its ``repr`` as a list, cut to
    ``COMMAND_TEXT_LIMIT`` characters with how much was left out (an argument list too long
    to run may be megabytes)."""
    text = repr(list(argv))
    if len(text) <= COMMAND_TEXT_LIMIT:
        return text
    return (
        f"{text[:COMMAND_TEXT_LIMIT]}... ({len(argv):,} arguments, {len(text):,} characters "
        "in all)"
    )


class ControllerClosed(JuicectlError):
    """The controller was closed (or its actor stopped); it will not start a child again.

    A permanent failure, deliberately not a ``ProcessUnavailable``: a caller that retries
    ``ProcessUnavailable`` stops at once instead of spinning on a controller that is gone.
    """


class RequestTimeout(JuicectlError):
    """A request got no answer within its timeout. A late answer is dropped (and logged)."""


class RequestWithdrawn(JuicectlError):
    """A request taken back before it was sent (``PoolFuture.withdraw()``: an ``asyncio``
    call cancelled while the pool held its request). Nothing reached any child."""


class TooManyRequests(JuicectlError):
    """The connection already has ``max_in_flight`` requests outstanding and the caller
    chose not to wait (or waited past its timeout) for a free slot."""
