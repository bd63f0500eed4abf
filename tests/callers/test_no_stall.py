"""No stall: whatever writes to the child and meets a full pipe makes sure the child's output
is read meanwhile.

The children here read their next request only once their previous answers are out: a
sequential worker writes the answers of what it read (blocking) before it reads again, and a
60,000-byte answer nearly fills a pipe, so the next one waits until the parent has read it.
Sixty-four such requests in flight from one caller are far more than the two pipes hold. The
reader thread's park is made 30 s long: a writer that merely blocked, leaving the reading to a
parked reader thread, would hang for that long, and fail the bounded waits below (which only
bound a broken test; nothing here is timed).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from juicectl import _reading as reading_module
from juicectl._future import ReplyFuture
from juicectl._reading import Role
from juicectl.connection import Connection
from juicectl.testing import ControllerFactory, InMemoryChild, connect
from tests.callers.test_who_reads import wait_until
from tests.workers.runtime import Block, Echo, Sleep, TestWorker

#: Long enough that a stall waiting for the parked reader thread fails every bounded wait.
LONG_PARK = 30.0
#: The bound on each test's work: far over what it takes, well under LONG_PARK.
BOUND = 20.0
BIG = "x" * 60_000
IN_FLIGHT = 64


@pytest.fixture(autouse=True)
def long_park(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reading_module, "PARK", LONG_PARK)


def finishes(work: Callable[[], object], bound: float = BOUND) -> Any:
    """Run ``work`` on a thread of its own; return what it returned, or fail if it has not
    finished within ``bound`` seconds (a daemon thread: a stuck one cannot hold the run)."""
    outcome: list[Any] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            outcome.append(work())
        except BaseException as error:
            errors.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(bound)
    assert not thread.is_alive(), f"still writing or waiting after {bound} s: a stall"
    if errors:
        raise errors[0]
    return outcome[0]


def callers_read(child: InMemoryChild) -> None:
    """Settle into the state where callers read: a caller waits behind the reader thread
    (which holds the role from the start) for an answer the test lets come only once it
    waits; the reader thread reads it, then parks (for LONG_PARK, unless asked back)."""
    connection = child.connection
    blocked = connection.call(Block)

    def release_once_waited_for() -> None:
        wait_until(lambda: connection._reading.watchers == 1)
        child.worker.release.set()  # type: ignore[attr-defined]

    threading.Thread(target=release_once_waited_for, daemon=True).start()
    assert blocked.get(timeout=BOUND) == {"released": True}
    child.worker.release.clear()  # type: ignore[attr-defined]
    wait_until(lambda: connection._reading.role is Role.FREE)


def many_big_echoes(connection: Connection) -> list[dict[str, Any]]:
    """IN_FLIGHT large requests sent at once from this thread, then every answer."""
    futures = [connection.call(Echo, value=BIG) for _ in range(IN_FLIGHT)]
    return [future.get(timeout=BOUND) for future in futures]


@contextlib.contextmanager
def served(worker: type) -> Iterator[InMemoryChild]:
    """An in-memory pair, ended as a lost connection: that asks the parked reader thread back
    at once, to read the end of the child's output (a clean stop would leave that to the
    park's end, 30 s away)."""
    child = connect(worker)
    try:
        yield child
    finally:
        child.kill("the test ended")
        child.stop()


@pytest.fixture
def pair() -> Iterator[InMemoryChild]:
    with served(TestWorker) as child:
        yield child


def test_many_large_values_in_flight_from_one_caller_to_a_child_process(
    juicectl_controller: ControllerFactory,
) -> None:
    ctl = juicectl_controller(TestWorker)
    connection = ctl.get_process().get(timeout=BOUND)
    # The readiness probe waited behind the reader thread, which then parked; if the probe's
    # answer came before it waited, a caller that waits (for longer than it takes to start
    # waiting) does the same.
    while connection._reading.role is not Role.FREE:
        assert connection.call(Sleep, seconds=0.2).get(timeout=BOUND) == {}
    answers = finishes(lambda: many_big_echoes(connection))
    assert answers == [{"value": BIG}] * IN_FLIGHT


def test_many_large_values_in_flight_from_one_caller_to_an_in_memory_child(
    pair: InMemoryChild,
) -> None:
    callers_read(pair)
    answers = finishes(lambda: many_big_echoes(pair.connection))
    assert answers == [{"value": BIG}] * IN_FLIGHT


