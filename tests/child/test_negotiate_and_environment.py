"""What the runtime says in answer to ``Negotiate`` (its concurrency, unless the worker answers
``Negotiate`` itself), the busy-poll budget a pool passes in ``JUICECTL_BUSY_POLL``, and the
child's one-way calls to the parent under the session's limits."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest

from juicectl.child import JuiceChild, serve
from juicectl.child._runtime import BUSY_POLL_ENV
from juicectl.juice import (
    Answer,
    Command,
    ErrorAnswer,
    Integer,
    LimitExceeded,
    Limits,
    Negotiate,
    Request,
    String,
    classify,
)
from tests.workers.runtime import Echo, TestWorker

from .conftest import Served

Serving = Callable[..., Served]

pytestmark = pytest.mark.timeout(30)


class OwnNegotiate(JuiceChild):
    """A worker that answers Negotiate itself: the runtime must leave its answer alone."""

    @Negotiate.responder
    def negotiate(self, versions: list[int]) -> dict[str, Any]:
        return {"version": max(versions)}


@pytest.mark.parametrize("concurrency", [1, 3])
def test_negotiate_says_the_concurrency(serving: Serving, concurrency: int) -> None:
    served = serving(TestWorker(), concurrency=concurrency)
    served.peer.request(Negotiate, "n", versions=[1])
    assert served.peer.read_answer("n") == {"version": "1", "concurrency": str(concurrency)}


def test_negotiate_that_the_worker_answers_is_its_own(serving: Serving) -> None:
    served = serving(OwnNegotiate(), concurrency=2)
    served.peer.request(Negotiate, "n", versions=[1, 7])
    assert served.peer.read_answer("n") == {"version": "7"}


def test_negotiate_answer_past_the_limits_is_refused_as_any_answer(serving: Serving) -> None:
    # "-Ask: " + tag fits a 19-byte line; "-Answer: " + tag does not. The runtime's own
    # Negotiate answer is checked against the session's limits like every other answer.
    tag = "t" * 13
    limits = Limits(max_line_length=19)
    served = serving(TestWorker(), limits=limits)
    served.peer.request(Echo, "a", value="x")
    assert served.peer.read_answer("a") == {"value": "x"}
    served.peer.request(Negotiate, tag, versions=[1])
    message = served.peer.read()
    assert isinstance(message, ErrorAnswer), message
    assert message.code == "LIMIT_EXCEEDED"


def _serve_directly(worker: object, **kwargs: Any) -> None:
    """serve() on a pipe pair whose input is already at its end: it returns at once."""
    to_child_r, to_child_w = os.pipe()
    from_child_r, from_child_w = os.pipe()
    os.close(to_child_w)
    try:
        serve(worker, to_child_r, from_child_w, **kwargs)
    finally:
        for fd in (to_child_r, from_child_r):
            os.close(fd)


def test_a_bad_busy_poll_in_the_environment_stops_serve_before_it_reads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(BUSY_POLL_ENV, "fast")
    with pytest.raises(ValueError) as raised:
        _serve_directly(TestWorker())
    assert str(raised.value) == (
        "JUICECTL_BUSY_POLL='fast': could not convert string to float: 'fast'"
    )


def test_an_out_of_range_busy_poll_in_the_environment_is_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(BUSY_POLL_ENV, "5")
    with pytest.raises(ValueError, match=r"^JUICECTL_BUSY_POLL='5': "):
        _serve_directly(TestWorker())


@pytest.mark.parametrize("value", ["0.0005", "0", "  "])
def test_a_good_or_blank_busy_poll_in_the_environment_serves(
    monkeypatch: pytest.MonkeyPatch, serving: Serving, value: str
) -> None:
    monkeypatch.setenv(BUSY_POLL_ENV, value)
    served = serving(TestWorker())
    served.peer.request(Echo, "e", value="polled")
    assert served.peer.read_answer("e") == {"value": "polled"}
    served.peer.close_input()
    served.join()
    assert served.errors == []


def test_an_explicit_busy_poll_wins_over_the_environment(
    monkeypatch: pytest.MonkeyPatch, serving: Serving
) -> None:
    monkeypatch.setenv(BUSY_POLL_ENV, "fast")  # never read: the argument decides
    served = serving(TestWorker(), busy_poll=0.0)
    served.peer.request(Echo, "e", value="explicit")
    assert served.peer.read_answer("e") == {"value": "explicit"}
    served.peer.close_input()
    served.join()
    assert served.errors == []


class Shout(Command):
    """A one-way note from the child to the parent (no answer)."""

    arguments = [("text", String())]
    requires_answer = False


class ShoutBack(Command):
    """The child sends the parent a note of ``size`` characters and says what happened."""

    arguments = [("size", Integer())]
    response = [("outcome", String())]


class ShoutingWorker(JuiceChild):
    def __init__(self) -> None:
        self.refusals: list[str] = []

    @ShoutBack.responder
    def shout_back(self, size: int) -> dict[str, Any]:
        try:
            self.call(Shout, text="x" * size).result(timeout=10)
        except LimitExceeded as exc:
            self.refusals.append(str(exc))
            return {"outcome": "refused"}
        return {"outcome": "sent"}


def test_a_one_way_call_past_the_limits_is_refused_before_it_is_written(
    serving: Serving,
) -> None:
    limits = Limits(max_line_length=64)
    served = serving(ShoutingWorker(), limits=limits)
    served.peer.request(ShoutBack, "a", size=100)
    assert served.peer.read_answer("a") == {"outcome": "refused"}
    [refusal] = served.worker.refusals
    assert refusal.startswith(
        "Shout not sent: field 'text' is 100 bytes and makes a header line of 106 bytes, over "
        "max_line_length (64 bytes)"
    ), refusal
    served.peer.request(ShoutBack, "b", size=10)
    boxes = served.peer.read_boxes(2)
    # The small note comes first, then the answer; nothing of the refused one was written.
    note = classify(boxes[0])
    assert isinstance(note, Request) and note.command == "Shout"
    assert note.box["text"] == "x" * 10
    answer = classify(boxes[1])
    assert isinstance(answer, Answer) and answer.tag == "b"
    assert answer.box["outcome"] == "sent"
