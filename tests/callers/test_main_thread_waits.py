"""Ctrl-C on the main thread raises in each of the connection's waits, and loses nothing.

Each case waits on the main thread in one way, with the child held back (``Block``) so that
the wait cannot end by itself, and is interrupted by a signal handled off the main thread
(``tests.main_thread``): the handler runs only when the wait comes back to Python, which a
wait cut into slices does at once. Then: the role is let go, the connection goes on where the
bytes allow it, and where a write was cut, the connection ends (nothing is left flushing for
ever, every request fails).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import structlog.testing

from juicectl import _reading as reading_module
from juicectl._future import ReplyFuture
from juicectl._reading import Role
from juicectl.connection import ConnectionLoss
from juicectl.exceptions import ProcessUnavailable
from juicectl.testing import InMemoryChild, connect
from tests.callers.test_no_stall import callers_read
from tests.callers.test_who_reads import wait_until
from tests.main_thread import Interrupted, interrupted_in
from tests.workers.runtime import Block, Echo, TestWorker

BOUND = 20.0
BIG = "x" * 60_000
IN_FLIGHT = 64
#: Why the requests of a connection whose write was cut fail.
CUT = (r"a write to the child's input was interrupted \(Interrupted\): it may hold part of a "
       r"request")


@pytest.fixture(autouse=True)
def long_park(monkeypatch: pytest.MonkeyPatch) -> None:
    # The reader thread, once parked, stays so unless asked back: the waits here are the
    # main thread's alone.
    monkeypatch.setattr(reading_module, "PARK", 600.0)


@pytest.fixture
def pair() -> Iterator[InMemoryChild]:
    child = connect(TestWorker)
    try:
        yield child
    finally:
        child.worker.release.set()  # type: ignore[attr-defined]
        child.kill("the test ended")
        child.stop()


def release(child: InMemoryChild) -> None:
    child.worker.release.set()  # type: ignore[attr-defined]


def test_a_caller_reading_its_answer(pair: InMemoryChild) -> None:
    connection = pair.connection
    callers_read(pair)
    blocked = connection.call(Block)
    with pytest.raises(Interrupted), interrupted_in("_read_for", lambda: release(pair)) as seen:
        blocked.get()
    assert seen.raised_before_release
    # It let go of the role; the request still runs, and its answer comes.
    assert connection._reading.role is Role.FREE
    release(pair)
    assert blocked.get(timeout=BOUND) == {"released": True}
    assert connection.call(Echo, value="after").get(timeout=BOUND) == {"value": "after"}


def test_a_caller_waiting_behind_another_reader(pair: InMemoryChild) -> None:
    # The reader thread holds the role (nobody parked it): the caller waits on its future.
    connection = pair.connection
    blocked = connection.call(Block)
    with pytest.raises(Interrupted), interrupted_in("acquire", lambda: release(pair)) as seen:
        blocked.get(timeout=3600)
    assert seen.raised_before_release
    release(pair)
    assert blocked.get(timeout=BOUND) == {"released": True}


def test_a_writer_at_a_full_pipe_ends_the_connection(
    pair: InMemoryChild, monkeypatch: pytest.MonkeyPatch
) -> None:
    connection = pair.connection
    callers_read(pair)
    losses: list[ConnectionLoss] = []
    tell_owner = connection._on_lost
    assert tell_owner is not None

    def recorded(loss: ConnectionLoss) -> None:
        losses.append(loss)
        tell_owner(loss)

    monkeypatch.setattr(connection, "_on_lost", recorded)
    blocked = connection.call(Block)  # the child reads nothing more until released
    futures: list[ReplyFuture[dict[str, Any]]] = []
    with structlog.testing.capture_logs() as logs, pytest.raises(Interrupted), \
            interrupted_in("_read_until_room", lambda: release(pair)) as seen:
        for _ in range(IN_FLIGHT):
            futures.append(connection.call(Echo, value=BIG))
    assert seen.raised_before_release
    warned = [entry for entry in logs if entry["event"] == "write_interrupted"]
    assert [(entry["log_level"], entry["error"]) for entry in warned] == [
        ("warning", "Interrupted")
    ]
    assert connection._reading.role is not Role.CALLER  # let go
    # The owner is told the child's input broke (the process actor then ends the child).
    assert [loss.cause for loss in losses] == ["write_failed"]
    assert isinstance(losses[0].error, InterruptedError)
    # Part of a request may be in the pipe: the connection ended, and every request fails.
    wait_until(lambda: connection.closed)
    for future in [blocked, *futures]:
        with pytest.raises(ProcessUnavailable, match=CUT):
            future.get(timeout=BOUND)
    with pytest.raises(ProcessUnavailable):
        connection.call(Echo, value="after").get(timeout=BOUND)


def test_a_callback_writing_while_its_thread_reads(pair: InMemoryChild) -> None:
    # The main thread reads; a callback run by that read writes more than the pipes hold
    # while the child reads nothing. The write goes on in a helper thread, so the callback
    # returns and the main thread goes back to reading, where Ctrl-C finds it: nothing is
    # lost, and every request is answered once the child reads again.
    connection = pair.connection
    callers_read(pair)
    sent: list[ReplyFuture[dict[str, Any]]] = []
    trigger = connection.call(Echo, value="trigger")
    blocked = connection.call(Block)

    def send_more(_: object) -> None:
        sent.extend(connection.call(Echo, value=BIG) for _ in range(IN_FLIGHT))

    ReplyFuture.add_done_callback(trigger, send_more)
    with pytest.raises(Interrupted), \
            interrupted_in("_read_for", lambda: release(pair)) as seen:
        blocked.get(timeout=3600)
    assert seen.raised_before_release
    assert len(sent) == IN_FLIGHT  # the callback did not wait for room
    assert connection._reading.role is not Role.CALLER
    release(pair)
    assert blocked.get(timeout=BOUND) == {"released": True}
    assert [future.get(timeout=BOUND) for future in sent] == [{"value": BIG}] * IN_FLIGHT
