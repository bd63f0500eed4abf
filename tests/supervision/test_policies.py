"""The restart policy with real children: which exits restart, backoff, the intensity limit,
callers during a backoff, and the reset after a long-enough uptime.

The controller publishes ``ProcessTerminated`` and decides about the restart in the same
message handler, so a ``stats()`` asked after the event has arrived already shows the
decision: "no restart" is checked without sleeping.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

import pykka
import pytest
from structlog.testing import capture_logs

from juicectl import ProcessController, ProcessUnavailable
from juicectl.messages import GaveUp, ModeChanged, ProcessStarted, ProcessTerminated
from tests.supervision.conftest import Events, policy
from tests.workers.commands import Echo, Exit, Sleep
from tests.workers.scripts import CRASH_AT_START, worker

Supervise = Callable[..., ProcessController]


def die(connection: object, how: str) -> None:
    """End the child on its own: ``exit 0``, ``exit 1`` or ``sigkill``."""
    if how == "sigkill":
        os.kill(connection.pid, signal.SIGKILL)  # type: ignore[attr-defined]
    else:
        connection.call(Exit, status=int(how.split()[1]))  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("mode", "how", "restarts"),
    [
        ("permanent", "exit 0", True),
        ("permanent", "exit 1", True),
        ("transient", "exit 0", False),
        ("transient", "exit 1", True),
        ("transient", "sigkill", True),
        ("temporary", "exit 0", False),
        ("temporary", "exit 1", False),
    ],
)
def test_which_exits_restart(
    supervise: Supervise, events: Events, mode: str, how: str, restarts: bool
) -> None:
    ctl = supervise(
        worker(), restart=policy(mode, initial_delay=0.02), subscribers=[events.ref]
    )
    first = ctl.get_process().get(timeout=10)
    die(first, how)
    [terminated] = events.wait(ProcessTerminated)
    assert terminated.reason.requested is False
    if restarts:
        events.wait(ProcessStarted, 2)
        second = ctl.get_process().get(timeout=10)
        assert second.pid != first.pid
        assert second.call(Echo, value="back").get(timeout=5) == {"value": "back"}
        stats = ctl.stats()
        assert (stats["generation"], stats["restarts"]) == (2, 1)
    else:
        stats = ctl.stats()
        assert (stats["mode"], stats["restart_pending"], stats["generation"]) == (
            "stopped",
            False,
            1,
        )
        # The seed's behaviour: the next get_process() launches a new child.
        second = ctl.get_process().get(timeout=10)
        assert second.pid != first.pid
        assert ctl.stats()["restarts"] == 0  # a caller's launch is not a restart


def test_backoff_grows_by_its_factor_then_the_policy_gives_up(
    supervise: Supervise, events: Events
) -> None:
    with capture_logs() as logs:
        ctl = supervise(
            CRASH_AT_START,
            restart=policy("permanent", initial_delay=0.1, factor=2, max_restarts=3, window=60),
            subscribers=[events.ref],
        )
        with pytest.raises(ProcessUnavailable):
            ctl.get_process().get(timeout=10)
        [gave_up] = events.wait(GaveUp)
    assert [e["delay"] for e in logs if e["event"] == "restart_scheduled"] == [0.1, 0.2, 0.4]
    # Each restart waited its delay: from the termination's event to the next launch's.
    ended = [t for t, _ in events.timed(ProcessTerminated)]
    launched = [t for t, e in events.timed(ModeChanged) if e.new == "starting"][1:]
    assert len(ended) == 4 and len(launched) == 3
    for delay, end, launch in zip([0.1, 0.2, 0.4], ended, launched, strict=False):
        assert delay - 0.02 <= launch - end < delay + 5
    assert gave_up.restarts == 3
    assert gave_up.last.exit_status == 3
    [line] = [e for e in logs if e["event"] == "gave_up"]
    assert (line["restarts"], line["max_restarts"], line["log_level"]) == (3, 3, "warning")


def test_after_giving_up_no_automatic_restart_and_get_process_tries_again(
    supervise: Supervise, events: Events
) -> None:
    ctl = supervise(
        CRASH_AT_START,
        restart=policy("permanent", initial_delay=0.02, max_restarts=1, window=60),
        subscribers=[events.ref],
    )
    with pytest.raises(ProcessUnavailable):
        ctl.get_process().get(timeout=10)
    events.wait(GaveUp)
    stats = ctl.stats()
    assert (stats["mode"], stats["gave_up"], stats["restart_pending"]) == ("stopped", True, False)
    assert (stats["generation"], stats["restarts"]) == (2, 1)
    # The next get_process() launches at once and starts the count afresh.
    with pytest.raises(ProcessUnavailable) as info:
        ctl.get_process().get(timeout=10)
    assert "status 3" in str(info.value)
    events.wait(GaveUp, 2)
    stats = ctl.stats()
    assert (stats["generation"], stats["restarts"], stats["gave_up"]) == (4, 2, True)
    assert len(events.of(ProcessTerminated)) == 4


def test_get_process_during_a_backoff_waits_for_the_restart(
    supervise: Supervise, events: Events
) -> None:
    ctl = supervise(
        worker(), restart=policy("permanent", initial_delay=0.4), subscribers=[events.ref]
    )
    first = ctl.get_process().get(timeout=10)
    first.call(Exit, status=1)
    events.wait(ProcessTerminated)
    waiter = ctl.get_process()
    stats = ctl.stats()
    assert (stats["mode"], stats["restart_pending"], stats["waiting"]) == ("stopped", True, 1)
    # The caller bounds its own wait; the future stays valid past that.
    with pytest.raises(pykka.Timeout):
        waiter.get(timeout=0.01)
    second = waiter.get(timeout=10)
    assert second.pid != first.pid
    assert second.call(Echo, value="waited").get(timeout=5) == {"value": "waited"}
    assert ctl.stats()["restarts"] == 1


def test_waiters_during_a_backoff_fail_when_the_restart_fails_and_the_policy_gives_up(
    supervise: Supervise, events: Events
) -> None:
    ctl = supervise(
        CRASH_AT_START,
        restart=policy("permanent", initial_delay=0.3, max_restarts=1, window=60),
        subscribers=[events.ref],
    )
    with pytest.raises(ProcessUnavailable):
        ctl.get_process().get(timeout=10)
    assert ctl.stats()["restart_pending"] is True
    waiter = ctl.get_process()
    with pytest.raises(ProcessUnavailable) as info:
        waiter.get(timeout=10)
    assert "exited with status 3" in info.value.reason
    assert any("missing_dependency" in line for line in info.value.stderr_tail)
    events.wait(GaveUp)
    assert ctl.stats()["gave_up"] is True


def test_a_child_that_stayed_up_long_enough_resets_the_backoff(
    supervise: Supervise, events: Events
) -> None:
    with capture_logs() as logs:
        ctl = supervise(
            worker(),
            restart=policy(
                "permanent", initial_delay=0.05, factor=20, reset_after=0.4, max_restarts=10
            ),
            subscribers=[events.ref],
        )
        ctl.get_process().get(timeout=10).call(Exit, status=1)  # at once: delay 0.05
        events.wait(ProcessStarted, 2)
        conn = ctl.get_process().get(timeout=10)
        time.sleep(0.5)  # up longer than reset_after
        conn.call(Exit, status=1)  # the streak restarts: 0.05 again, not 1.0
        events.wait(ProcessStarted, 3)
        ctl.get_process().get(timeout=10).call(Exit, status=1)  # at once: 0.05 * 20
        events.wait(ProcessTerminated, 3)
        # The controller tells of the exit before it schedules the restart; a query is
        # handled after the whole crash, so the third restart_scheduled is in the log.
        assert ctl.stats()["restart_pending"]
    delays = [e["delay"] for e in logs if e["event"] == "restart_scheduled"]
    assert delays == [0.05, 0.05, 1.0]


def test_requests_in_flight_fail_and_are_never_resent_to_the_next_child(
    supervise: Supervise, events: Events
) -> None:
    ctl = supervise(
        worker(), restart=policy("permanent", initial_delay=0.02), subscribers=[events.ref]
    )
    first = ctl.get_process().get(timeout=10)
    in_flight = [first.call(Sleep, seconds=30) for _ in range(3)]
    os.kill(first.pid, signal.SIGKILL)
    for future in in_flight:
        with pytest.raises(ProcessUnavailable) as info:
            future.get(timeout=10)
        assert "SIGKILL" in str(info.value) or "closed its stdout" in str(info.value)
    events.wait(ProcessStarted, 2)
    second = ctl.get_process().get(timeout=10)
    assert second is not first
    # Only the readiness probe went to the new child.
    assert second.stats() == {"sent": 1, "answered": 1, "failed": 0, "in_flight": 0}
