"""The connection's write path: one writer at a time (the others queue and the writer takes
their bytes along), the bound on bytes waiting to be written, a write that fails, and the
slots of ``max_in_flight``.

Each connection here writes into a function the test controls, so that a write can be held
in progress for as long as a case needs; nothing is timed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
import structlog.testing

from juicectl.connection import Connection, ConnectionLoss
from juicectl.exceptions import ProcessUnavailable, TooManyRequests
from juicectl.juice import Box, BoxParser, Bytes, Command, String, answer_bytes
from juicectl.policy import ConnectionOptions
from tests.callers.test_who_reads import wait_until

pytestmark = pytest.mark.timeout(60)

MIB = 1 << 20


class Put(Command):
    """A request with a body, answered with nothing."""

    arguments = [("body", Bytes())]


class Note(Command):
    """A small request."""

    arguments = [("text", String())]


class HeldChild:
    """The child's input as a function: the first write can be held until released; every
    write is recorded (whole, as the connection handed it)."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.hold_first = threading.Event()
        self.release = threading.Event()
        self.in_first_write = threading.Event()
        self.fail: BaseException | None = None
        self._parser = BoxParser()

    def write(self, data: bytes) -> None:
        first = not self.writes
        self.writes.append(data)
        if first and self.hold_first.is_set():
            self.in_first_write.set()
            assert self.release.wait(30), "the test never released the first write"
        if self.fail is not None:
            raise self.fail

    def requests(self) -> list[Box]:
        parser = BoxParser(self._parser.limits)
        return [box for data in self.writes for box in parser.feed(data)]


@pytest.fixture
def child() -> Iterator[HeldChild]:
    held = HeldChild()
    yield held
    held.release.set()


def connection_to(child: HeldChild, **options: Any) -> Connection:
    return Connection(child.write, pid=7, generation=1, options=ConnectionOptions(**options))


def answer(connection: Connection, box: Box) -> None:
    connection.data_received(answer_bytes(box["_ask"], Box()))


def in_thread(target: Any, *args: Any, **kwargs: Any) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, kwargs=kwargs, daemon=True)
    thread.start()
    return thread


def test_one_writer_at_a_time_and_it_takes_the_queue_along(child: HeldChild) -> None:
    connection = connection_to(child)
    child.hold_first.set()
    first = in_thread(connection.call, Note, text="first")
    assert child.in_first_write.wait(10)
    # While the first write is in progress, the others only queue their bytes...
    others = [connection.call(Note, text=f"queued {n}") for n in range(3)]
    assert len(child.writes) == 1
    child.release.set()
    first.join(10)
    # ...and the first writer writes them, all in one write, in the order they came.
    assert len(child.writes) == 2
    requests = child.requests()
    assert [box["text"] for box in requests] == ["first"] + [f"queued {n}" for n in range(3)]
    assert all(set(box) == {"_command", "_ask", "text"} for box in requests)  # bytes intact
    assert connection.stats()["sent"] == 4
    assert not any(future.done() for future in others)
    connection.connection_lost(ProcessUnavailable("the test ended"))


def test_lost_requests_tell_written_from_queued(child: HeldChild) -> None:
    connection = connection_to(child)
    child.hold_first.set()
    in_thread(connection.call_with, Note, {"text": "first"}, context="first")
    assert child.in_first_write.wait(10)
    for n in range(3):
        connection.call_with(Note, {"text": f"queued {n}"}, context=f"queued {n}")
    connection.connection_lost(ProcessUnavailable("gone"))
    lost = connection.lost_requests
    assert lost is not None
    assert [(request.future.context, request.written) for request in lost] == [
        ("first", True), ("queued 0", False), ("queued 1", False), ("queued 2", False)
    ]
    child.release.set()


