"""Request timeouts behind one timer: each request that times out fails with
``RequestTimeout``, whatever the order of the timeouts; an answered request never does; and
the deadlines kept stay about as many as the requests in flight, however the answers come.

The waits are bounded so that a broken test fails instead of hanging; nothing is timed.
"""

from __future__ import annotations

import threading
import time

import pytest

from juicectl._timer import Deadlines, call_later
from juicectl.connection import Connection
from juicectl.exceptions import ProcessUnavailable, RequestTimeout
from juicectl.juice import answer_bytes
from tests.child.limit_workers import Echo

BOUND = 10.0


def answer(connection: Connection, tag: str, value: str = "v") -> None:
    connection.data_received(answer_bytes(tag, Echo.make_response({"value": value})))


def new_connection() -> Connection:
    return Connection(lambda data: None, pid=0, generation=1)


def test_a_shorter_timeout_after_a_longer_one_still_fails_first() -> None:
    conn = new_connection()
    slow = conn.call(Echo, value="a", timeout=30)
    quick = conn.call(Echo, value="b", timeout=0.05)
    with pytest.raises(RequestTimeout, match=r"Echo got no answer within 0\.05s"):
        quick.get(timeout=BOUND)
    assert not slow.done()
    answer(conn, "1", "a")
    assert slow.get(timeout=BOUND) == {"value": "a"}
    assert conn.stats()["failed"] == 1 and conn.in_flight == 0


def test_every_request_past_its_timeout_fails_and_the_answered_ones_do_not() -> None:
    conn = new_connection()
    futures = [conn.call(Echo, value=str(i), timeout=0.05 + 0.01 * (i % 5)) for i in range(40)]
    for i in range(0, 40, 2):  # answer every other one at once
        answer(conn, format(i + 1, "x"), str(i))
    for i, future in enumerate(futures):
        if i % 2 == 0:
            assert future.get(timeout=BOUND) == {"value": str(i)}
        else:
            with pytest.raises(RequestTimeout):
                future.get(timeout=BOUND)
    assert conn.stats() == {"sent": 40, "answered": 20, "failed": 20, "in_flight": 0}


def test_deadlines_kept_stay_near_the_requests_in_flight() -> None:
    conn = new_connection()
    oldest = conn.call(Echo, value="old", timeout=60)  # never answered: the heap's head
    for i in range(2, 5002):
        conn.call(Echo, value="v", timeout=60)
        answer(conn, format(i, "x"))
    # Answered behind an unanswered head, they are dropped in bulk as they pile up.
    assert len(conn._deadlines) <= 2 * conn.in_flight + 66
    answer(conn, "1", "old")
    assert oldest.get(timeout=BOUND) == {"value": "old"}


def test_answers_in_order_leave_no_deadline_behind() -> None:
    conn = new_connection()
    for i in range(1, 201):
        future = conn.call(Echo, value="v", timeout=60)
        answer(conn, format(i, "x"))
        future.get(timeout=BOUND)
    assert len(conn._deadlines) == 0


def test_a_lost_connection_drops_its_deadlines() -> None:
    conn = new_connection()
    future = conn.call(Echo, value="v", timeout=0.05)
    conn.connection_lost(ProcessUnavailable("gone"))
    with pytest.raises(ProcessUnavailable):
        future.get(timeout=BOUND)
    assert len(conn._deadlines) == 0
    time.sleep(0.1)  # past the deadline: nothing else happens to the settled future
    assert isinstance(future.exception(), ProcessUnavailable)


def test_deadlines_pop_what_is_due_in_order_and_rearm() -> None:
    fired: list[int] = []
    deadlines: Deadlines[str, int] = Deadlines(lambda: fired.append(1))
    live = {"a", "b", "c"}
    now = time.monotonic()
    deadlines.add(now + 60, "c", 3, live)
    deadlines.add(now - 1, "b", 2, live)
    deadlines.add(now - 2, "a", 1, live)
    assert deadlines.pop_due() == [("a", 1), ("b", 2)]
    assert len(deadlines) == 1
    deadlines.answered("c")
    assert len(deadlines) == 0
    deadlines.clear()


def test_a_deadline_years_away_does_not_end_the_shared_timer_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A wait beyond threading.TIMEOUT_MAX raised OverflowError in the timer thread itself,
    # which ended it, with the timers it held.
    died: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: died.append(args.exc_value))
    far = call_later(1e300, lambda: None)
    try:
        near = threading.Event()
        call_later(0.05, near.set)
        assert near.wait(timeout=10)
    finally:
        far.cancel()
    assert died == []
