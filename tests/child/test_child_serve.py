"""The runtime in process: ``serve()`` in a thread, the test playing the parent over pipes."""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import struct
import termios
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any

import pytest

from juicectl.child import ConnectionLost, JuiceChild, run, serve
from juicectl.child import _runtime as runtime_module
from juicectl.juice import (
    UNHANDLED_CODE,
    UNHANDLED_DESCRIPTION,
    Answer,
    Box,
    BoxParser,
    ErrorAnswer,
    MalformedBox,
    Negotiate,
    Request,
    Shutdown,
    TruncatedBox,
    answer_bytes,
    classify,
    request_bytes,
)
from tests.callers.test_who_reads import wait_until
from tests.workers.runtime import (
    AskParent,
    Block,
    ConcurrentWorker,
    Crash,
    Double,
    Echo,
    Fail,
    Fatal,
    Release,
    ShutdownHookWorker,
    TellParent,
    TestWorker,
)

from .conftest import Served
from .peer import Peer

Serving = Callable[..., Served]

VALUES = [
    "plain",
    "",
    "a\r\nb",
    "trailing\r\n",
    "\r\n\r\n",
    " leading space",
    "colon: inside",
    "unicode: ünïcødé ✓ 日本語 🎉",
    "x" * 100_000,
]


def echo_requests(values: list[str]) -> bytes:
    return b"".join(
        request_bytes(Echo, format(i, "x"), Echo.make_arguments({"value": value}))
        for i, value in enumerate(values)
    )


@pytest.mark.parametrize("concurrency", [1, 3])
@pytest.mark.parametrize("feed", ["whole", "byte_by_byte"])
def test_echo_values_fed_whole_and_byte_by_byte(
    serving: Serving, feed: str, concurrency: int
) -> None:
    values = VALUES if feed == "whole" else VALUES[:-1]
    served = serving(TestWorker(), concurrency=concurrency)
    data = echo_requests(values)
    if feed == "whole":
        served.peer.send(data)
    else:
        for i in range(len(data)):
            served.peer.send(data[i : i + 1])
    answers = {}
    for _ in values:
        message = served.peer.read()
        assert isinstance(message, Answer)
        answers[message.tag] = message.box["value"]
    assert answers == {format(i, "x"): value for i, value in enumerate(values)}


def test_pipelined_answers_come_in_order_when_sequential(serving: Serving) -> None:
    served = serving(TestWorker())
    values = [f"value {i}" for i in range(500)]
    served.peer.send(echo_requests(values))
    boxes = served.peer.read_boxes(len(values))
    assert [box["_answer"] for box in boxes] == [format(i, "x") for i in range(len(values))]
    assert [box["value"] for box in boxes] == values


def test_negotiate_is_built_in(serving: Serving) -> None:
    served = serving(TestWorker())
    served.peer.request(Negotiate, "11", versions=[1])
    assert served.peer.read_answer("11") == {"version": "1", "concurrency": "1"}


def test_request_without_ask_gets_no_answer(serving: Serving) -> None:
    worker = TestWorker()
    served = serving(worker)
    served.peer.request(Echo, None, value="quiet")
    served.peer.request(Echo, "2", value="loud")
    assert served.peer.read_answer("2") == {"value": "loud"}
    assert worker.seen == ["quiet", "loud"]


def test_command_names_match_case_insensitively(serving: Serving) -> None:
    served = serving(TestWorker())
    served.peer.send(b"-Command: ECHO\r\n-Ask: 1\r\nValue: x\r\n\r\n")
    assert served.peer.read_answer("1") == {"value": "x"}


def test_shutdown_answers_and_closes(serving: Serving) -> None:
    worker = TestWorker()
    served = serving(worker)
    # Everything after Shutdown in the same write is ignored, like after a quit box.
    served.peer.send(
        request_bytes(Echo, "1", Echo.make_arguments({"value": "before"}))
        + request_bytes(Shutdown, "2", Shutdown.make_arguments({}))
        + request_bytes(Echo, "3", Echo.make_arguments({"value": "after"}))
    )
    boxes = served.peer.read_to_eof()
    assert boxes == [{"value": "before", "_answer": "1"}, {"_answer": "2"}]
    served.join()
    assert worker.seen == ["before"]
    assert served.errors == []


def test_a_worker_shutdown_responder_runs_then_the_runtime_closes(serving: Serving) -> None:
    worker = ShutdownHookWorker()
    served = serving(worker)
    served.peer.request(Shutdown, "5")
    assert served.peer.read_to_eof() == [{"_answer": "5"}]
    served.join()
    assert worker.seen == ["shutdown hook"]


def test_end_of_input_ends_serving(serving: Serving) -> None:
    served = serving(TestWorker())
    served.peer.send(echo_requests(["one", "two"]))
    served.peer.close_input()
    assert [box["value"] for box in served.peer.read_to_eof()] == ["one", "two"]
    served.join()
    assert served.errors == []


