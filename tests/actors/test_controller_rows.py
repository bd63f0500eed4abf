"""Every row of ``TRANSITIONS``, guards included: driven into its mode with its guard holding,
the controller takes that row, goes to its next mode and runs its action.

This pins the mechanism (each guard selects its row, the mode set is the row's, the action
run is the row's); what the rows say is pinned against an independent copy elsewhere: the
seed's rows and their outcomes in ``test_controller_table``, every row's guard and next mode
against docs/lifecycle.md in ``test_lifecycle_doc``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import structlog
from controller_harness import WAIT, FakeConnection, Harness, into, outcome

from juicectl.actors.controller import TRANSITIONS, Action, Guard, Mode
from juicectl.exceptions import ControllerClosed
from juicectl.messages import ChildProcessCreated, _RestartDue
from juicectl.policy import RestartPolicy

Key = tuple[Mode, str, Guard | None]
"""A row: (mode, message type name, guard)."""

ROWS: dict[Key, Any] = {
    (mode, message.__name__, row.when): row
    for (mode, message), rows in TRANSITIONS.items()
    for row in rows
}

CAUSE = {"_Close": "close", "_RestartDue": "restart"}

ACTION_LOG = {
    Action.LAUNCH: "launching",
    Action.RESTART: "launching",
    Action.WAIT_FOR_RESTART: "get_process_waits_for_restart",
    Action.FINISH_CLOSE: "controller_closed",
    Action.IGNORE_STALE: "stale_message",
    Action.IGNORE_TIMER: "stale_restart_timer",
    Action.LOG_UNEXPECTED: "unexpected_message",
}
"""Actions with a log line of their own: the row's action ran if its line is there."""

NEVER = 600.0


def send(h: Harness, message: str, *, stale: bool = False) -> Any:
    """Tell the controller one message of this type; its future, if it carries one."""
    if message == "GetProcess":
        return h.get()
    if message == "StopProcess":
        return h.stop()
    if message == "_Close":
        return h.close()
    if message == "_RestartDue":
        h.ref.tell(_RestartDue(0))  # 0: never the token of a scheduled restart
        return None
    generation = h.generation + 1 if stale else h.generation
    if message == "ChildProcessCreated":
        h.created(generation=generation)
    else:
        h.terminated(generation=generation, how="exited", exit_status=0)
    return None


Scenario = Callable[[Callable[..., Harness], Mode, str], tuple[Harness, Callable[[], Any]]]
"""Builds a harness in the row's situation; returns it and what sends the row's message."""


def plain(make: Callable[..., Harness], mode: Mode, message: str) -> Any:
    h = make()
    into(h, mode)
    return h, lambda: send(h, message)


def stale(make: Callable[..., Harness], mode: Mode, message: str) -> Any:
    h = make()
    into(h, mode)
    return h, lambda: send(h, message, stale=True)


def closed_then_get(make: Callable[..., Harness], mode: Mode, message: str) -> Any:
    h = make()
    gate = h.hold()  # both reach the inbox before the close's own stop of the actor

    def go() -> Any:
        closer, getter = h.close(), h.get()
        gate.release()
        closer.get(timeout=WAIT)
        assert isinstance(_settled(getter), ControllerClosed)

    return h, go


def closing_then(make: Callable[..., Harness], mode: Mode, message: str) -> Any:
    h = make()
    h.get()
    if mode is Mode.STOPPING:
        h.created()
    h.close()
    assert h.sync() == mode
    return h, lambda: send(h, message)


def during_a_backoff(make: Callable[..., Harness], mode: Mode, message: str) -> Any:
    h = make(policy=RestartPolicy(initial_delay=NEVER, jitter=0.0))
    h.get()
    h.created()
    h.terminated(how="exited", exit_status=1)
    assert h.stats()["restart_pending"] is True
    return h, lambda: send(h, message)


def connection_lost(make: Callable[..., Harness], mode: Mode, message: str) -> Any:
    h = make()
    h.get()
    h.ref.tell(ChildProcessCreated(1, 4001, FakeConnection(1, closed=True)))
    assert h.sync() == "ready"
    return h, lambda: send(h, message)


def timer_fires(make: Callable[..., Harness], mode: Mode, message: str) -> Any:
    h = make(policy=RestartPolicy(initial_delay=0.001, jitter=0.0))
    h.get()
    h.created()

    def go() -> None:
        h.terminated(how="exited", exit_status=1)  # the backoff's timer tells _RestartDue
        h.factory.wait_for_launches(2)

    return h, go


SPECIAL: dict[Key, Scenario] = {
    (Mode.STOPPED, "GetProcess", Guard.CLOSING): closed_then_get,
    (Mode.STOPPED, "GetProcess", Guard.RESTART_PENDING): during_a_backoff,
    (Mode.READY, "GetProcess", Guard.CONNECTION_LOST): connection_lost,
    (Mode.STOPPING, "GetProcess", Guard.CLOSING): closing_then,
    (Mode.WAITING_READY, "GetProcess", Guard.CLOSING): closing_then,
    (Mode.STOPPING, "ChildProcessTerminated", Guard.CLOSING): closing_then,
    (Mode.WAITING_READY, "ChildProcessTerminated", Guard.CLOSING): closing_then,
    (Mode.STOPPED, "_RestartDue", None): timer_fires,
}


def scenario(key: Key) -> Scenario:
    if key in SPECIAL:
        return SPECIAL[key]
    guard = key[2]
    if guard is Guard.STALE:
        return stale
    # Without a pending restart, the timer's token 0 is stale in stopped too.
    assert guard is None or guard is Guard.STALE_TIMER, key
    return plain


def _settled(future: Any) -> Any:
    try:
        future.get(timeout=WAIT)
    except Exception as error:
        return error
    return outcome(future)


def test_every_special_situation_is_a_row_of_the_table() -> None:
    assert set(SPECIAL) <= set(ROWS)


@pytest.mark.parametrize(
    "key", sorted(ROWS, key=lambda k: (list(Mode).index(k[0]), k[1], str(k[2]))), ids=str
)
def test_row(make_harness: Callable[..., Harness], key: Key) -> None:
    mode, message, _ = key
    row = ROWS[key]
    build = scenario(key)
    ends_the_actor = (
        row.action is Action.FINISH_CLOSE
        or (row.action is Action.NOTHING_TO_STOP and message == "_Close")
        or build is closed_then_get
    )
    h, go = build(make_harness, mode, message)
    with structlog.testing.capture_logs() as logs:
        go()
        if ends_the_actor:
            assert h.ref.actor_stopped.wait(WAIT)
        else:
            h.sync()
    cause = CAUSE.get(message, message)
    changes = [
        (e["old"], e["new"]) for e in logs if e["event"] == "mode_changed" and e["cause"] == cause
    ]
    assert changes == ([] if row.next is mode else [(mode.value, row.next.value)])
    if row.action in ACTION_LOG:
        assert ACTION_LOG[row.action] in [e["event"] for e in logs]
