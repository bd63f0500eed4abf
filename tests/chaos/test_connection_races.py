"""Races the chaos runs found, reproduced deterministically on a bare ``Connection``."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from structlog.testing import capture_logs

from juicectl.connection import Connection
from juicectl.exceptions import ProcessUnavailable
from juicectl.juice import Box, answer_bytes
from tests.workers.commands import Echo


def broken_pipe(data: bytes) -> None:
    raise BrokenPipeError(32, "Broken pipe")


def test_an_answer_read_after_a_failed_write_is_not_reported_as_an_unknown_tag() -> None:
    # A child killed while answering: the next write fails (EPIPE) and ends the connection,
    # failing what was outstanding; the answers the child wrote before dying are still in
    # the pipe and reach the reader afterwards. They answer requests we did send, so they
    # must not raise the alarm meant for a child that answers tags it was never asked.
    sent: list[bytes] = []
    writes = iter([sent.append, broken_pipe])
    connection = Connection(lambda data: next(writes)(data), pid=1, generation=1)
    first = connection.call(Echo, value="answered, but too late")
    second = connection.call(Echo, value="never written")
    for future in (first, second):
        with pytest.raises(ProcessUnavailable):
            future.get(timeout=5)
    assert connection.closed
    with capture_logs() as logs:
        connection.data_received(answer_bytes("1", Box(value="answered, but too late")))
    events = [entry["event"] for entry in logs]
    assert "answer_for_unknown_tag" not in events
    assert events == ["answer_after_close"]


def test_an_answer_for_a_tag_never_asked_is_still_reported_while_open() -> None:
    connection = Connection(lambda data: None, pid=1, generation=1)
    with capture_logs() as logs:
        connection.data_received(answer_bytes("99", Box(value="bogus")))
    assert [entry["event"] for entry in logs] == ["answer_for_unknown_tag"]
    assert [entry["log_level"] for entry in logs] == ["warning"]


def test_a_request_from_the_child_after_the_connection_ended_is_dropped_quietly() -> None:
    # The child calls the parent (Negotiate is always answered) while the connection is
    # being lost: the reader thread must not die on the closed dispatcher.
    written: list[bytes] = []
    connection = Connection(written.append, pid=1, generation=1)
    negotiate = b"-Command: Negotiate\r\n-Ask: c1\r\nVersions: 1\r\n\r\n"
    connection.data_received(negotiate)
    wait_until(lambda: len(written) == 1)
    connection.connection_lost(ProcessUnavailable("gone"))
    with capture_logs() as logs:
        connection.data_received(negotiate.replace(b"c1", b"c2"))
        connection.data_received(negotiate.replace(b"c1", b"c3"))
    assert [entry["event"] for entry in logs] == ["request_after_close"] * 2
    assert len(written) == 1


def test_a_first_request_after_the_connection_ended_starts_no_thread() -> None:
    connection = Connection(lambda data: None, pid=1, generation=1)
    connection.connection_lost(ProcessUnavailable("gone"))
    before = set(threading.enumerate())
    connection.data_received(b"-Command: Negotiate\r\n-Ask: c1\r\nVersions: 1\r\n\r\n")
    assert set(threading.enumerate()) - before == set()


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)
