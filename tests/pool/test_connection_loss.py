"""What a connection tells its owner at a loss: the requests outstanding, in write order, each
written or not; nothing written after the loss; and what the child said of its concurrency."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from juicectl import ProcessUnavailable
from juicectl.connection import Connection
from juicectl.juice import Box, BoxParser, Command, String, answer_bytes

pytestmark = pytest.mark.timeout(30)


class Echo(Command):
    arguments = [("value", String())]
    response = [("value", String())]


def tags_of(data: list[bytes]) -> list[str]:
    return [box["_ask"] for box in BoxParser().feed(b"".join(data))]


def test_lost_requests_is_none_while_open() -> None:
    connection = Connection(lambda data: None, pid=1, generation=1, on_lost=lambda loss: None)
    connection.call(Echo, value="a")
    assert connection.lost_requests is None


def test_lost_requests_in_write_order_with_their_context() -> None:
    written: list[bytes] = []
    connection = Connection(written.append, pid=1, generation=1, on_lost=lambda loss: None)
    futures = [connection.call_with(Echo, {"value": str(i)}, context=i) for i in range(5)]
    connection.data_received(answer_bytes(tags_of(written)[1], Box(value="1")))
    connection.connection_lost(ProcessUnavailable("gone"))
    lost = connection.lost_requests
    assert lost is not None
    assert [entry.future.context for entry in lost] == [0, 2, 3, 4]
    assert all(entry.written for entry in lost)
    assert [entry.future.seq for entry in lost] == [0, 2, 3, 4]
    for entry in lost:
        with pytest.raises(ProcessUnavailable):
            entry.future.get(timeout=0)
    assert futures[1].get(timeout=0) == {"value": "1"}


class BlockingTransport:
    """A transport whose first write waits for ``release``: later requests queue behind it."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.entered = threading.Event()
        self.release = threading.Event()

    def write(self, data: bytes, wait_for_room: Any) -> None:
        if not self.written and not self.entered.is_set():
            self.entered.set()
            assert self.release.wait(10)
        self.written.append(data)

    def close(self) -> None:
        pass


def test_requests_queued_behind_a_write_are_unwritten_and_never_written_after_the_loss() -> None:
    transport = BlockingTransport()
    connection = Connection(transport, pid=1, generation=1, on_lost=lambda loss: None)
    first: list[Any] = []
    writer = threading.Thread(
        target=lambda: first.append(connection.call_with(Echo, {"value": "a"}, context="a"))
    )
    writer.start()
    assert transport.entered.wait(10)
    # The first write is in progress: these two queue behind it.
    connection.call_with(Echo, {"value": "b"}, context="b")
    connection.call_with(Echo, {"value": "c"}, context="c")
    connection.connection_lost(ProcessUnavailable("gone"))
    transport.release.set()
    writer.join(10)
    lost = connection.lost_requests
    assert lost is not None
    assert [(entry.future.context, entry.written) for entry in lost] == [
        ("a", True), ("b", False), ("c", False)
    ]
    # Nothing queued before the loss went out after it.
    assert tags_of(transport.written) == ["1"]


def test_a_request_after_the_loss_is_refused_and_not_among_the_lost() -> None:
    written: list[bytes] = []
    connection = Connection(written.append, pid=1, generation=1, on_lost=lambda loss: None)
    connection.connection_lost(ProcessUnavailable("gone"))
    late = connection.call(Echo, value="late")
    with pytest.raises(ProcessUnavailable):
        late.get(timeout=0)
    assert connection.lost_requests == ()
    assert written == []


def negotiate_with(answer_fields: dict[str, str]) -> Connection:
    written: list[bytes] = []
    connection = Connection(written.append, pid=1, generation=1, on_lost=lambda loss: None)
    future = connection.negotiate(timeout=5)
    (request,) = BoxParser().feed(b"".join(written))
    assert request["_command"] == "Negotiate" and request["versions"] == "1"
    connection.data_received(answer_bytes(request["_ask"], Box(answer_fields)))
    assert future.get(timeout=5) == 1
    return connection


def test_negotiate_learns_the_concurrency_the_child_declares() -> None:
    assert negotiate_with({"version": "1", "concurrency": "1"}).peer_concurrency == 1
    assert negotiate_with({"version": "1", "concurrency": "4"}).peer_concurrency == 4


def test_negotiate_with_a_peer_that_does_not_say() -> None:
    # The reference peer answers the version alone: nothing is assumed.
    assert negotiate_with({"version": "1"}).peer_concurrency is None