def test_declared_error_is_answered_and_serving_goes_on(serving: Serving) -> None:
    served = serving(TestWorker())
    served.peer.request(Fail, "1", message="bad input")
    served.peer.request(Echo, "2", value="still here")
    assert served.peer.read() == ErrorAnswer("1", "BAD_VALUE", "bad input")
    assert served.peer.read_answer("2") == {"value": "still here"}


@pytest.mark.parametrize("concurrency", [1, 2])
def test_undeclared_error_is_unhandled_and_closes(
    serving: Serving, concurrency: int, caplog: pytest.LogCaptureFixture
) -> None:
    served = serving(TestWorker(), concurrency=concurrency)
    served.peer.request(Crash, "7")
    assert [classify(box) for box in served.peer.read_to_eof()] == [
        ErrorAnswer("7", UNHANDLED_CODE, UNHANDLED_DESCRIPTION)
    ]
    served.join()
    assert served.errors == []
    assert "this handler is broken" in caplog.text


def test_unknown_command_is_unhandled_and_closes(serving: Serving) -> None:
    served = serving(TestWorker())
    served.peer.send(b"-Command: Nope\r\n-Ask: fd\r\n\r\n")
    assert served.peer.read_to_eof() == [
        {
            "_error": "fd",
            "_error_code": "UNHANDLED",
            "_error_description": "Unhandled Remote System Exception ",
        }
    ]
    served.join()


def test_fatal_error_is_answered_with_its_code_then_closes(serving: Serving) -> None:
    served = serving(TestWorker())
    served.peer.request(Fatal, "3", message="cannot go on")
    assert [classify(box) for box in served.peer.read_to_eof()] == [
        ErrorAnswer("3", "FATAL_PROBLEM", "cannot go on")
    ]
    served.join()


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"no colon here\r\n\r\n", MalformedBox),
        (b"Value: no command\r\n\r\n", MalformedBox),
        (b"-Command: Echo\r\n-Ask: 1\r\nValue: cut", TruncatedBox),
    ],
)
def test_bad_bytes_end_serving_with_the_protocol_error(
    serving: Serving, data: bytes, error: type[Exception]
) -> None:
    served = serving(TestWorker())
    served.peer.send(data)
    served.peer.close_input()
    assert served.peer.read_to_eof() == []
    served.join()
    assert [type(exc) for exc in served.errors] == [error]


def test_concurrency_answers_a_fast_command_while_a_slow_one_runs(serving: Serving) -> None:
    worker = TestWorker()
    served = serving(worker, concurrency=2)
    served.peer.request(Block, "1")
    served.peer.request(Echo, "2", value="fast")
    assert served.peer.read_answer("2") == {"value": "fast"}
    served.peer.request(Release, "3")
    answers = {message.tag: message for message in (served.peer.read(), served.peer.read())}
    assert answers == {"1": Answer("1", Box({"released": "True"})), "3": Answer("3", Box({}))}


def test_the_worker_class_can_ask_for_concurrency(serving: Serving) -> None:
    served = serving(ConcurrentWorker())
    served.peer.request(Block, "1")
    served.peer.request(Release, "2")
    assert {served.peer.read().tag, served.peer.read().tag} == {"1", "2"}


def test_concurrent_shutdown_waits_for_the_handlers_already_running(serving: Serving) -> None:
    worker = TestWorker()
    served = serving(worker, concurrency=2)
    served.peer.request(Block, "1")
    served.peer.request(Shutdown, "2")
    time.sleep(0.05)  # let the reader see Shutdown while Block still runs
    worker.release.set()
    assert served.peer.read_to_eof() == [{"released": "True", "_answer": "1"}, {"_answer": "2"}]
    served.join()


def test_concurrent_end_of_input_answers_the_requests_already_read(serving: Serving) -> None:
    worker = TestWorker()
    served = serving(worker, concurrency=2)
    served.peer.request(Block, "1")
    served.peer.close_input()
    time.sleep(0.05)
    worker.release.set()
    assert served.peer.read_to_eof() == [{"released": "True", "_answer": "1"}]
    served.join()


@pytest.mark.parametrize("concurrency", [1, 2])
def test_a_handler_calls_the_parent(serving: Serving, concurrency: int) -> None:
    served = serving(TestWorker(), concurrency=concurrency)
    served.peer.request(AskParent, "1", value=21)
    ask = served.peer.read()
    assert isinstance(ask, Request)
    assert ask.command == "Double" and ask.box == {"value": "21"}
    assert ask.tag is not None
    # While the handler waits, other requests are still read (and answered after it when
    # handlers run one at a time).
    served.peer.request(Echo, "2", value="meanwhile")
    served.peer.answer(Double, ask.tag, value=42)
    answers = {message.tag: message for message in (served.peer.read(), served.peer.read())}
    assert answers == {
        "1": Answer("1", Box({"value": "42"})),
        "2": Answer("2", Box({"value": "meanwhile"})),
    }


