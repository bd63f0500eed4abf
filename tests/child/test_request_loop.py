"""The request loop's edges, in process: what a read with bad input answers, calls to the
parent that time out or outlive the conversation, handlers that break in odd ways, the
concurrent mode's Shutdown, and what ``serve()`` and ``run()`` take from the worker.
"""

from __future__ import annotations

import io
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import pytest

from juicectl.child import ConnectionLost, JuiceChild, run, serve
from juicectl.juice import (
    UNHANDLED_CODE,
    UNHANDLED_DESCRIPTION,
    Box,
    BoxParser,
    Command,
    ErrorAnswer,
    LimitExceeded,
    Limits,
    MalformedBox,
    Request,
    Shutdown,
    String,
    answer_bytes,
    classify,
    error_bytes,
    request_bytes,
)
from tests.workers.runtime import Block, Double, Echo, ExitWorker, Note, TestWorker

from .conftest import Served

Serving = Callable[..., Served]


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait for ``predicate`` (a bound, not a speed test)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)

UNHANDLED = {
    "_error_code": UNHANDLED_CODE,
    "_error_description": UNHANDLED_DESCRIPTION,
}


def unhandled(tag: str) -> dict[str, str]:
    return {"_error": tag, **UNHANDLED}


def echo(tag: str, value: str) -> bytes:
    return request_bytes(Echo, tag, Echo.make_arguments({"value": value}))


class Outcome(Command):
    """The child calls the parent its own way and answers with what came of it."""

    arguments = [("how", String())]
    response = [("outcome", String())]


class BrokenCodes(Command):
    """A command whose own ``error_code`` breaks: a bug between the runtime and the handler."""

    @classmethod
    def error_code(cls, error: BaseException) -> tuple[str, bool] | None:
        raise RuntimeError("error_code is broken")


class Where(Command):
    """Where the handler runs: its thread's name and whether it is a daemon."""

    response = [("name", String()), ("daemon", String())]


class CallingWorker(TestWorker):
    """Calls the parent the way each test asks, and says what came of it."""

    def __init__(self) -> None:
        super().__init__()
        self.answer_sent = threading.Event()
        self.later: list[Any] = []

    @Outcome.responder
    def outcome(self, how: str) -> dict[str, Any]:
        future = self.call(Double, value=1)
        try:
            if how == "result":
                return {"outcome": f"result {future.result(timeout=0.2)}"}
            if how == "exception":
                return {"outcome": f"exception {future.exception(timeout=0.2)!r}"}
            if how == "after the answer":
                # The parent's answer is in the pipe before the wait starts.
                self.answer_sent.wait(10)
                return {"outcome": f"result {future.result(timeout=0.5)}"}
            if how == "exception, answered":
                return {"outcome": f"exception {future.exception(timeout=10)!r}"}
            if how == "no timeout":
                return {"outcome": f"result {future.result()}"}
            if how == "note":
                note = self.call(Note, value="n").result(timeout=10)
                return {"outcome": f"note {note} then {future.result(timeout=10)}"}
            return {"outcome": f"result {future.result(timeout=10)}"}
        except FutureTimeout:
            return {"outcome": "timed out"}
        except ConnectionLost as lost:
            return {"outcome": f"lost: {lost}"}

    @BrokenCodes.responder
    def broken(self) -> None:
        raise ValueError("declared or not, nobody can tell")

    @Where.responder
    def where(self) -> dict[str, Any]:
        thread = threading.current_thread()
        return {"name": thread.name, "daemon": str(thread.daemon)}


# --- a read with bad input in it ----------------------------------------------------------

@pytest.mark.parametrize(
    ("bad", "error"),
    [(b"Value: no command\r\n\r\n", MalformedBox), (b"no colon\r\n\r\n", MalformedBox)],
    ids=["a box that is not a message", "bytes that are not a box"],
)
@pytest.mark.parametrize("where", ["after", "before"])
def test_a_read_with_bad_input_answers_none_of_it_and_ends_at_once(
    serving: Serving, bad: bytes, error: type[Exception], where: str
) -> None:
    worker = TestWorker()
    served = serving(worker)
    served.peer.send(echo("1", "a") + bad if where == "after" else bad + echo("1", "a"))
    # Not waiting for the end of input: the output closes at once, nothing answered.
    assert served.peer.read_to_eof() == []
    served.join()
    assert [type(exc) for exc in served.errors] == [error]
    assert worker.seen == []


