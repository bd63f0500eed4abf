"""What the child cannot take is refused before it is written: that call alone fails, with
``LimitExceeded`` naming the field, its size and the limit; the child and the other requests
go on, and refusing costs no copy of the value.

Before, ``conn.call(Echo, value="x" * 50_000_000)`` was written whole; the child refused the
line (``max_line_length``) and exited, every request in flight failed with the transient
``ProcessUnavailable`` (so a retry loop killed the next child too), and the parent's memory
grew by several copies of the value.
"""

from __future__ import annotations

import gc
import sys
import threading
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from juicectl import Connection, ProcessController, ProcessUnavailable
from juicectl.juice import (
    LIMIT_EXCEEDED_CODE,
    BoxParser,
    Command,
    ErrorAnswer,
    LimitExceeded,
    Limits,
    RemoteJuiceError,
    String,
    classify,
    request_bytes,
)
from juicectl.policy import ConnectionOptions
from tests.child.limit_workers import Echo, Grow, Wait

ROOT = Path(__file__).resolve().parent.parent.parent
WORKER = [sys.executable, "-m", "juicectl.child", "tests.child.limit_workers:LimitWorker"]
#: A line of "Value: " and this many characters is exactly the default max_line_length.
AT_LIMIT = Limits().max_line_length - len("Value: ")


class Note(Command):
    arguments = [("value", String())]
    requires_answer = False


@pytest.fixture
def controller() -> Iterator[ProcessController]:
    with ProcessController.start(WORKER, name="limits", cwd=str(ROOT)) as ctl:
        yield ctl


def test_a_value_past_the_childs_limit_fails_alone(controller: ProcessController) -> None:
    conn = controller.get_process().get(timeout=30)
    pid, sent = conn.pid, conn.stats()["sent"]  # the readiness probe was one
    in_flight = [conn.call(Wait, seconds=0.2)] + [
        conn.call(Echo, value=f"v{i}") for i in range(8)
    ]
    with pytest.raises(LimitExceeded) as refused:
        conn.call(Echo, value="x" * 5_000_000)
    message = str(refused.value)
    assert message.startswith("Echo not sent: field 'value' is 5,000,000 bytes")
    assert "max_line_length (1,048,576 bytes)" in message and "'body'" in message
    # The others are answered by the same child, which goes on.
    assert [f.get(timeout=30) for f in in_flight[1:]] == [{"value": f"v{i}"} for i in range(8)]
    assert conn.call(Echo, value="after").get(timeout=30) == {"value": "after"}
    assert conn.pid == pid and not conn.closed
    assert conn.stats() == {
        "sent": sent + 10, "answered": sent + 10, "failed": 0, "in_flight": 0
    }


def test_both_ends_meet_at_the_default_limit(controller: ProcessController) -> None:
    conn = controller.get_process().get(timeout=30)
    # The child's default limits are the parent's: a line of exactly max_line_length goes
    # there and back (the answer's line is the same size).
    value = "x" * AT_LIMIT
    assert conn.call(Echo, value=value).get(timeout=30) == {"value": value}
    with pytest.raises(LimitExceeded):
        conn.call(Echo, value=value + "x")
    # And the child refuses an answer one byte past the parent's limit, keeping the
    # conversation: an error answer, not a dead child.
    assert conn.call(Grow, size=AT_LIMIT).get(timeout=30) == {"value": value}
    with pytest.raises(RemoteJuiceError) as refused:
        conn.call(Grow, size=AT_LIMIT + 1).get(timeout=30)
    assert refused.value.code == LIMIT_EXCEEDED_CODE
    assert "field 'value'" in refused.value.description
    assert conn.call(Echo, value="on").get(timeout=30) == {"value": "on"}
    assert not conn.closed


def written_to(writes: list[bytes], **options: Any) -> Connection:
    return Connection(writes.append, pid=0, generation=1, options=ConnectionOptions(**options))