def test_a_writer_at_a_full_pipe_reads_the_answers_itself(
    pair: InMemoryChild, monkeypatch: pytest.MonkeyPatch
) -> None:
    connection = pair.connection
    callers_read(pair)
    readers: set[int] = set()
    real_read = reading_module.os.read

    def read(fd: int, size: int) -> bytes:
        # The reads of the connection's side (the child runtime reads with os.read as it was
        # when it started: not seen here).
        readers.add(threading.get_ident())
        return real_read(fd, size)

    monkeypatch.setattr(reading_module.os, "read", read)
    sender: list[int] = []

    def send() -> list[ReplyFuture[dict[str, Any]]]:
        sender.append(threading.get_ident())
        return [connection.call(Echo, value=BIG) for _ in range(IN_FLIGHT)]

    futures = finishes(send)
    # Nobody else read: the reader thread is parked, and no caller waits in get().
    assert readers == set(sender)
    answers = finishes(lambda: [future.get(timeout=BOUND) for future in futures])
    assert answers == [{"value": BIG}] * IN_FLIGHT


def test_a_callback_that_writes_while_its_thread_reads_finishes(pair: InMemoryChild) -> None:
    # A future's callback runs on the thread that reads its answer (here a caller), and sends
    # more large requests than the pipes hold: that thread must read while it writes, and
    # keep the order of what it reads for the read it interrupted.
    connection = pair.connection
    callers_read(pair)
    sent: list[ReplyFuture[dict[str, Any]]] = []
    trigger = connection.call(Echo, value="trigger")
    ReplyFuture.add_done_callback(
        trigger,
        lambda _: sent.extend(connection.call(Echo, value=f"{n}{BIG}") for n in range(IN_FLIGHT)),
    )
    mine = connection.call(Echo, value="mine")
    assert finishes(lambda: mine.get(timeout=BOUND)) == {"value": "mine"}
    assert len(sent) == IN_FLIGHT
    answers = finishes(lambda: [future.get(timeout=BOUND) for future in sent])
    assert answers == [{"value": f"{n}{BIG}"} for n in range(IN_FLIGHT)]


def test_a_callback_that_writes_on_the_reader_thread_finishes(pair: InMemoryChild) -> None:
    # The same from the reader thread itself (a future with a callback is read by it), with
    # nobody else reading: without reading while it writes, it would wait for ever.
    connection = pair.connection
    sent: list[ReplyFuture[dict[str, Any]]] = []
    done = threading.Event()

    def send_more(_: object) -> None:
        sent.extend(connection.call(Echo, value=f"{n}{BIG}") for n in range(IN_FLIGHT))
        done.set()

    connection.call(Echo, value="trigger").add_done_callback(send_more)
    assert done.wait(BOUND), "the reader thread is stuck writing"
    answers = finishes(lambda: [future.get(timeout=BOUND) for future in sent])
    assert answers == [{"value": f"{n}{BIG}"} for n in range(IN_FLIGHT)]


def test_a_writer_behind_a_reading_caller_gets_its_bytes_out_after_it_leaves(
    pair: InMemoryChild,
) -> None:
    # One caller holds the role, reading for the answer to a Sleep (the child reads nothing
    # meanwhile); another starts writing many large requests, meets the full pipe, and waits
    # behind the one reading. The Sleep's answer comes, and the reading caller leaves with the
    # pipe still full: the writer, counted as a watcher, has the reader thread take over.
    # A future waited on by a callback meanwhile is a second watcher. Once all is answered
    # nobody is counted as waiting, and the reader thread, having served a writer that waited
    # behind it, parks again.
    connection = pair.connection
    callers_read(pair)
    slept = connection.call(Sleep, seconds=1.0)
    reading = threading.Thread(target=slept.get, kwargs={"timeout": BOUND}, daemon=True)
    reading.start()
    wait_until(lambda: connection._reading.role is Role.CALLER)
    watched = connection.call(Echo, value="watched")
    called = threading.Event()
    watched.add_done_callback(lambda _: called.set())
    futures = finishes(lambda: [connection.call(Echo, value=BIG) for _ in range(IN_FLIGHT)])
    reading.join(BOUND)
    answers = finishes(lambda: [future.get(timeout=BOUND) for future in futures])
    assert answers == [{"value": BIG}] * IN_FLIGHT
    assert called.wait(BOUND) and watched.get(timeout=0) == {"value": "watched"}
    wait_until(lambda: connection._reading.watchers == 0)
    wait_until(lambda: connection._reading.role is Role.FREE)
