"""The Juice protocol, sans-IO: boxes, the parser and serializer, commands and argument types.

Nothing in this package reads, writes, starts threads or logs: bytes go in, boxes come out;
boxes go in, bytes come out. Limits are enforced and every failure is a typed error.

Example::

    from juicectl.juice import BoxParser, Command, String, request_bytes

    class Echo(Command):
        arguments = [("value", String())]
        response = [("value", String())]

    data = request_bytes(Echo, "1", Echo.make_arguments({"value": "hi"}))
    [box] = BoxParser().feed(data)
"""

from __future__ import annotations

from juicectl.juice._box import Box, normalize_key, serialize_box, wire_key
from juicectl.juice._commands import (
    Command,
    CommandMatcher,
    Negotiate,
    Shutdown,
    command_key,
    loose_key,
)
from juicectl.juice._errors import (
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
from juicectl.juice._parser import BoxParser, Limits
from juicectl.juice._raw import RawCommand, is_raw, raw_command, raw_fields, text_box
from juicectl.juice._session import (
    LATE_MEMORY,
    LIMIT_EXCEEDED_CODE,
    UNHANDLED_CODE,
    UNHANDLED_DESCRIPTION,
    Answer,
    ErrorAnswer,
    Reply,
    Request,
    RequestTable,
    Responders,
    answer_bytes,
    answer_outcome,
    classify,
    error_bytes,
    parse_received_arguments,
    parse_received_response,
    request_bytes,
)
from juicectl.juice._types import (
    Argument,
    Boolean,
    BoxList,
    Bytes,
    Float,
    Integer,
    ListOf,
    Path,
    String,
    Unicode,
)

__all__ = [
    "LATE_MEMORY",
    "LIMIT_EXCEEDED_CODE",
    "UNHANDLED_CODE",
    "UNHANDLED_DESCRIPTION",
    "Answer",
    "Argument",
    "ArgumentError",
    "Boolean",
    "Box",
    "BoxList",
    "BoxParser",
    "Bytes",
    "Command",
    "CommandMatcher",
    "ErrorAnswer",
    "Float",
    "Integer",
    "JuicectlError",
    "LimitExceeded",
    "Limits",
    "ListOf",
    "MalformedBox",
    "Negotiate",
    "Path",
    "ProtocolError",
    "RawCommand",
    "RemoteJuiceError",
    "Reply",
    "Request",
    "RequestTable",
    "Responders",
    "SerializationError",
    "Shutdown",
    "String",
    "TruncatedBox",
    "UnhandledRemoteJuiceError",
    "Unicode",
    "answer_bytes",
    "answer_outcome",
    "classify",
    "command_key",
    "error_bytes",
    "is_raw",
    "loose_key",
    "normalize_key",
    "parse_received_arguments",
    "parse_received_response",
    "raw_command",
    "raw_fields",
    "request_bytes",
    "serialize_box",
    "text_box",
    "wire_key",
]
