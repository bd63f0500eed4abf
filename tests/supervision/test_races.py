"""Restarts racing stops: a stop or a close always wins over a pending or running restart."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable

import pytest
from structlog.testing import capture_logs

import juicectl._reading
from juicectl import ControllerClosed, ProcessController, ProcessUnavailable
from juicectl.messages import ModeChanged, ProcessTerminated
from tests.supervision.conftest import Events, alive, policy, wait_for
from tests.workers.commands import Echo, Exit
from tests.workers.scripts import worker

Supervise = Callable[..., ProcessController]

BACKOFF = 0.4
"""Long enough to act during the backoff, short enough to wait past it."""


def crash_into_backoff(ctl: ProcessController, events: Events) -> None:
    """Get a child, make it exit with status 1, wait until the restart is pending."""
    conn = ctl.get_process().get(timeout=10)
    conn.call(Exit, status=1)
    events.wait(ProcessTerminated)
    assert ctl.stats()["restart_pending"] is True


def test_stop_during_a_backoff_cancels_the_restart(supervise: Supervise, events: Events) -> None:
    ctl = supervise(
        worker(), restart=policy("permanent", initial_delay=BACKOFF), subscribers=[events.ref]
    )
    crash_into_backoff(ctl, events)
    waiter = ctl.get_process()
    assert ctl.stop_process().get(timeout=5).how == "not_running"
    with pytest.raises(ProcessUnavailable) as info:
        waiter.get(timeout=5)
    assert "cancelled by StopProcess" in str(info.value)
    time.sleep(BACKOFF + 0.2)  # past the cancelled restart's time: nothing launched
    stats = ctl.stats()
    assert (stats["mode"], stats["generation"], stats["restart_pending"]) == ("stopped", 1, False)
    # A caller can still start it again.
    assert ctl.get_process().get(timeout=10).pid


def test_stop_while_the_restarted_child_is_starting(supervise: Supervise, events: Events) -> None:
    starting = threading.Event()

    def slow_prepare(connection: object) -> None:
        if connection.generation == 2:  # type: ignore[attr-defined]
            starting.set()
            time.sleep(0.3)  # holds the restarted child in "starting"

    ctl = supervise(
        worker(),
        prepare=slow_prepare,
        restart=policy("permanent", initial_delay=0.02),
        subscribers=[events.ref],
    )
    crash_into_backoff(ctl, events)
    assert starting.wait(10)
    assert ctl.mode == "starting"
    result = ctl.stop_process().get(timeout=10)
    assert result.how == "clean"
    assert result.reason is not None and result.reason.requested
    assert result.reason.pid is not None and not alive(result.reason.pid)
    # It was shut down as soon as it was ready, and not restarted. (The subscriber hears of
    # the last change a moment after the stop future resolves: wait for it.)
    shut_down_when_ready = [
        ("starting", "waiting_ready"),
        ("waiting_ready", "stopping"),
        ("stopping", "stopped"),
    ]
    wait_for(lambda: events.modes()[-3:] == shut_down_when_ready, what="shut down when ready")
    stats = ctl.stats()
    assert (stats["mode"], stats["restart_pending"], stats["generation"]) == ("stopped", False, 2)
    assert len(events.of(ProcessTerminated)) == 1  # a requested stop is not announced


def test_close_during_a_backoff(supervise: Supervise, events: Events) -> None:
    ctl = supervise(
        worker(), restart=policy("permanent", initial_delay=BACKOFF), subscribers=[events.ref]
    )
    crash_into_backoff(ctl, events)
    waiter = ctl.get_process()
    result = ctl.close(timeout=10)
    assert result is not None and result.how == "not_running"
    with pytest.raises(ControllerClosed):
        waiter.get(timeout=5)
    time.sleep(BACKOFF + 0.2)
    launches = [e for e in events.of(ModeChanged) if e.new == "starting"]
    assert len(launches) == 1  # only the first child ever ran
    with pytest.raises(ControllerClosed):
        ctl.get_process().get(timeout=5)


def test_a_child_that_dies_while_the_reader_is_parked_is_known_at_once(
    supervise: Supervise, events: Events, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Callers read their own answers, so the reader thread parks; parked for a minute here,
    # it would see the end of file only after the drain grace gave the pipes up. The exit
    # wakes it instead: the end is read, and the termination reported, at once.
    monkeypatch.setattr(juicectl._reading, "PARK", 60.0)
    ctl = supervise(worker(), subscribers=[events.ref])
    connection = ctl.get_process().get(timeout=10)
    for _ in range(20):
        connection.call(Echo, value="x").get(timeout=10)
    with capture_logs() as logs:
        os.kill(connection.pid, signal.SIGKILL)
        wait_for(lambda: events.of(ProcessTerminated) != [], what="the termination")
    assert [e for e in logs if e["event"] == "streams_abandoned"] == []
    [terminated] = events.of(ProcessTerminated)
    assert terminated.reason.signal == signal.SIGKILL
