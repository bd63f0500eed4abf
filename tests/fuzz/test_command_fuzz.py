"""The command layer under hypothesis: whatever callers and peers throw at it, only typed
errors come out.

* ``make_arguments`` / ``make_response`` with arbitrary keyword names and values: a box or
  ``ArgumentError``, nothing else; and a box that comes out always survives the wire.
* ``parse_arguments`` / ``parse_response`` on arbitrary boxes: values or ``ArgumentError``.
* Well-typed values round-trip through the wire exactly.
* Arbitrary bytes fed to a ``Connection`` with requests outstanding: only ``ProtocolError``
  escapes ``data_received``, and every settled future holds a value or a juicectl error.
* Arbitrary requests to ``Responders.handle``: always a ``Reply``, never an exception.

The parser itself is fuzzed in ``tests/juice/test_properties.py``. The number of examples
comes from ``JUICECTL_FUZZ_EXAMPLES`` (default 200); a long run::

    JUICECTL_FUZZ_EXAMPLES=100000 .venv/bin/python -m pytest tests/fuzz -q
"""

from __future__ import annotations

import math
import os
import pathlib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from juicectl.connection import Connection, ConnectionLoss
from juicectl.exceptions import JuicectlError, ProcessUnavailable
from juicectl.juice import (
    ArgumentError,
    Boolean,
    Box,
    BoxList,
    BoxParser,
    Bytes,
    Command,
    Float,
    Integer,
    ListOf,
    Path,
    ProtocolError,
    Reply,
    Request,
    Responders,
    String,
    Unicode,
    serialize_box,
)

EXAMPLES = int(os.environ.get("JUICECTL_FUZZ_EXAMPLES", "200"))
# A long run takes as long as it takes: lift the suite's per-test timeout for it.
pytestmark = pytest.mark.timeout(0 if EXAMPLES > 1000 else 120)
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

FIELDS = [
    ("text", String()),
    ("uni", Unicode(optional=True)),
    ("n", Integer(optional=True)),
    ("x", Float(optional=True)),
    ("flag", Boolean(optional=True)),
    ("data", Bytes(optional=True)),
    ("where", Path(optional=True)),
    ("numbers", ListOf(Integer(), optional=True)),
    ("words", ListOf(String(), delimiter="|", optional=True)),
    ("rows", BoxList([("k", String()), ("v", Integer(optional=True))], optional=True)),
    ("body", Bytes(optional=True)),
]


class Everything(Command):
    """Every argument type, as arguments and as response."""

    arguments = FIELDS
    response = FIELDS


class Handler:
    @Everything.responder
    def everything(self, **kwargs: Any) -> dict[str, Any]:
        return kwargs


NAMES = [name for name, _ in FIELDS]


class BytesPath:
    """A path-like object whose path is bytes (not sendable as text)."""

    def __fspath__(self) -> bytes:
        return b"/tmp/bytes"


tricky_text = st.sampled_from(
    ["", "\ud800", "a\rb", "a\nb", "a\r\nb", "\r\n", " lead", ", ", "|", "\x00", "é☃"]
)
text = (
    st.text()
    | tricky_text
    | st.text(st.characters(codec="utf-8"))
    | st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1)
)
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from([400, 5000, -5000]).map(lambda e: 10 ** abs(e) * (1 if e > 0 else -1))
    | st.floats()
    | text
    | st.binary()
    | st.builds(bytearray, st.binary())
    | st.builds(pathlib.Path, st.text())
    | st.just(BytesPath())
    | st.just(object())
)
anything = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(st.sampled_from(["k", "v", "K", "x"]) | text, inner, max_size=3)
        | st.sets(st.integers(), max_size=3)
    ),
    max_leaves=8,
)
names = (
    st.sampled_from(NAMES)
    | st.sampled_from(["Text", "TEXT", "te-xt", "_length", "-Command", "val\r\nue", "a: b"])
    | text
)
kwargs = st.dictionaries(names, anything, max_size=6)


def _call(method: Any, argument: Any) -> Any:
    """Call ``method(argument)``: its result or its ``ArgumentError``; any other exception
    fails the test."""
    try:
        return method(argument)
    except ArgumentError as error:
        return error


@SETTINGS
@given(kwargs)
def test_make_arguments_gives_a_box_or_argument_error(values: dict[str, Any]) -> None:
    for make in (Everything.make_arguments, Everything.make_response):
        box = _call(make, values)
        if isinstance(box, ArgumentError):
            continue
        # A box that came out is always writable, and reads back as itself.
        data = serialize_box(box)
        parser = BoxParser()
        [parsed] = parser.feed(data)
        assert parser.feed(b"") == []
        assert parsed == box
        parsed_values = Everything.parse_arguments(parsed)
        assert set(parsed_values) == set(NAMES)


boxes = st.builds(
    lambda fields, body: Box(fields, body=body),
    st.dictionaries(st.sampled_from(NAMES) | text, text, max_size=8),
    st.none() | st.binary(max_size=64),
)