def test_a_protocol_error_is_logged(serving: Serving, caplog: pytest.LogCaptureFixture) -> None:
    served = serving(TestWorker())
    served.peer.send(b"Value: no command\r\n\r\n")
    served.peer.read_to_eof()
    served.join()
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert record.getMessage() == f"juice_protocol_error: {served.errors[0]}"


def test_concurrent_bad_input_ends_serving_with_the_protocol_error(serving: Serving) -> None:
    served = serving(TestWorker(), concurrency=2)
    served.peer.send(b"Value: no command\r\n\r\n")
    assert served.peer.read_to_eof() == []
    served.join()
    assert [type(exc) for exc in served.errors] == [MalformedBox]


def test_concurrent_bad_input_does_not_wait_for_the_handlers_running(
    serving: Serving,
) -> None:
    worker = TestWorker()
    served = serving(worker, concurrency=2)
    served.peer.request(Block, "1")
    time.sleep(0.05)  # let the reader hand Block to a handler before the bad bytes come
    served.peer.send(b"Value: no command\r\n\r\n")
    assert served.peer.read_to_eof() == []  # Block still runs: its answer is not awaited
    served.join()
    assert [type(exc) for exc in served.errors] == [MalformedBox]


@pytest.mark.parametrize("extra", [b"-Command: Echo\r\n-Ask: 5\r\nValue: x\r\n"], ids=["ask"])
@pytest.mark.parametrize("kind", ["answer", "error"])
def test_a_box_that_answers_is_an_answer_even_with_a_command(
    serving: Serving, extra: bytes, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    # As the codec's classify() says: -Answer (or -Error) makes a box an answer, whatever else
    # it holds. This one answers a tag nobody asked: it is ignored, the handler never runs.
    worker = TestWorker()
    served = serving(worker)
    if kind == "answer":
        box = b"-Answer: 9\r\n" + extra + b"\r\n"
    else:
        box = b"-Error: 9\r\n-Error-Code: X\r\n-Error-Description: d\r\n" + extra + b"\r\n"
    served.peer.send(box)
    # Alone in its read: it is routed, not run.
    wait_until(lambda: "juice_answer_for_unknown_tag: 9" in [
        r.getMessage() for r in list(caplog.records)
    ])
    served.peer.send(echo("1", "after"))
    assert served.peer.read_answer("1") == {"value": "after"}
    assert worker.seen == ["after"]


@pytest.mark.parametrize("kind", ["answer", "error"])
def test_an_answer_with_a_command_in_a_read_is_routed_before_its_requests_run(
    serving: Serving, kind: str
) -> None:
    # The answer a worker thread waits for comes in the same read as a request whose handler
    # waits on that thread, and it carries a -Command too: still routed first.
    worker = TestWorker()
    served = serving(worker)
    served.peer.request(Echo, "1", value="started")
    served.peer.read_answer("1")

    outcomes: list[BaseException | None] = []

    def call_then_release() -> None:
        outcomes.append(worker.call(Double, value=4).exception(timeout=10))
        worker.release.set()

    thread = threading.Thread(target=call_then_release)
    thread.start()
    ask = served.peer.read()
    assert isinstance(ask, Request) and ask.tag is not None
    if kind == "answer":
        answer = answer_bytes(ask.tag, Double.make_response({"value": 8}))
    else:
        answer = error_bytes(ask.tag, "NEGATIVE", "no negatives")
    served.peer.send(
        request_bytes(Block, "2", Block.make_arguments({}))
        + b"-Command: Double\r\n" + answer
    )
    assert served.peer.read_answer("2") == {"released": "True"}
    thread.join(10)
    assert not thread.is_alive()
    assert [type(error) for error in outcomes] == [type(None) if kind == "answer" else ValueError]


# --- the child's calls to its parent --------------------------------------------------------

def test_call_outside_serving_says_how_to_serve() -> None:
    with pytest.raises(RuntimeError) as caught:
        TestWorker().call(Double, value=1)
    assert str(caught.value) == (
        "TestWorker is not being served: call() works while run() or serve() runs it"
    )


@pytest.mark.parametrize("how", ["result", "exception"])
def test_a_call_waited_on_with_a_timeout_from_the_reading_thread_times_out(
    serving: Serving, how: str
) -> None:
    served = serving(CallingWorker())
    served.peer.request(Outcome, "1", how=how)
    ask = served.peer.read()
    assert isinstance(ask, Request) and ask.command == "Double"
    # The parent never answers: the handler's wait ends with its timeout, and it goes on.
    assert served.peer.read_answer("1") == {"outcome": "timed out"}
    served.peer.request(Echo, "2", value="still serving")
    assert served.peer.read_answer("2") == {"value": "still serving"}


def test_a_call_waited_on_with_a_timeout_reads_the_answer_already_there(
    serving: Serving,
) -> None:
    worker = CallingWorker()
    served = serving(worker)
    served.peer.request(Outcome, "1", how="after the answer")
    ask = served.peer.read()
    assert isinstance(ask, Request) and ask.tag is not None
    served.peer.answer(Double, ask.tag, value=2)
    worker.answer_sent.set()
    assert served.peer.read_answer("1") == {"outcome": "result {'value': 2}"}


@pytest.mark.parametrize(
    ("how", "outcome"),
    [
        ("no timeout", "result {'value': 2}"),
        ("exception, answered", "exception ValueError('no negatives')"),
        ("note", "note {} then {'value': 2}"),
    ],
)
def test_a_call_waited_on_from_the_reading_thread_reads_its_answer(
    serving: Serving, how: str, outcome: str
) -> None:
    served = serving(CallingWorker())
    served.peer.request(Outcome, "1", how=how)
    ask = served.peer.read()
    assert isinstance(ask, Request) and ask.tag is not None
    if how == "note":
        assert ask.command == "Double"
        assert served.peer.read() == Request("Note", None, Box({"value": "n"}))
    if how == "exception, answered":
        served.peer.error(ask.tag, "NEGATIVE", "no negatives")
    else:
        served.peer.answer(Double, ask.tag, value=2)
    assert served.peer.read_answer("1") == {"outcome": outcome}


def test_requests_read_during_a_call_run_after_the_end_of_input_and_their_calls_fail_at_once(
    serving: Serving,
) -> None:
    served = serving(CallingWorker())
    served.peer.request(Outcome, "1", how="wait")
    ask = served.peer.read()
    assert isinstance(ask, Request)
    # Read while the first handler waits, then the input ends: the first call is lost, and
    # the second request, answered after it, finds the conversation over before it sends.
    served.peer.request(Outcome, "2", how="wait")
    served.peer.close_input()
    lost_before = "lost: the conversation with the parent ended before its answer"
    assert served.peer.read_to_eof() == [
        {"outcome": lost_before, "_answer": "1"},
        {"outcome": "lost: the conversation with the parent is over", "_answer": "2"},
    ]
    served.join()


@pytest.mark.parametrize("command", [Double, Note], ids=["wants an answer", "wants none"])
def test_a_call_after_the_conversation_fails_saying_it_is_over(
    serving: Serving, command: type[Command]
) -> None:
    worker = TestWorker()
    output = io.BytesIO()
    serve(worker, io.BytesIO(b""), output, close_output=False)
    future = worker.call(command, value=1) if command is Double else worker.call(
        command, value="x"
    )
    error = future.exception(timeout=1)
    assert isinstance(error, ConnectionLost)
    assert str(error) == "the conversation with the parent is over"
    assert output.getvalue() == b""  # nothing was written after the end
    assert not output.closed


def test_a_call_the_parent_cannot_receive_fails_with_connection_lost(serving: Serving) -> None:
    worker = TestWorker()
    served = serving(worker)
    served.peer.request(Echo, "1", value="up")
    served.peer.read_answer("1")
    os.close(served.peer.read_fd)  # the parent stops reading
    served.peer.read_fd = os.open(os.devnull, os.O_RDONLY)  # closed by the fixture
    errors = [worker.call(Note, value=str(i)).exception(timeout=5) for i in range(2)]
    assert [type(error) for error in errors] == [ConnectionLost, ConnectionLost]
    assert [str(error) for error in errors] == ["the conversation with the parent is over"] * 2
    served.peer.close_input()
    served.join()
    assert served.errors == []


def test_an_answer_for_an_unknown_tag_is_logged(
    serving: Serving, caplog: pytest.LogCaptureFixture
) -> None:
    served = serving(TestWorker())
    served.peer.answer(Double, "99", value=1)
    served.peer.request(Echo, "1", value="fine")
    served.peer.read_answer("1")
    [record] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert record.getMessage() == "juice_answer_for_unknown_tag: 99"


@pytest.mark.parametrize(
    ("versions", "said"),
    [("7", "no supported version among [7]"), ("x", "")],
    ids=["no-common-version", "not-a-number"],
)
def test_a_negotiate_the_worker_cannot_answer_says_why_it_closes(
    serving: Serving, caplog: pytest.LogCaptureFixture, versions: str, said: str
) -> None:
    served = serving(TestWorker())
    served.peer.send(b"-Command: Negotiate\r\n-Ask: 1\r\nVersions: " + versions.encode()
                      + b"\r\n\r\n")
    [error] = served.peer.read_to_eof()
    assert isinstance(classify(error), ErrorAnswer)
    served.join()
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    message = record.getMessage()
    assert message.startswith("juice_negotiate_failed: ") and message.endswith(
        "(the connection closes)"
    )
    assert said in message


# --- handlers that break --------------------------------------------------------------------

def test_a_broken_error_code_is_unhandled_logged_and_closes(
    serving: Serving, caplog: pytest.LogCaptureFixture
) -> None:
    served = serving(CallingWorker())
    served.peer.request(BrokenCodes, "4")
    assert served.peer.read_to_eof() == [unhandled("4")]
    served.join()
    assert served.errors == []
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert record.getMessage() == "juice_handler_failed: BrokenCodes (the connection closes)"
    assert record.exc_info is not None and record.exc_info[0] is RuntimeError


def test_a_crash_is_logged_naming_the_command_with_its_traceback(
    serving: Serving, caplog: pytest.LogCaptureFixture
) -> None:
    served = serving(TestWorker())
    served.peer.send(b"-Command: Crash\r\n-Ask: 1\r\n\r\n")
    assert served.peer.read_to_eof() == [unhandled("1")]
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert record.getMessage() == "juice_handler_failed: Crash (the connection closes)"
    assert record.exc_info is not None and record.exc_info[0] is RuntimeError


@pytest.mark.parametrize("tag", ["3", None], ids=["asked", "not asked"])
def test_a_concurrent_handler_that_exits_ends_the_conversation_not_the_process(
    serving: Serving, caplog: pytest.LogCaptureFixture, tag: str | None
) -> None:
    served = serving(ExitWorker(), concurrency=2)
    served.peer.send(b"-Command: Exit\r\n" + (b"-Ask: 3\r\n" if tag else b"") + b"\r\n")
    assert served.peer.read_to_eof() == ([unhandled(tag)] if tag else [])
    served.join()
    assert served.errors == []
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert record.getMessage() == "juice_handler_failed: Exit"
    assert record.exc_info is not None and record.exc_info[0] is SystemExit


# --- Shutdown -------------------------------------------------------------------------------

def test_a_shutdown_without_ask_closes_without_an_answer(serving: Serving) -> None:
    served = serving(TestWorker())
    served.peer.send(echo("1", "before") + b"-Command: Shutdown\r\n\r\n")
    assert served.peer.read_to_eof() == [{"value": "before", "_answer": "1"}]
    served.join()
    assert served.errors == []


def test_concurrent_shutdown_ignores_what_follows_it(serving: Serving) -> None:
    worker = TestWorker()
    served = serving(worker, concurrency=2)
    served.peer.send(
        request_bytes(Block, "1", Block.make_arguments({}))
        + request_bytes(Shutdown, "2", Shutdown.make_arguments({}))
        + echo("3", "after")
    )
    worker.release.set()
    assert served.peer.read_to_eof() == [{"released": "True", "_answer": "1"}, {"_answer": "2"}]
    served.join()
    assert worker.seen == []


def test_concurrent_shutdown_waits_for_every_handler_running(serving: Serving) -> None:
    worker = TestWorker()
    served = serving(worker, concurrency=2)
    served.peer.send(
        request_bytes(Block, "1", Block.make_arguments({}))
        + request_bytes(Block, "2", Block.make_arguments({}))
        + request_bytes(Shutdown, "3", Shutdown.make_arguments({}))
    )
    threading.Event().wait(0.05)  # let the reader see Shutdown while both Blocks run
    worker.release.set()
    boxes = served.peer.read_to_eof()
    assert sorted(box["_answer"] for box in boxes[:2]) == ["1", "2"]
    assert boxes[2:] == [{"_answer": "3"}]
    served.join()


# --- what serve() and run() take ------------------------------------------------------------

def test_concurrent_handlers_run_on_named_daemon_threads(serving: Serving) -> None:
    served = serving(CallingWorker(), concurrency=1)
    served.peer.request(Where, "1")
    assert served.peer.read_answer("1") == {"name": "serve", "daemon": "True"}
    served = serving(CallingWorker(), concurrency=2)
    served.peer.request(Where, "1")
    answer = served.peer.read_answer("1")
    # Daemon threads: a stuck handler must not keep the process alive once it is over.
    assert answer["daemon"] == "True"
    assert answer["name"] in ("juice-handler-0", "juice-handler-1")


class _CountingClose(io.BytesIO):
    def __init__(self) -> None:
        super().__init__()
        self.closes = 0

    def close(self) -> None:
        self.closes += 1


@pytest.mark.parametrize("concurrency", [1, 2])
def test_the_output_is_closed_once(concurrency: int) -> None:
    output = _CountingClose()
    serve(TestWorker(), io.BytesIO(echo("1", "a") + b"-Command: Crash\r\n-Ask: 2\r\n\r\n"),
          output, concurrency=concurrency)
    assert output.closes == 1


def test_handler_threads_are_daemons_whoever_serves() -> None:
    # run() serves on the main thread, which is no daemon: the handlers' threads still are.
    stdin = io.BytesIO(request_bytes(Where, "1", Box()))
    output = _CountingClose()
    server = threading.Thread(
        target=serve, args=(CallingWorker(), stdin, output), kwargs={"concurrency": 2},
        daemon=False,
    )
    server.start()
    server.join(10)
    assert not server.is_alive()
    [box] = BoxParser().feed(output.getvalue())
    assert box["daemon"] == "True"


class PlainWorker:
    """Not a JuiceChild: no concurrency or busy_poll of its own."""

    @Where.responder
    def where(self) -> dict[str, Any]:
        return {"name": threading.current_thread().name, "daemon": "-"}


def test_a_worker_without_settings_is_served_one_request_at_a_time(serving: Serving) -> None:
    served = serving(PlainWorker())
    served.peer.request(Where, "1")
    assert served.peer.read_answer("1") == {"name": "serve", "daemon": "-"}


@pytest.mark.parametrize("busy_poll", [0.5, -1], ids=["over the most", "negative"])
def test_a_worker_busy_poll_out_of_range_is_refused_naming_it(busy_poll: float) -> None:
    worker = type("Polling", (JuiceChild,), {"busy_poll": busy_poll})()
    with pytest.raises(ValueError, match=rf"busy_poll must be between 0 and .*, not {busy_poll}"):
        serve(worker, io.BytesIO(b""), io.BytesIO())


def test_serve_applies_the_limits_it_is_given() -> None:
    data = echo("1", "x" * 200)
    output = io.BytesIO()
    serve(TestWorker(), io.BytesIO(data), output, close_output=False)
    assert BoxParser().feed(output.getvalue()) == [{"value": "x" * 200, "_answer": "1"}]
    with pytest.raises(LimitExceeded):
        serve(TestWorker(), io.BytesIO(data), io.BytesIO(), limits=Limits(max_line_length=100))


class _Unclosable(io.BytesIO):
    def __init__(self, error: BaseException) -> None:
        super().__init__()
        self.error = error

    def close(self) -> None:
        raise self.error


@pytest.mark.parametrize("error", [OSError("gone"), ValueError("closed")], ids=repr)
def test_an_output_that_fails_to_close_ends_serving_quietly(error: BaseException) -> None:
    output = _Unclosable(error)
    serve(TestWorker(), io.BytesIO(echo("1", "a")), output)
    assert BoxParser().feed(output.getvalue()) == [{"value": "a", "_answer": "1"}]


class _Kept(io.BytesIO):
    """Keeps its bytes readable after serving closes it."""

    def close(self) -> None:
        pass


def test_run_applies_its_options_to_serving() -> None:
    output = _Kept()
    run(CallingWorker, stdin=io.BytesIO(request_bytes(Where, "1", Box())), stdout=output,
        concurrency=2, exit_process=False)
    [box] = BoxParser().feed(output.getvalue())
    assert box["name"].startswith("juice-handler-")
    with pytest.raises(SystemExit) as exit_info:
        run(TestWorker, stdin=io.BytesIO(echo("1", "x" * 200)), stdout=io.BytesIO(),
            limits=Limits(max_line_length=100))
    assert exit_info.value.code == 1
    with pytest.raises(LimitExceeded):
        run(TestWorker, stdin=io.BytesIO(echo("1", "x" * 200)), stdout=io.BytesIO(),
            limits=Limits(max_line_length=100), exit_process=False)


def test_run_checks_busy_poll_before_it_makes_the_worker() -> None:
    made: list[object] = []

    class Counted(TestWorker):
        def __init__(self) -> None:
            made.append(self)
            super().__init__()

    with pytest.raises(ValueError, match="busy_poll"):
        run(Counted, stdin=io.BytesIO(b""), stdout=io.BytesIO(), busy_poll=1.0)
    assert made == []
