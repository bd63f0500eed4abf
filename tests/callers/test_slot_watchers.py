"""``Connection.when_slot_free``: a caller that must not block a thread on a free slot (the
asyncio form) is called back once one frees up, whichever way it frees."""

from __future__ import annotations

import functools
from typing import Any

import pytest

from juicectl import ReplyFuture
from juicectl.connection import Connection
from juicectl.exceptions import ProcessUnavailable, RequestTimeout
from juicectl.juice import answer_bytes
from juicectl.policy import ConnectionOptions
from tests.child.limit_workers import Echo

BOUND = 10.0


def full_connection() -> tuple[Connection, ReplyFuture[dict[str, Any]]]:
    """A connection whose one slot is taken by request "1", and that request's future."""
    conn = Connection(lambda data: None, pid=0, generation=1,
                      options=ConnectionOptions(max_in_flight=1))
    return conn, conn.call(Echo, value="first")


def test_with_a_slot_free_nothing_is_registered() -> None:
    conn = Connection(lambda data: None, pid=0, generation=1,
                      options=ConnectionOptions(max_in_flight=1))
    called: list[str] = []
    assert conn.when_slot_free(lambda: called.append("x")) is None
    assert called == []


def test_an_answer_calls_the_watcher_once() -> None:
    conn, _ = full_connection()
    called: list[str] = []
    withdraw = conn.when_slot_free(lambda: called.append("freed"))
    assert withdraw is not None and called == []
    conn.data_received(answer_bytes("1", Echo.make_response({"value": "first"})))
    assert called == ["freed"]
    conn.call(Echo, value="second", wait_for_slot=False)  # the slot is there
    withdraw()  # after it was called: nothing to take back
    assert called == ["freed"]


def test_a_timeout_calls_the_watcher() -> None:
    conn = Connection(lambda data: None, pid=0, generation=1,
                      options=ConnectionOptions(max_in_flight=1))
    first = conn.call(Echo, value="first", timeout=0.05)
    called: list[str] = []
    assert conn.when_slot_free(lambda: called.append("freed")) is not None
    with pytest.raises(RequestTimeout):
        first.get(timeout=BOUND)
    assert called == ["freed"]


def test_the_end_of_the_connection_calls_every_watcher() -> None:
    conn, _ = full_connection()
    called: list[int] = []
    for number in range(3):
        assert conn.when_slot_free(functools.partial(called.append, number)) is not None
    conn.connection_lost(ProcessUnavailable("gone"))
    assert sorted(called) == [0, 1, 2]
    assert conn.when_slot_free(lambda: called.append(9)) is None  # ended: nothing to wait for


def test_a_withdrawn_watcher_is_not_called() -> None:
    conn, _ = full_connection()
    called: list[str] = []
    withdraw = conn.when_slot_free(lambda: called.append("freed"))
    assert withdraw is not None
    withdraw()
    conn.data_received(answer_bytes("1", Echo.make_response({"value": "first"})))
    assert called == []


def test_a_watcher_that_raises_does_not_break_the_answer() -> None:
    conn, first = full_connection()

    def broken() -> None:
        raise RuntimeError("boom")

    assert conn.when_slot_free(broken) is not None
    conn.data_received(answer_bytes("1", Echo.make_response({"value": "first"})))
    assert first.get(timeout=BOUND) == {"value": "first"}
    conn.call(Echo, value="next", wait_for_slot=False)  # the slot was freed all the same
