"""``stats()``: the controller's figures through a child's life, a restart and a stop."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from juicectl import ProcessController, RequestTimeout
from juicectl.messages import ProcessStarted
from tests.supervision.conftest import Events, policy, wait_for
from tests.workers.commands import Exit, Sleep
from tests.workers.scripts import worker

Supervise = Callable[..., ProcessController]

REQUESTS = ("sent", "answered", "failed", "in_flight")


def requests(stats: dict[str, object]) -> tuple[object, ...]:
    return tuple(stats[key] for key in REQUESTS)


def test_stats_through_start_requests_restart_and_stop(
    supervise: Supervise, events: Events
) -> None:
    ctl = supervise(
        worker(), restart=policy("permanent", initial_delay=0.02), subscribers=[events.ref]
    )
    stats = ctl.stats()
    assert {k: stats[k] for k in ("mode", "pid", "generation", "uptime", "restarts")} == {
        "mode": "stopped",
        "pid": None,
        "generation": 0,
        "uptime": None,
        "restarts": 0,
    }
    assert stats["last_exit"] is None
    assert requests(stats) == (0, 0, 0, 0)

    conn = ctl.get_process().get(timeout=10)
    stats = ctl.stats()
    assert (stats["mode"], stats["pid"], stats["generation"]) == ("ready", conn.pid, 1)
    assert stats["uptime"] >= 0
    assert requests(stats) == (1, 1, 0, 0)  # the readiness probe

    busy = [conn.call(Sleep, seconds=0.2) for _ in range(2)]
    assert requests(ctl.stats())[3] == 2
    for future in busy:
        future.get(timeout=5)
    with pytest.raises(RequestTimeout):
        conn.call(Sleep, seconds=0.2, timeout=0.05).get(timeout=5)
    later = ctl.stats()
    assert requests(later) == (4, 3, 1, 0)
    assert later["uptime"] > stats["uptime"]

    conn.call(Exit, status=1)  # never answered: it fails when the child is gone
    events.wait(ProcessStarted, 2)
    wait_for(lambda: ctl.stats()["mode"] == "ready")
    stats = ctl.stats()
    new = ctl.get_process().get(timeout=10)
    assert (stats["pid"], stats["generation"], stats["restarts"]) == (new.pid, 2, 1)
    assert stats["last_exit"] == {
        "description": f"child {conn.pid} exited with status 1",
        "how": "exited",
        "exit_status": 1,
        "signal": None,
        "requested": False,
    }
    assert requests(stats) == (1, 1, 0, 0)  # the new child's connection

    ctl.stop_process().get(timeout=10)
    stats = ctl.stats()
    assert (stats["mode"], stats["pid"], stats["uptime"], stats["restarts"]) == (
        "stopped",
        None,
        None,
        1,
    )
    assert stats["last_exit"]["how"] == "clean"
    assert stats["last_exit"]["requested"] is True
    assert requests(stats) == (0, 0, 0, 0)


KEYS = {
    "name", "mode", "pid", "generation", "uptime", "restarts", "restarts_in_window",
    "restart_pending", "gave_up", "waiting", "last_exit", *REQUESTS, "closed",
}


def test_stats_of_a_closed_controller_keep_their_shape(supervise: Supervise) -> None:
    never_started = supervise(worker(), name="never-started")
    assert set(never_started.stats()) == KEYS
    assert never_started.stats()["closed"] is False
    never_started.close()
    stats = never_started.stats()
    assert set(stats) == KEYS
    assert (stats["closed"], stats["mode"], stats["generation"], stats["last_exit"]) == (
        True, "stopped", 0, None,
    )

    ctl = supervise(worker())
    connection = ctl.get_process().get(timeout=10)
    running = ctl.stats()
    assert set(running) == KEYS
    assert (running["closed"], running["pid"]) == (False, connection.pid)
    ctl.close()
    # The figures the controller had as its actor stopped: the child stopped on request.
    stats = ctl.stats()
    assert set(stats) == KEYS
    assert (stats["closed"], stats["mode"], stats["pid"], stats["uptime"]) == (
        True, "stopped", None, None,
    )
    assert (stats["name"], stats["generation"]) == (ctl.name, 1)
    assert (stats["last_exit"]["how"], stats["last_exit"]["requested"]) == ("clean", True)
    assert requests(stats) == (0, 0, 0, 0)
    assert ctl.mode == "stopped"
