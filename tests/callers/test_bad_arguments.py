"""Arguments that cannot be sent fail at ``call()``, synchronously, before anything is written.

Each bad call must raise ``ArgumentError`` from ``call()`` itself (not through the future),
leave the ``sent`` counter where it was and write no byte: on a bare ``Connection`` the write
function is never called; on a real child the next good request is answered with its own
value, so the child saw nothing of the bad one.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from juicectl import Connection, ProcessController, RestartPolicy
from juicectl.juice import ArgumentError, Command, String
from tests.workers.commands import Echo, Sleep

ROOT = Path(__file__).resolve().parent.parent.parent
WORKER = [sys.executable, "-m", "juicectl.child", "tests.workers.echo:EchoWorker"]


class NotACommand:
    """Looks like a command, is not one."""

    command_name = "Echo"
    arguments = [("value", String())]


# Any, not Connection: these calls are wrong on purpose, the type checker would refuse them.
BadCall = Callable[[Any], Any]

BAD_CALLS: list[tuple[str, BadCall, str]] = [
    # wrong types
    ("int for a str", lambda c: c.call(Echo, value=42), "expected str"),
    ("bytes for a str", lambda c: c.call(Echo, value=b"raw"), "expected str"),
    ("None for a required", lambda c: c.call(Echo, value=None), "cannot be None"),
    ("str for a float", lambda c: c.call(Sleep, seconds="1.0"), "expected float"),
    ("bool for a float", lambda c: c.call(Sleep, seconds=True), "expected float"),
    ("int too large for a float", lambda c: c.call(Sleep, seconds=10**400), "too large"),
    # values the wire cannot carry
    ("lone CR in a value", lambda c: c.call(Echo, value="a\rb"), "CR or LF"),
    ("lone LF in a value", lambda c: c.call(Echo, value="a\nb"), "CR or LF"),
    ("lone surrogate", lambda c: c.call(Echo, value="\ud800"), "UTF-8"),
    # keys: CR/LF, header injection, not a str
    ("CRLF in a key", lambda c: c.call(Echo, value="x", **{"val\r\nue": "y"}), "unknown"),
    ("LF in a key", lambda c: c.call(Echo, **{"value\n": "x"}), "missing required|unknown"),
    (
        "header injection in a key",
        lambda c: c.call(Echo, value="x", **{"a: b\r\n-Command: Exit\r\nStatus: 3": "1"}),
        "unknown",
    ),
    ("a non-str key", lambda c: c.call_with(Echo, {1: "x"}), "must be str"),
    # missing, unknown, doubled
    ("missing required", lambda c: c.call(Echo), "missing required 'value'"),
    ("unknown keyword", lambda c: c.call(Echo, value="x", colour="red"), "unknown 'colour'"),
    ("two names, one field", lambda c: c.call(Echo, value="x", Value="y"), "same field"),
    # not a command
    ("a str for a command", lambda c: c.call("Echo", value="x"), "Command subclass"),
    ("a command instance", lambda c: c.call(Echo(value="x"), value="x"), "Command subclass"),
    ("a look-alike class", lambda c: c.call(NotACommand, value="x"), "Command subclass"),
    ("None for a command", lambda c: c.call(None), "Command subclass"),
    # timeouts
    ("zero timeout", lambda c: c.call(Echo, value="x", timeout=0), "timeout"),
    ("negative timeout", lambda c: c.call(Echo, value="x", timeout=-1), "timeout"),
    ("a timeout no thread can wait", lambda c: c.call(Echo, value="x", timeout=1e300),
     "timeout must be at most"),
]
IDS = [name for name, _, _ in BAD_CALLS]


@pytest.mark.parametrize(("name", "bad_call", "message"), BAD_CALLS, ids=IDS)
def test_bad_call_raises_before_anything_is_written(
    name: str, bad_call: BadCall, message: str
) -> None:
    written: list[bytes] = []
    connection = Connection(written.append, pid=1, generation=1)
    with pytest.raises(ArgumentError, match=message):
        bad_call(connection)
    assert written == []
    assert connection.stats() == {"sent": 0, "answered": 0, "failed": 0, "in_flight": 0}


@pytest.fixture
def controller() -> Iterator[ProcessController]:
    ctl = ProcessController.start(
        WORKER,
        cwd=str(ROOT),
        restart=RestartPolicy(mode="temporary"),
        stop_timeout=2.0,
        kill_timeout=1.0,
    )
    yield ctl
    ctl.close(timeout=15)


def test_a_real_child_sees_nothing_of_any_bad_call(controller: ProcessController) -> None:
    connection = controller.get_process().get(timeout=15)
    for n, (name, bad_call, message) in enumerate(BAD_CALLS):
        before = connection.stats()["sent"]
        with pytest.raises(ArgumentError, match=message):
            bad_call(connection)
        assert connection.stats()["sent"] == before, name
        # The next request is answered with its own value: the child's stream is intact
        # and it never saw a half-written request.
        value = f"after {name} ({n})"
        assert connection.call(Echo, value=value).get(timeout=10) == {"value": value}
    stats = connection.stats()
    assert stats["sent"] == stats["answered"] == len(BAD_CALLS) + 1  # and Negotiate
    assert controller.mode == "ready"


def test_values_that_look_like_headers_travel_as_values(controller: ProcessController) -> None:
    connection = controller.get_process().get(timeout=15)
    for value in [
        "x\r\n-Command: Exit\r\nStatus: 3\r\n",
        "\r\n\r\n-Answer: 1\r\n\r\n",
        "Value: y\r\n",
        "-Length: 100000000000",
    ]:
        assert connection.call(Echo, value=value).get(timeout=10) == {"value": value}
    assert controller.mode == "ready"


def test_command_objects_check_their_arguments_when_made() -> None:
    with pytest.raises(ArgumentError, match="expected str"):
        Echo(value=42)
    with pytest.raises(ArgumentError, match="unknown"):
        Echo(value="x", extra=1)


def test_the_controller_shortcut_raises_the_same_error(controller: ProcessController) -> None:
    with pytest.raises(ArgumentError, match="expected str"):
        controller.call(Echo, value=42)


def test_a_command_declaring_an_unsendable_field_fails_at_class_creation() -> None:
    with pytest.raises(TypeError, match="reserved"):

        class Bad(Command):
            arguments = [("-Command", String())]
