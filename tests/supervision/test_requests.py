"""Requests are bounded: per-call and connection-wide timeouts, and a cap on requests in flight.

The worker answers one request at a time, so ``Sleep`` holds the line for as long as asked.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable

import pytest
from structlog.testing import capture_logs

from juicectl import ProcessController, ProcessUnavailable, RequestTimeout, TooManyRequests
from tests.supervision.conftest import wait_for
from tests.workers.commands import Echo, Sleep
from tests.workers.scripts import worker

Supervise = Callable[..., ProcessController]


def test_a_request_times_out_and_its_late_answer_is_dropped_with_a_log_line(
    supervise: Supervise,
) -> None:
    with capture_logs() as logs:
        conn = supervise(worker()).get_process().get(timeout=10)
        late = conn.call(Sleep, seconds=0.4, timeout=0.1)
        with pytest.raises(RequestTimeout) as info:
            late.get(timeout=5)
        assert "Sleep got no answer within 0.1s" in str(info.value)
        # The next answer on the line is the late one: it is dropped, this one is answered.
        assert conn.call(Echo, value="after").get(timeout=5) == {"value": "after"}
    dropped = [e for e in logs if e["event"] == "late_answer_dropped"]
    assert len(dropped) == 1
    assert conn.stats() == {"sent": 3, "answered": 2, "failed": 1, "in_flight": 0}


def test_the_connection_wide_default_applies_unless_the_call_says_otherwise(
    supervise: Supervise,
) -> None:
    conn = supervise(worker(), request_timeout=0.1).get_process().get(timeout=10)
    assert conn.request_timeout == 0.1
    with pytest.raises(RequestTimeout):
        conn.call(Sleep, seconds=0.3).get(timeout=5)
    assert conn.call(Sleep, seconds=0.3, timeout=5).get(timeout=5) == {"slept": 0.3}


def test_the_readiness_probe_is_bound_by_startup_timeout_not_request_timeout(
    supervise: Supervise,
) -> None:
    # A tiny request timeout must not fail a child that takes longer than that to start.
    conn = supervise(worker(), request_timeout=0.001).get_process().get(timeout=10)
    assert conn.stats()["answered"] == 1


def test_max_in_flight_without_waiting_fails_at_once(supervise: Supervise) -> None:
    conn = supervise(worker(), max_in_flight=2).get_process().get(timeout=10)
    busy = [conn.call(Sleep, seconds=0.3) for _ in range(2)]
    assert conn.in_flight == 2
    with pytest.raises(TooManyRequests) as info:
        conn.call(Echo, value="no room", wait_for_slot=False)
    assert "2 requests already in flight" in str(info.value)
    for future in busy:
        future.get(timeout=5)
    assert conn.call(Echo, value="room", wait_for_slot=False).get(timeout=5) == {"value": "room"}


def test_max_in_flight_callers_wait_for_a_slot(supervise: Supervise) -> None:
    conn = supervise(worker(), max_in_flight=1).get_process().get(timeout=10)
    first = conn.call(Sleep, seconds=0.3)
    results: list[object] = []

    def caller() -> None:
        results.append(conn.call(Echo, value="queued").get(timeout=5))

    thread = threading.Thread(target=caller)
    began = time.monotonic()
    thread.start()
    thread.join(10)
    waited = time.monotonic() - began
    assert results == [{"value": "queued"}]
    assert first.done()  # the caller got its slot only once the first answer came
    assert waited > 0.1
    assert conn.in_flight == 0


def test_max_in_flight_waiting_is_bounded_by_the_call_timeout(supervise: Supervise) -> None:
    conn = supervise(worker(), max_in_flight=1).get_process().get(timeout=10)
    busy = conn.call(Sleep, seconds=0.5)
    with pytest.raises(TooManyRequests) as info:
        conn.call(Echo, value="too long", timeout=0.1)
    assert "no free slot within 0.1s" in str(info.value)
    busy.get(timeout=5)
    wait_for(lambda: conn.in_flight == 0)
    assert conn.stats()["sent"] == 2  # the refused request was never sent


def test_a_caller_retrying_at_once_after_a_crash_gets_the_next_child(
    supervise: Supervise,
) -> None:
    # The process actor reports the child's end to the controller before it fails the child's
    # requests, so a GetProcess sent as soon as a request fails queues behind that report: it
    # launches the next child instead of meeting the dead one's connection.
    ctl = supervise(worker())
    for _ in range(5):
        conn = ctl.get_process().get(timeout=10)
        pending = conn.call(Sleep, seconds=30)
        os.kill(conn.pid, signal.SIGKILL)
        with pytest.raises(ProcessUnavailable):
            pending.get(timeout=10)
        again = ctl.get_process().get(timeout=10)
        assert again.generation == conn.generation + 1


def test_once_the_stop_begins_a_new_request_is_refused_and_those_before_it_are_answered(
    supervise: Supervise,
) -> None:
    ctl = supervise(worker(), stop_timeout=10.0)
    conn = ctl.get_process().get(timeout=10)
    busy = conn.call(Sleep, seconds=0.5)
    stopping = ctl.stop_process()  # Shutdown waits behind Sleep in this one-at-a-time worker
    wait_for(lambda: conn.stopping, what="the stop under way")
    sent = conn.stats()["sent"]
    late = conn.call(Echo, value="too late")
    # Refused at the door, nothing written: not sent to fail at the exit.
    assert late.done()
    with pytest.raises(ProcessUnavailable, match=r"is stopping \(a stop was asked for\)"):
        late.get(timeout=0)
    assert conn.stats()["sent"] == sent
    assert busy.get(timeout=10) == {"slept": 0.5}
    assert stopping.get(timeout=20).how == "clean"