def test_lost_requests_written_with_the_queue_count_as_written(child: HeldChild) -> None:
    connection = connection_to(child)
    child.hold_first.set()
    first = in_thread(connection.call_with, Note, {"text": "first"}, context="first")
    assert child.in_first_write.wait(10)
    for n in range(3):
        connection.call_with(Note, {"text": f"queued {n}"}, context=f"queued {n}")
    child.release.set()
    first.join(10)
    assert len(child.writes) == 2  # the queue went out with the first writer
    connection.connection_lost(ProcessUnavailable("gone"))
    lost = connection.lost_requests
    assert lost is not None
    assert [(request.future.context, request.written) for request in lost] == [
        ("first", True), ("queued 0", True), ("queued 1", True), ("queued 2", True)
    ]


def test_bytes_waiting_past_the_bound_refuse_a_request_naming_the_cause(
    child: HeldChild,
) -> None:
    connection = connection_to(child)
    child.hold_first.set()
    in_thread(connection.call, Note, text="first")
    assert child.in_first_write.wait(10)
    for _ in range(16):  # just over 16 MiB queued behind the write in progress: past the bound
        connection.call(Put, body=b"x" * MIB)
    with pytest.raises(TooManyRequests) as refused:
        connection.call(Note, text="one more")
    assert str(refused.value).startswith("child 7 is not reading its input: ")
    assert str(refused.value).endswith(" bytes wait to be written; Note not sent")
    child.release.set()
    wait_until(lambda: len(child.writes) == 2)
    # Once written, nothing waits: requests go again.
    connection.call(Note, text="after")
    connection.connection_lost(ProcessUnavailable("the test ended"))


def test_a_large_request_once_written_no_longer_counts_as_waiting(child: HeldChild) -> None:
    connection = connection_to(child)
    for _ in range(3):  # each alone is past the bound while it is written, not after
        future = connection.call(Put, body=b"x" * (17 * MIB))
        (box,) = child.requests()[-1:]
        answer(connection, box)
        assert future.get(timeout=10) == {}
    connection.call(Note, text="after")
    connection.connection_lost(ProcessUnavailable("the test ended"))


def test_many_writes_in_all_never_add_up_to_the_bound(child: HeldChild) -> None:
    connection = connection_to(child)
    for _ in range(40):  # 40 MiB written in all, one at a time
        future = connection.call(Put, body=b"x" * MIB)
        answer(connection, child.requests()[-1])
        assert future.get(timeout=10) == {}
    connection.connection_lost(ProcessUnavailable("the test ended"))


def test_a_failed_write_ends_a_connection_without_an_owner_naming_the_cause(
    child: HeldChild,
) -> None:
    child.fail = BrokenPipeError(32, "Broken pipe")
    with structlog.testing.capture_logs() as logs:
        connection = connection_to(child)
        future = connection.call(Note, text="never read")
    with pytest.raises(ProcessUnavailable) as failed:
        future.get(timeout=10)
    assert str(failed.value) == "cannot write to child 7: [Errno 32] Broken pipe"
    assert connection.closed
    written = [entry for entry in logs if entry["event"] == "write_failed"]
    assert written == [
        {**written[0], "event": "write_failed", "error": "[Errno 32] Broken pipe",
         "log_level": "debug"}
    ]
    # Later requests fail at once with the same reason; nothing more is written.
    later = connection.call(Note, text="later")
    with pytest.raises(ProcessUnavailable, match="cannot write to child 7"):
        later.get(timeout=10)
    assert len(child.writes) == 1


def test_a_failed_write_is_reported_to_the_owner_once(child: HeldChild) -> None:
    losses: list[ConnectionLoss] = []
    child.fail = BrokenPipeError(32, "Broken pipe")
    connection = Connection(child.write, pid=7, generation=1, on_lost=losses.append)
    connection.call(Note, text="one")
    connection.call(Note, text="two")
    assert [loss.cause for loss in losses] == ["write_failed"]
    assert losses[0].error is child.fail
    connection.connection_lost(ProcessUnavailable("the owner ended it"))


