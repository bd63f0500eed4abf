"""Errors of the Juice codec and of remote peers.

``JuicectlError`` is the one base class of every error juicectl raises; it lives here, at the
bottom of the dependency graph, because the codec imports nothing else of ours.
"""

from __future__ import annotations


class JuicectlError(Exception):
    """Base class of every error raised by juicectl."""


class ProtocolError(JuicectlError):
    """The byte stream is not valid Juice, or breaks a configured limit.

    Once a parser has raised it, the stream cannot be resynchronised: the connection must end.
    """


class MalformedBox(ProtocolError):
    """A box is not well formed (a line without ``": "``, a bad ``-Length``, bad encoding...)."""


class TruncatedBox(ProtocolError):
    """The stream ended in the middle of a box."""


class LimitExceeded(ProtocolError):
    """A header line, a body or the number of headers went past the limits.

    Raised by the parser for what a peer sent (the stream is broken: the connection ends), and
    by whoever would send a request or an answer that breaks the peer's limits, before a byte
    of it is written: then only that one message fails, and the connection goes on.
    """


class SerializationError(JuicectlError, ValueError):
    """A box holds a key or value that cannot be written without corrupting the stream."""


class ArgumentError(JuicectlError, ValueError):
    """Arguments or response fields do not match what the command declares.

    Raised before anything is written: wrong types, missing required arguments, unknown
    keyword arguments, values that cannot be represented on the wire.
    """


class RemoteJuiceError(JuicectlError):
    """The peer answered a request with an error box.

    Attributes:
        code: the wire error code (``-Error-Code``), for example ``"UNHANDLED"``.
        description: the peer's description (``-Error-Description``).
    """

    def __init__(self, code: str, description: str) -> None:
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description


class UnhandledRemoteJuiceError(RemoteJuiceError):
    """The peer did not know the command, or its handler failed in an undeclared way.

    The reference peer closes the connection after sending this error.
    """

    def __init__(self, description: str = "Unhandled Remote System Exception ") -> None:
        super().__init__("UNHANDLED", description)