@st.composite
def field_boxes(draw: Any) -> Box:
    """Boxes whose keys are the declared ones and whose values are near-misses."""
    near = {
        "n": st.sampled_from(["1", "-0", "1e3", "0x10", " 1", "١٢"])
        | st.just(5000).map(lambda size: "9" * size),
        "x": st.sampled_from(["nan", "inf", "-inf", "1e999", "1_0", "1.5", ""]),
        "flag": st.sampled_from(["True", "False", "true", "1", ""]),
        "data": st.sampled_from(["", "AAAA", "AAA", "====", "é", "QUJD\r\n"]),
        "numbers": st.sampled_from(["", "1, 2", "1,2", "1, x", ", "]),
        "rows": st.sampled_from(
            ["", "K: a\r\n\r\n", "K: a\r\nV: 1\r\n\r\n", "V: 1\r\n\r\n", "garbage", "K: a"]
        ),
    }
    fields = {name: draw(near.get(name, text)) for name in NAMES if draw(st.booleans())}
    return Box(fields, body=draw(st.none() | st.binary(max_size=16)))


@SETTINGS
@given(boxes | field_boxes())
def test_parsing_any_box_gives_values_or_argument_error(box: Box) -> None:
    for parse in (Everything.parse_arguments, Everything.parse_response):
        result = _call(parse, box)
        if not isinstance(result, ArgumentError):
            assert set(result) == set(NAMES)


good_values = st.fixed_dictionaries(
    {"text": st.text()},
    optional={
        "uni": st.text(),
        "n": st.integers(),
        "x": st.floats(),
        "flag": st.booleans(),
        "data": st.binary(),
        "where": st.builds(pathlib.Path, st.text(st.characters(codec="utf-8"))),
        "numbers": st.lists(st.integers(), max_size=5),
        "words": st.lists(
            st.text(st.characters(codec="utf-8", exclude_characters="|"), min_size=1), max_size=4
        ),
        "rows": st.lists(
            st.fixed_dictionaries({"k": st.text()}, optional={"v": st.integers()}), max_size=3
        ),
        "body": st.binary(),
    },
)


def _same(sent: Any, received: Any) -> bool:
    if isinstance(sent, float) and math.isnan(sent):
        return isinstance(received, float) and math.isnan(received)
    if isinstance(sent, dict):
        return all(_same(value, received.get(key)) for key, value in sent.items())
    if isinstance(sent, list):
        return len(sent) == len(received) and all(map(_same, sent, received))
    return bool(sent == received)


@SETTINGS
@given(good_values)
def test_well_typed_values_round_trip_exactly(values: dict[str, Any]) -> None:
    text_values = [values["text"], values.get("uni", "")]
    text_values += [word for word in values.get("words", [])]
    text_values += [row["k"] for row in values.get("rows", [])]
    text_values += [str(values["where"])] if "where" in values else []
    if any("\r" in t.replace("\r\n", "") or "\n" in t.replace("\r\n", "") for t in text_values):
        # Lone CR or LF cannot travel in a header value: refused, as documented.
        assert isinstance(_call(Everything.make_arguments, values), ArgumentError)
        return
    if values.get("words") == [""]:
        return
    box = Everything.make_arguments(values)
    [parsed] = BoxParser().feed(serialize_box(box))
    received = Everything.parse_arguments(parsed)
    for name, value in values.items():
        assert _same(value, received[name]), (name, value, received[name])


fuzz_atoms = st.sampled_from(
    [
        b"-Answer: 1\r\n",
        b"-Answer: 2\r\n",
        b"-Answer: zz\r\n",
        b"-Error: 1\r\n",
        b"-Error: 2\r\n",
        b"-Error-Code: OOPS\r\n",
        b"-Error-Code: UNHANDLED\r\n",
        b"-Error-Description: bad\r\n",
        b"-Command: Everything\r\n",
        b"-Command: Nope\r\n",
        b"-Ask: 9\r\n",
        b"Text: hello\r\n",
        b"N: 12\r\n",
        b"N: x\r\n",
        b"Rows: K: a\r\n \r\n \r\n",
        b"-Length: 3\r\n",
        b"\r\n",
        b"abc",
        b"\xff",
        b" cont\r\n",
    ]
)
wire = st.lists(fuzz_atoms, max_size=40).map(b"".join) | st.binary(max_size=200)


@SETTINGS
@given(wire)
def test_a_connection_fed_any_bytes_raises_only_protocol_errors(data: bytes) -> None:
    written: list[bytes] = []
    lost: list[ConnectionLoss] = []
    connection = Connection(written.append, pid=1, generation=1, on_lost=lost.append)
    futures = [connection.call(Everything, text=f"request {n}") for n in range(2)]
    try:
        connection.data_received(data)
        connection.data_received(b"")
    except ProtocolError:
        pass
    connection.connection_lost(ProcessUnavailable("fuzz over"))
    for future in futures:
        assert future.done()
        error = future.exception()
        if error is None:
            assert set(future.get(timeout=0)) == set(NAMES)
        else:
            # A declared error class would be the command's; here: ours, or the remote's.
            assert isinstance(error, JuicectlError), repr(error)
    assert connection.in_flight == 0


requests = st.builds(
    Request,
    st.sampled_from(["Everything", "everything", "EVERY-THING", "Negotiate", "Nope", ""]),
    st.none() | st.sampled_from(["1", "a", "ff"]),
    boxes | field_boxes(),
)


@SETTINGS
@given(requests)
def test_responders_always_reply(request: Request) -> None:
    reply = Responders(Handler()).handle(request)
    assert isinstance(reply, Reply)
    if request.tag is None:
        assert reply.data is None
    else:
        assert reply.data is not None
        [box] = BoxParser().feed(reply.data)
        assert box.get("_answer") == request.tag or box.get("_error") == request.tag