@pytest.mark.parametrize("how", ["call", "with a timeout", "no answer wanted"])
def test_refusing_costs_no_copy_of_the_value(how: str) -> None:
    writes: list[bytes] = []
    conn = written_to(writes)
    size = 20_000_000
    value = "x" * size
    gc.collect()
    tracemalloc.start()
    try:
        with pytest.raises(LimitExceeded):
            if how == "call":
                conn.call(Echo, value=value)
            elif how == "with a timeout":
                conn.call(Echo, value=value, timeout=5)
            else:
                conn.call(Note, value=value)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Serializing it would have copied it (20 MB) at least twice: the line, the bytes.
    assert peak < size // 20, f"{peak:,} bytes allocated to refuse a value of {size:,}"
    assert writes == []
    assert conn.stats() == {"sent": 0, "answered": 0, "failed": 0, "in_flight": 0}


def test_a_refused_request_frees_its_slot() -> None:
    writes: list[bytes] = []
    conn = written_to(writes, max_in_flight=1)
    with pytest.raises(LimitExceeded):
        conn.call(Echo, value="x" * (AT_LIMIT + 1))
    conn.call(Echo, value="fits", wait_for_slot=False)  # the slot is free
    assert len(writes) == 1 and conn.in_flight == 1


def test_the_connections_limits_are_the_ones_checked() -> None:
    writes: list[bytes] = []
    conn = written_to(writes, limits=Limits(max_line_length=100))
    conn.call(Echo, value="x" * 93)  # "Value: " and 93 characters: 100 bytes
    with pytest.raises(LimitExceeded, match=r"max_line_length \(100 bytes\)"):
        conn.call(Echo, value="x" * 94)
    assert len(writes) == 1


class BigAnswers:
    """The parent's responder: answers the child's Grow with that many characters."""

    @Grow.responder
    def grow(self, size: int) -> dict[str, Any]:
        return {"value": "x" * size}


def test_the_parents_responder_never_sends_what_the_child_cannot_take() -> None:
    writes: list[bytes] = []
    written = threading.Event()

    def write(data: bytes) -> None:
        writes.append(data)
        written.set()

    limits = Limits(max_line_length=1000)
    conn = Connection(write, pid=0, generation=1,
                      options=ConnectionOptions(responder=BigAnswers(), limits=limits))
    try:
        conn.data_received(request_bytes(Grow, "a", Grow.make_arguments({"size": 1000})))
        assert written.wait(10), "the responder's answer was never written"
        [box] = BoxParser(limits).feed(writes[0])
        error = classify(box)
        assert isinstance(error, ErrorAnswer) and error.code == LIMIT_EXCEEDED_CODE
        assert "field 'value'" in error.description
        assert not conn.closed
        written.clear()
        conn.data_received(request_bytes(Grow, "b", Grow.make_arguments({"size": 5})))
        assert written.wait(10)
        assert classify(BoxParser(limits).feed(writes[1])[0]).box == {"value": "xxxxx"}
    finally:
        conn.connection_lost(ProcessUnavailable("the test is over"))


def test_the_parents_refused_answer_costs_no_copy_of_the_value() -> None:
    writes: list[bytes] = []
    written = threading.Event()

    def write(data: bytes) -> None:
        writes.append(data)
        written.set()

    size = 20_000_000
    conn = Connection(write, pid=0, generation=1,
                      options=ConnectionOptions(responder=BigAnswers()))
    gc.collect()
    tracemalloc.start()  # traces every thread: the responder's too
    try:
        conn.data_received(request_bytes(Grow, "a", Grow.make_arguments({"size": size})))
        assert written.wait(10), "the responder's answer was never written"
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        conn.connection_lost(ProcessUnavailable("the test is over"))
    error = classify(BoxParser().feed(writes[0])[0])
    assert isinstance(error, ErrorAnswer) and error.code == LIMIT_EXCEEDED_CODE
    # The responder's value is made once (20 MB); writing it would have copied it again at
    # least once (its bytes), refusing it copies nothing.
    assert peak < size + size // 4, f"{peak:,} bytes allocated for an answer of {size:,}"