def test_sequential_requests_read_while_calling_the_parent_keep_their_order(
    serving: Serving,
) -> None:
    served = serving(TestWorker())
    served.peer.request(AskParent, "1", value=1)
    ask = served.peer.read()
    assert isinstance(ask, Request) and ask.tag is not None
    served.peer.send(echo_requests(["a", "b", "c"]))
    served.peer.answer(Double, ask.tag, value=2)
    assert [box["_answer"] for box in served.peer.read_boxes(4)] == ["1", "0", "1", "2"]


def test_a_declared_error_from_the_parent_raises_the_declared_exception(
    serving: Serving,
) -> None:
    served = serving(TestWorker())
    served.peer.request(AskParent, "1", value=-1)
    ask = served.peer.read()
    assert isinstance(ask, Request) and ask.tag is not None
    served.peer.error(ask.tag, "NEGATIVE", "no negatives")
    # The handler lets the ValueError through; AskParent declares it too.
    assert served.peer.read() == ErrorAnswer("1", "NEGATIVE", "no negatives")


def test_a_call_that_wants_no_answer_resolves_once_sent(serving: Serving) -> None:
    served = serving(TestWorker())
    served.peer.request(TellParent, "1", value="hello")
    note = served.peer.read()
    assert note == Request("Note", None, Box({"value": "hello"}))
    assert served.peer.read_answer("1") == {}


def test_an_answer_for_an_unknown_tag_is_ignored(serving: Serving) -> None:
    served = serving(TestWorker())
    served.peer.answer(Double, "99", value=1)
    served.peer.request(Echo, "1", value="fine")
    assert served.peer.read_answer("1") == {"value": "fine"}


@pytest.mark.parametrize("concurrency", [1, 2])
def test_end_of_input_fails_the_calls_waiting_for_the_parent(
    serving: Serving, concurrency: int
) -> None:
    served = serving(TestWorker(), concurrency=concurrency)
    served.peer.request(AskParent, "1", value=1)
    assert isinstance(served.peer.read(), Request)
    served.peer.close_input()
    # The handler's call fails with ConnectionLost, which AskParent does not declare.
    assert served.peer.read_to_eof() == [
        {"_error": "1", "_error_code": UNHANDLED_CODE, "_error_description": UNHANDLED_DESCRIPTION}
    ]
    served.join()


def test_call_outside_serving(serving: Serving) -> None:
    worker = TestWorker()
    with pytest.raises(RuntimeError, match="not being served"):
        worker.call(Double, value=1)
    served = serving(worker)
    served.peer.request(Shutdown, "1")
    served.peer.read_to_eof()
    served.join()
    future = worker.call(Double, value=1)
    assert isinstance(future, Future)
    with pytest.raises(ConnectionLost):
        future.result(timeout=1)


def test_a_thread_of_the_worker_can_call_the_parent(serving: Serving) -> None:
    worker = TestWorker()
    served = serving(worker)
    served.peer.request(Echo, "1", value="started")
    served.peer.read_answer("1")
    results: list[dict[str, Any]] = []
    thread = threading.Thread(
        target=lambda: results.append(worker.call(Double, value=4).result(timeout=10))
    )
    thread.start()
    ask = served.peer.read()
    assert isinstance(ask, Request) and ask.tag is not None
    served.peer.answer(Double, ask.tag, value=8)
    thread.join(10)
    assert results == [{"value": 8}]


def test_answers_in_a_read_are_routed_before_its_requests_run(serving: Serving) -> None:
    # One read holds a request and, after it, the answer a worker thread waits for. The
    # request's handler waits on that thread: routing the answer first lets both finish; the
    # answer routed only after the handler returned would leave the handler waiting.
    worker = TestWorker()
    served = serving(worker)
    served.peer.request(Echo, "1", value="started")
    served.peer.read_answer("1")

    def call_then_release() -> None:
        worker.call(Double, value=4).result(timeout=10)
        worker.release.set()

    thread = threading.Thread(target=call_then_release)
    thread.start()
    ask = served.peer.read()
    assert isinstance(ask, Request) and ask.tag is not None
    served.peer.send(
        request_bytes(Block, "2", Block.make_arguments({}))
        + answer_bytes(ask.tag, Double.make_response({"value": 8}))
    )
    assert served.peer.read_answer("2") == {"released": "True"}
    thread.join(10)


class _KeptBytesIO(io.BytesIO):
    def close(self) -> None:
        self.closed_by_serve = True