def test_a_full_connection_refuses_or_waits_for_a_slot(child: HeldChild) -> None:
    connection = connection_to(child, max_in_flight=2)
    first = connection.call(Note, text="one")
    connection.call(Note, text="two")
    with pytest.raises(TooManyRequests) as refused:
        connection.call(Note, text="three", wait_for_slot=False)
    assert str(refused.value) == "2 requests already in flight to child 7; Note not sent"
    with pytest.raises(TooManyRequests) as timed_out:
        connection.call(Note, text="three", timeout=0.2)
    assert str(timed_out.value) == (
        "no free slot within 0.2s (2 requests in flight to child 7); Note not sent"
    )
    # A caller waiting for a slot gets one when an answer frees it.
    got: list[object] = []
    waiting = in_thread(lambda: got.append(connection.call(Note, text="three", timeout=10)))
    wait_until(lambda: connection._slot_waiters == 1)
    answer(connection, child.requests()[0])
    assert first.get(timeout=10) == {}
    waiting.join(10)
    assert len(got) == 1 and [box["text"] for box in child.requests()][-1] == "three"
    connection.connection_lost(ProcessUnavailable("the test ended"))


def test_a_caller_waiting_for_a_slot_learns_when_the_connection_ends(child: HeldChild) -> None:
    connection = connection_to(child, max_in_flight=1)
    connection.call(Note, text="one")
    got: list[Any] = []
    waiting = in_thread(lambda: got.append(connection.call(Note, text="two", timeout=30)))
    wait_until(lambda: connection._slot_waiters == 1)
    connection.connection_lost(ProcessUnavailable("gone"))
    waiting.join(10)
    assert not waiting.is_alive()
    (future,) = got
    with pytest.raises(ProcessUnavailable, match="gone"):
        future.get(timeout=0)
    assert len(child.requests()) == 1  # the second was never written


class Tell(Command):
    """A request that wants no answer."""

    arguments = [("text", String())]
    requires_answer = False


def test_a_request_without_an_answer_is_done_once_written_or_fails_once_closed(
    child: HeldChild,
) -> None:
    connection = connection_to(child)
    assert connection.call(Tell, text="sent").get(timeout=0) == {}
    assert [box["text"] for box in child.requests()] == ["sent"]
    connection.connection_lost(ProcessUnavailable("gone"))
    late = connection.call(Tell, text="late")
    with pytest.raises(ProcessUnavailable, match=r"^gone$"):
        late.get(timeout=0)
    answered = connection.call(Note, text="late too")
    with pytest.raises(ProcessUnavailable, match=r"^gone$"):
        answered.get(timeout=0)
    assert len(child.requests()) == 1


@pytest.mark.parametrize("command", [Note, Tell])
def test_a_future_of_the_callers_on_a_closed_connection_is_refused_untouched(
    child: HeldChild, command: type[Command]
) -> None:
    from juicectl._reading import RequestFuture

    connection = connection_to(child)
    connection.connection_lost(ProcessUnavailable("gone"))
    future = RequestFuture()
    with pytest.raises(ProcessUnavailable) as refused:
        connection.call_with(command, {"text": "x"}, future=future)
    assert str(refused.value) == "gone"
    assert not future.done()


def test_a_timeout_of_zero_is_refused_before_anything_is_written(child: HeldChild) -> None:
    from juicectl.juice import ArgumentError

    connection = connection_to(child)
    for timeout in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ArgumentError, match=r"^Note not sent: "):
            connection.call(Note, text="x", timeout=timeout)
    assert child.writes == []
    connection.connection_lost(ProcessUnavailable("the test ended"))


def test_every_caller_waiting_for_a_slot_gets_one_as_answers_free_them(
    child: HeldChild,
) -> None:
    connection = connection_to(child, max_in_flight=2)
    connection.call(Note, text="one")
    connection.call(Note, text="two")
    got: list[object] = []
    # call_with waits for a slot by default, as call() does.
    waiting = [
        in_thread(lambda n=n: got.append(connection.call_with(Note, {"text": f"waits {n}"})))
        for n in range(2)
    ]
    wait_until(lambda: connection._slot_waiters == 2)
    for box in child.requests()[:2]:
        answer(connection, box)
    for thread in waiting:
        thread.join(10)
        assert not thread.is_alive(), "a caller still waits for a slot an answer freed"
    assert len(got) == 2
    assert sorted(box["text"] for box in child.requests()[2:]) == ["waits 0", "waits 1"]
    connection.connection_lost(ProcessUnavailable("the test ended"))
