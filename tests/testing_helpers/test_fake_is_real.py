"""The fake is the real controller: one scenario, run against a ``ProcessController`` on a
child process and against a ``FakeController``, gives the same events, hooks, figures and
results.

The scenario: start, two calls, a SIGKILL from outside (``os.kill`` for the process,
``kill_child()`` in memory), the automatic restart, a call to the new child, a stop, a close.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pykka
import pytest

from juicectl import ProcessController, RestartPolicy
from juicectl.aio import AsyncProcessController
from juicectl.connection import Connection
from juicectl.messages import GaveUp, ModeChanged, ProcessStarted, ProcessTerminated
from juicectl.testing import ControllerFactory, FakeController
from tests.supervision.conftest import Events, wait_for
from tests.workers.commands import Echo
from tests.workers.echo import EchoWorker

POLICY = RestartPolicy(initial_delay=0.01, jitter=0.0)
TIMEOUTS: dict[str, Any] = {"startup_timeout": 10.0, "stop_timeout": 3.0, "kill_timeout": 1.0}

#: Figures that differ between a process and an in-memory child by nature.
BY_NATURE = {"pid", "uptime", "name"}


@dataclass
class Story:
    """What one run of the scenario showed."""

    events: list[tuple[Any, ...]]
    startups: int
    terminations: int
    figures: list[dict[str, Any]]
    stopped: str
    closed: str | None


class Counter:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.count = 0

    def __call__(self) -> None:
        with self.lock:
            self.count += 1


def told(event: object) -> tuple[Any, ...]:
    """An event, without what a process and an in-memory child cannot share (pid, names)."""
    if isinstance(event, ModeChanged):
        return ("ModeChanged", event.old, event.new, event.cause, event.generation)
    if isinstance(event, ProcessStarted):
        return ("ProcessStarted", event.generation)
    if isinstance(event, ProcessTerminated):
        reason = event.reason
        return ("ProcessTerminated", event.generation, reason.how, reason.signal,
                reason.requested)
    if isinstance(event, GaveUp):
        return ("GaveUp", event.restarts)
    return (type(event).__name__,)


def scenario(
    start: Callable[..., Any], kill: Callable[[Any, Connection], None]
) -> Story:
    events = Events()
    startups, terminations = Counter(), Counter()
    ctl = start(
        restart=POLICY,
        subscribers=[events.ref],
        on_process_startup=startups,
        on_process_termination=terminations,
        **TIMEOUTS,
    )
    figures = [ctl.stats()]
    connection = ctl.get_process().get(timeout=10)
    assert ctl.call(Echo, value="a", timeout=10) == {"value": "a"}
    assert connection.call(Echo, value="b").get(timeout=10) == {"value": "b"}
    figures.append(ctl.stats())
    kill(ctl, connection)
    events.wait(ProcessStarted, 2)  # the restart's child is ready
    assert ctl.call(Echo, value="c", timeout=10) == {"value": "c"}
    figures.append(ctl.stats())
    stopped = ctl.stop_process().get(timeout=10).how
    figures.append(ctl.stats())
    closed = ctl.close()
    figures.append(ctl.stats())
    wait_for(lambda: startups.count == 2 and terminations.count == 1)
    # Subscribers hear of a change after the caller's future resolves, in their own time: the
    # stop's last event may still be on its way to the recorder.
    wait_for(lambda: ("stopping", "stopped") in events.modes(), 10.0, "the stop's last event")
    story = Story(
        events=[told(event) for event in events.of(object)],
        startups=startups.count,
        terminations=terminations.count,
        figures=figures,
        stopped=stopped,
        closed=closed.how if closed is not None else None,
    )
    events.ref.stop()
    return story


def kill_the_process(_ctl: ProcessController, connection: Connection) -> None:
    os.kill(connection.pid, signal.SIGKILL)


def kill_in_memory(ctl: FakeController, _connection: Connection) -> None:
    ctl.kill_child()


@pytest.fixture
def stories(juicectl_controller: ControllerFactory) -> tuple[Story, Story]:
    real = scenario(lambda **options: juicectl_controller(EchoWorker, **options),
                    kill_the_process)
    fake = scenario(lambda **options: FakeController(EchoWorker, **options), kill_in_memory)
    return real, fake


def test_the_same_events_in_the_same_order(stories: tuple[Story, Story]) -> None:
    real, fake = stories
    assert fake.events == real.events
    # What the scenario must have shown, so that the comparison means something.
    assert real.events == [
        ("ModeChanged", "stopped", "starting", "GetProcess", 1),
        ("ModeChanged", "starting", "ready", "ChildProcessCreated", 1),
        ("ProcessStarted", 1),
        ("ModeChanged", "ready", "stopped", "ChildProcessTerminated", 1),
        ("ProcessTerminated", 1, "signaled", signal.SIGKILL, False),
        ("ModeChanged", "stopped", "starting", "restart", 2),
        ("ModeChanged", "starting", "ready", "ChildProcessCreated", 2),
        ("ProcessStarted", 2),
        ("ModeChanged", "ready", "stopping", "StopProcess", 2),
        ("ModeChanged", "stopping", "stopped", "ChildProcessTerminated", 2),
    ]


def test_the_same_hooks_and_results(stories: tuple[Story, Story]) -> None:
    real, fake = stories
    assert (fake.startups, fake.terminations) == (real.startups, real.terminations) == (2, 1)
    assert (fake.stopped, fake.closed) == (real.stopped, real.closed) == ("clean", "not_running")


def test_the_same_figures(stories: tuple[Story, Story]) -> None:
    real, fake = stories
    for real_figures, fake_figures in zip(real.figures, fake.figures, strict=True):
        assert set(fake_figures) == set(real_figures)
        same = {key: value for key, value in real_figures.items() if key not in BY_NATURE}
        fake_same = {key: value for key, value in fake_figures.items() if key not in BY_NATURE}
        for figures in (same, fake_same):
            if figures["last_exit"] is not None:
                figures["last_exit"] = {**figures["last_exit"], "description": "..."}
        assert fake_same == same
    # Before and after close, one shape.
    assert set(real.figures[0]) == set(real.figures[-1])
    assert (real.figures[0]["closed"], real.figures[-1]["closed"]) == (False, True)
    assert (real.figures[2]["generation"], real.figures[2]["restarts"]) == (2, 1)


def test_a_fake_ends_with_stop_all_as_the_real_one_does() -> None:
    ctl = FakeController(EchoWorker, on_process_termination=lambda: None)
    child = ctl.get_process().get(timeout=10)
    pykka.ActorRegistry.stop_all(timeout=30)
    result = ctl.close()
    assert result is not None and result.how == "clean"
    stats = ctl.stats()
    assert stats["closed"] is True
    assert (stats["last_exit"]["how"], stats["last_exit"]["requested"]) == ("clean", True)
    assert child.closed
    assert not ctl.children[-1].alive


@pytest.mark.asyncio
async def test_the_asyncio_forms_take_a_fake() -> None:
    async with AsyncProcessController(FakeController(EchoWorker)) as ctl:
        assert await ctl.call(Echo, value="hi", timeout=10) == {"value": "hi"}
        assert await ctl.mode() == "ready"
        assert (await ctl.stop_process(timeout=10)).how == "clean"
    assert (await ctl.stats())["closed"] is True