def test_serve_on_binary_streams() -> None:
    stdin = io.BytesIO(
        echo_requests(["one", "two"])
        + request_bytes(Negotiate, "n", Negotiate.make_arguments({"versions": [1]}))
    )
    stdout = _KeptBytesIO()
    serve(TestWorker(), stdin, stdout)
    boxes = BoxParser().feed(stdout.getvalue())
    assert [box.get("value", box.get("version")) for box in boxes] == ["one", "two", "1"]
    assert stdout.closed_by_serve


def test_run_on_given_streams_exits_zero() -> None:
    stdin = io.BytesIO(echo_requests(["one"]))
    stdout = _KeptBytesIO()
    with pytest.raises(SystemExit) as exit_info:
        run(TestWorker, stdin=stdin, stdout=stdout)
    assert exit_info.value.code == 0
    assert BoxParser().feed(stdout.getvalue()) == [{"value": "one", "_answer": "0"}]


def test_run_can_return_instead_of_exiting() -> None:
    stdout = _KeptBytesIO()
    run(TestWorker(), stdin=io.BytesIO(b""), stdout=stdout, exit_process=False)
    assert stdout.getvalue() == b""


@pytest.mark.parametrize("concurrency", [0, 1025])
def test_concurrency_must_be_within_its_bounds(concurrency: int) -> None:
    # Each handler is a thread, started before the first request is read.
    with pytest.raises(ValueError, match="between 1 and 1024"):
        serve(JuiceChild(), io.BytesIO(), io.BytesIO(), concurrency=concurrency)


def _unread(fd: int) -> int:
    """How many bytes wait in the pipe whose read end is ``fd``."""
    return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]


@contextlib.contextmanager
def _served_with_pipes(worker: TestWorker, concurrency: int) -> Iterator[tuple[Peer, int]]:
    """``serve()`` in a thread; the test's peer, and the read end of the worker's input (to
    see what it has not read)."""
    to_child_r, to_child_w = os.pipe()
    from_child_r, from_child_w = os.pipe()
    thread = threading.Thread(
        target=serve, args=(worker, to_child_r, from_child_w),
        kwargs={"concurrency": concurrency}, daemon=True,
    )
    thread.start()
    peer = Peer(to_child_w, from_child_r)
    try:
        yield peer, to_child_r
    finally:
        worker.release.set()
        peer.close_input()
        thread.join(10)
        for fd in (to_child_r, from_child_r):
            os.close(fd)
    assert not thread.is_alive()


def test_a_concurrent_worker_stops_reading_while_too_many_await_their_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A parent that sends and sends, reading no answer, must fill the pipe, not the worker's
    # memory: with MAX_UNANSWERED requests unanswered the reader holds the next ones back,
    # and with as many again held it reads no more, until an answer makes room.
    monkeypatch.setattr(runtime_module, "MAX_UNANSWERED", 2)
    worker = TestWorker()
    with _served_with_pipes(worker, concurrency=2) as (peer, worker_input):
        peer.send(b"".join(request_bytes(Block, tag, Box({})) for tag in ("1", "2")))
        held = [request_bytes(Echo, tag, Echo.make_arguments({"value": tag}))
                for tag in ("3", "4")]
        peer.send(b"".join(held))
        wait_until(lambda: _unread(worker_input) == 0)  # two running, two held
        unread = request_bytes(Echo, "5", Echo.make_arguments({"value": "5"}))
        peer.send(unread)
        time.sleep(0.3)  # were it read, it would be at once
        assert _unread(worker_input) == len(unread)
        assert worker.seen == []  # the held ones have not run
        worker.release.set()
        answers = {message.tag: message for message in [peer.read() for _ in range(5)]}
        assert [answers[tag] for tag in ("3", "4", "5")] == [
            Answer(tag, Box({"value": tag})) for tag in ("3", "4", "5")
        ]


def test_handlers_calling_the_parent_at_the_bound_still_get_its_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Every handler waits on a call to the parent, and the requests unanswered are at the
    # bound: the reader must still read and route the parent's answers, or no handler ever
    # returns.
    monkeypatch.setattr(runtime_module, "MAX_UNANSWERED", 2)
    with _served_with_pipes(TestWorker(), concurrency=2) as (peer, _):
        peer.send(b"".join(request_bytes(AskParent, tag, AskParent.make_arguments({"value": n}))
                           for tag, n in (("1", 1), ("2", 2), ("3", 3))))
        asked, answers = 0, {}
        while len(answers) < 3:  # the held request's call comes once one is answered
            message = peer.read()
            if isinstance(message, Request):
                assert message.tag is not None
                asked += 1
                peer.answer(Double, message.tag, value=2 * int(message.box["value"]))
            else:
                answers[message.tag] = message
        assert asked == 3
        assert answers == {tag: Answer(tag, Box({"value": str(2 * n)}))
                           for tag, n in (("1", 1), ("2", 2), ("3", 3))}
