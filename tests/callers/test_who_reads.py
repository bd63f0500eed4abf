"""Who reads the child's stdout: the reader thread, or a caller waiting on its own answer.

A bare ``Connection`` reads a pipe the test writes the "child's" answers into. The answers are
written from the caller's own ``write`` (an echo that answers as soon as it is asked), or held
back, so that each case is decided by the test and not by timing.
"""

from __future__ import annotations

import contextlib
import os
import random
import select
import threading
from collections.abc import Callable, Iterator

import pykka
import pytest
import structlog.testing

from juicectl import _reading as reading_module
from juicectl._busy_poll import DEFAULT_BUSY_POLL
from juicectl._future import ReplyFuture
from juicectl._reading import Role
from juicectl.connection import Connection, ConnectionLoss
from juicectl.exceptions import MalformedBox, ProcessUnavailable, RequestTimeout
from juicectl.juice import Box, BoxParser, answer_bytes
from juicectl.policy import ConnectionOptions
from tests.workers.commands import Echo

#: A reader thread that, once parked, takes the pipe back only when asked: what a caller may
#: rely on then is the asking, not the park running out.
PARKED_FOR_GOOD = 600.0


class Pipe:
    """A connection reading a pipe, with a reader thread serving it, and an echo "child"."""

    def __init__(
        self,
        *,
        echo: bool = True,
        request_timeout: float | None = None,
        busy_poll: float = DEFAULT_BUSY_POLL,
    ) -> None:
        self.read_fd, self.write_fd = os.pipe()
        self.echo = echo
        self.held: list[bytes] = []  # requests not answered (echo off)
        self._requests = BoxParser()
        self._write_lock = threading.Lock()
        self.losses: list[ConnectionLoss] = []
        self.connection = Connection(
            self._child_reads,
            pid=1,
            generation=1,
            options=ConnectionOptions(request_timeout=request_timeout, busy_poll=busy_poll),
            on_lost=self.losses.append,
        )
        self.reader = threading.Thread(
            target=self.connection.serve_reads, args=(self.read_fd,), daemon=True
        )
        self.reader.start()

    def _child_reads(self, data: bytes) -> None:
        with self._write_lock:
            for box in self._requests.feed(data):
                answer = answer_bytes(box["_ask"], Box(value=box["value"]))
                if self.echo:
                    self.answer(answer)
                else:
                    self.held.append(answer)

    def answer(self, data: bytes) -> None:
        """Write ``data`` as the child's output."""
        os.write(self.write_fd, data)

    def close(self) -> None:
        """End the child's output; the reader thread reads end of file and returns."""
        if self.write_fd >= 0:
            os.close(self.write_fd)
            self.write_fd = -1
        self.reader.join(10)
        assert not self.reader.is_alive()
        os.close(self.read_fd)


@pytest.fixture
def pipe() -> Iterator[Pipe]:
    pipe = Pipe()
    try:
        yield pipe
    finally:
        pipe.connection.connection_lost(ProcessUnavailable("the test ended"))
        pipe.close()


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """Every ``os.read`` (whoever reads the child's stdout), as (thread ident, fd)."""
    seen: list[tuple[int, int]] = []
    real_read = os.read

    def read(fd: int, size: int) -> bytes:
        seen.append((threading.get_ident(), fd))
        return real_read(fd, size)

    monkeypatch.setattr(reading_module.os, "read", read)
    return seen


@pytest.fixture
def parked_for_good(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reading_module, "PARK", PARKED_FOR_GOOD)


def echo(connection: Connection, value: str, timeout: float = 10) -> str:
    return str(connection.call(Echo, value=value).get(timeout=timeout)["value"])


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    done = threading.Event()
    for _ in range(int(timeout / 0.01)):
        if predicate():
            return
        done.wait(0.01)
    raise AssertionError("condition not reached in time")


def callers_read(pipe: Pipe) -> None:
    """Settle into the state where callers read: the reader thread holds the pipe from the
    start, reads the answer of a caller that waits, and then parks."""
    pipe.echo = False
    future = pipe.connection.call(Echo, value="first")

    def answer_once_waited_for() -> None:
        wait_until(lambda: pipe.connection._reading.watchers == 1)
        pipe.answer(pipe.held.pop())

    threading.Thread(target=answer_once_waited_for).start()
    assert future.get(timeout=10) == {"value": "first"}
    wait_until(lambda: pipe.connection._reading.role is Role.FREE)
    pipe.echo = True


@pytest.mark.usefixtures("parked_for_good")
def test_a_caller_waiting_alone_reads_its_own_answer(
    pipe: Pipe, reads: list[tuple[int, int]]
) -> None:
    callers_read(pipe)
    reads.clear()
    for index in range(20):
        assert echo(pipe.connection, f"value {index}") == f"value {index}"
    me = threading.get_ident()
    stdout_reads = [thread for thread, fd in reads if fd == pipe.read_fd]
    assert len(stdout_reads) >= 20
    assert set(stdout_reads) == {me}


def test_the_reader_thread_reads_until_a_caller_waits(
    pipe: Pipe, reads: list[tuple[int, int]]
) -> None:
    # Nobody waits in get(): the answers are read by the reader thread.
    futures = [pipe.connection.call(Echo, value=str(index)) for index in range(10)]
    wait_until(lambda: all(future.done() for future in futures))
    assert [future.get(timeout=0)["value"] for future in futures] == [str(i) for i in range(10)]
    assert {thread for thread, fd in reads if fd == pipe.read_fd} == {pipe.reader.ident}


def test_an_answer_nobody_waits_for_is_read_once_the_park_runs_out(pipe: Pipe) -> None:
    callers_read(pipe)
    future = pipe.connection.call(Echo, value="unwatched")
    wait_until(future.done)
    assert future.get(timeout=0) == {"value": "unwatched"}


@pytest.mark.usefixtures("parked_for_good")
class FrozenClock:
    """The role's ``time`` module, with a ``monotonic()`` that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


def park_on_a_frozen_clock(
    pipe: Pipe, monkeypatch: pytest.MonkeyPatch, park: float
) -> tuple[FrozenClock, reading_module.ReadRole]:
    """``PARK`` set to ``park``, and the role's clock frozen (it moves only when told to):
    the clock, and the pipe's read role."""
    monkeypatch.setattr(reading_module, "PARK", park)
    clock = FrozenClock()
    monkeypatch.setattr(reading_module, "time", clock)
    return clock, pipe.connection._reading


def look_again(role: reading_module.ReadRole) -> None:
    """Have the parked reader thread decide again, on the clock's time."""
    with role._lock:
        role._changed.notify()


def test_the_reader_stays_parked_while_callers_keep_reading(
    pipe: Pipe, reads: list[tuple[int, int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    park = 0.02
    clock, role = park_on_a_frozen_clock(pipe, monkeypatch, park)
    callers_read(pipe)
    reads.clear()

    # Ten parks' worth of the role's time, a caller reading within every 0.6 of a park: the
    # reader thread never reads (before, it took the role back once a park after parking).
    for index in range(10):
        clock.now += 0.6 * park
        look_again(role)
        assert echo(pipe.connection, f"value {index}") == f"value {index}"
    threading.Event().wait(3 * park)  # real time for it to take the role back, if it would
    look_again(role)
    assert role.role is Role.FREE
    assert {thread for thread, fd in reads if fd == pipe.read_fd} == {threading.get_ident()}
    # Nobody reads for a park: it takes the role back, and reads what nobody waits for.
    clock.now += park
    look_again(role)
    wait_until(lambda: role.role is Role.READER)
    future = pipe.connection.call(Echo, value="unwatched")
    wait_until(future.done)
    assert pipe.reader.ident in {thread for thread, fd in reads if fd == pipe.read_fd}


class LooksRecorded(threading.Condition):
    """The role's condition, noting how long the reader thread asks to sleep at each look."""

    def __init__(self, lock: threading.Lock, reader: threading.Thread) -> None:
        super().__init__(lock)
        self.reader = reader
        self.sleeps: list[float | None] = []

    def wait(self, timeout: float | None = None) -> bool:
        if threading.current_thread() is self.reader:
            self.sleeps.append(timeout)
        return super().wait(timeout)


def test_the_parked_reader_looks_less_often_while_callers_keep_reading(
    pipe: Pipe, reads: list[tuple[int, int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A park far longer than the test, on a clock that moves only when told: the reader
    # thread looks again only when notified, and its sleeps are what it asked for.
    park = 100.0
    clock, role = park_on_a_frozen_clock(pipe, monkeypatch, park)
    looks = LooksRecorded(role._lock, pipe.reader)
    with role._lock:  # the reader thread is in os.read, not on the condition
        role._changed = looks

    def look_again_seen(count: int) -> None:
        look_again(role)
        wait_until(lambda: len(looks.sleeps) == count)

    callers_read(pipe)
    wait_until(lambda: len(looks.sleeps) == 1)
    assert looks.sleeps == [park]  # parked: quiet so far, it waits out the park
    # A caller reads within each park: every look finds callers reading, and the next one
    # comes twice as late, up to LOOK_LIMIT parks.
    for index in range(6):
        clock.now += 0.6 * park
        assert echo(pipe.connection, f"value {index}") == f"value {index}"
        look_again_seen(index + 2)
    limit = reading_module.LOOK_LIMIT * park
    assert looks.sleeps == [park, park, 2 * park, 4 * park, limit, limit, limit]
    # Quiet since that look, with part of the park left: it waits out just that part.
    clock.now += 0.25 * park
    look_again_seen(8)
    assert looks.sleeps[-1] == pytest.approx(0.75 * park)
    assert role.role is Role.FREE
    # Nobody has read for a park: it takes the role back and reads what nobody waits for.
    clock.now += park
    look_again(role)
    wait_until(lambda: role.role is Role.READER)
    reads.clear()
    unwatched = pipe.connection.call(Echo, value="unwatched")
    wait_until(unwatched.done)
    assert {thread for thread, fd in reads if fd == pipe.read_fd} == {pipe.reader.ident}
    # Parked again after serving a caller: its looks start again from one park.
    looks.sleeps.clear()
    callers_read(pipe)
    wait_until(lambda: len(looks.sleeps) >= 1)
    assert looks.sleeps[-1] == park


def test_the_parked_reader_reads_again_once_a_long_reading_caller_has_left(
    pipe: Pipe, reads: list[tuple[int, int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    park = 0.05
    monkeypatch.setattr(reading_module, "PARK", park)
    role = pipe.connection._reading
    callers_read(pipe)
    pipe.echo = False
    future = pipe.connection.call(Echo, value="long")

    def answer_later() -> None:
        wait_until(lambda: role.role is Role.CALLER)  # this thread reads for its answer
        threading.Event().wait(4 * park)  # meanwhile the parked reader thread looks, and waits
        pipe.answer(pipe.held.pop())

    answering = threading.Thread(target=answer_later)
    answering.start()
    assert future.get(timeout=10) == {"value": "long"}
    answering.join(10)
    # The caller let go and nobody waits: the reader thread takes the role back by itself (no
    # one asks it to) and reads an answer nobody waits for.
    pipe.echo = True
    unwatched = pipe.connection.call(Echo, value="unwatched")
    wait_until(unwatched.done)
    assert pipe.reader.ident in {thread for thread, fd in reads if fd == pipe.read_fd}


def test_a_callback_wakes_the_parked_reader(pipe: Pipe) -> None:
    callers_read(pipe)
    settled = threading.Event()
    pipe.connection.call(Echo, value="watched").add_done_callback(lambda _: settled.set())
    assert settled.wait(10)


@pytest.mark.usefixtures("parked_for_good")
def test_a_thread_waiting_while_a_caller_reads_gets_its_answer(pipe: Pipe) -> None:
    callers_read(pipe)
    pipe.echo = False
    first = pipe.connection.call(Echo, value="first")
    second = pipe.connection.call(Echo, value="second")
    got: dict[str, object] = {}
    reading = threading.Thread(target=lambda: got.setdefault("first", first.get(timeout=10)))
    reading.start()
    wait_until(lambda: pipe.connection._reading.role is Role.CALLER)
    waiting = threading.Thread(target=lambda: got.setdefault("second", second.get(timeout=10)))
    waiting.start()
    wait_until(lambda: pipe.connection._reading.watchers == 1)
    # The caller reading gets its answer and leaves; the other's comes after: the reader
    # thread, asked to take the pipe back, reads it.
    pipe.answer(pipe.held[0])
    reading.join(10)
    pipe.answer(pipe.held[1])
    waiting.join(10)
    assert got == {"first": {"value": "first"}, "second": {"value": "second"}}


@pytest.mark.usefixtures("parked_for_good")
def test_a_caller_reading_is_woken_by_its_request_timeout() -> None:
    pipe = Pipe(request_timeout=0.2)
    try:
        callers_read(pipe)
        pipe.echo = False
        with pytest.raises(RequestTimeout):
            pipe.connection.call(Echo, value="never answered").get()
        assert pipe.connection._reading.role is Role.FREE
    finally:
        pipe.connection.connection_lost(ProcessUnavailable("the test ended"))
        pipe.close()


@pytest.mark.usefixtures("parked_for_good")
def test_a_caller_reading_is_woken_when_the_connection_is_lost(pipe: Pipe) -> None:
    # The connection can end while the child's stdout stays open (a grandchild holds it).
    callers_read(pipe)
    pipe.echo = False
    future = pipe.connection.call(Echo, value="never answered")
    threading.Timer(0.2, pipe.connection.connection_lost, [ProcessUnavailable("gone")]).start()
    with pytest.raises(ProcessUnavailable, match="gone"):
        future.get()


@pytest.mark.usefixtures("parked_for_good")
def test_get_with_a_timeout_while_reading_then_the_answer_comes(pipe: Pipe) -> None:
    callers_read(pipe)
    pipe.echo = False
    future = pipe.connection.call(Echo, value="late")
    with pytest.raises(pykka.Timeout):
        future.get(timeout=0.1)
    assert pipe.connection._reading.role is Role.FREE
    pipe.answer(pipe.held.pop())
    assert future.get(timeout=10) == {"value": "late"}
    pipe.echo = True
    assert echo(pipe.connection, "next") == "next"


@pytest.mark.usefixtures("parked_for_good")
def test_end_of_file_met_by_a_caller_ends_the_reader_thread(pipe: Pipe) -> None:
    callers_read(pipe)
    pipe.echo = False
    future = pipe.connection.call(Echo, value="never answered")
    threading.Timer(0.1, os.close, [pipe.write_fd]).start()
    got: list[BaseException] = []

    def wait() -> None:
        try:
            future.get(timeout=10)
        except BaseException as error:
            got.append(error)

    waiting = threading.Thread(target=wait)
    waiting.start()
    pipe.reader.join(10)
    assert not pipe.reader.is_alive()  # the reader thread read end of file and returned
    pipe.write_fd = -1
    # What the process actor does once the child's stdout ended: the caller learns.
    pipe.connection.connection_lost(ProcessUnavailable("stdout closed"))
    waiting.join(10)
    assert len(got) == 1 and isinstance(got[0], ProcessUnavailable)
    assert pipe.losses == []


@pytest.mark.usefixtures("parked_for_good")
def test_bad_bytes_met_by_a_caller_are_reported_by_the_reader_thread(pipe: Pipe) -> None:
    callers_read(pipe)
    pipe.echo = False
    future = pipe.connection.call(Echo, value="never answered")
    threading.Timer(0.1, pipe.answer, [b"no separator here\r\n\r\n"]).start()
    with pytest.raises(pykka.Timeout):
        future.get(timeout=0.3)
    wait_until(lambda: bool(pipe.losses))
    (loss,) = pipe.losses
    assert loss.cause == "protocol_error"
    assert isinstance(loss.error, MalformedBox)
    assert loss.sample == b"no separator here\r\n\r\n"
    # The reader thread drains the pipe until end of file, so the child never blocks.
    os.close(pipe.write_fd)
    pipe.write_fd = -1
    pipe.reader.join(10)
    assert not pipe.reader.is_alive()


def test_many_threads_waiting_and_reading_all_get_their_answers(pipe: Pipe) -> None:
    failures: list[BaseException] = []

    def caller(index: int) -> None:
        try:
            for round_ in range(300):
                value = f"{index}-{round_}"
                if round_ % 7 == 0:
                    future = pipe.connection.call(Echo, value=value)
                    settled = threading.Event()
                    future.add_done_callback(lambda _, settled=settled: settled.set())
                    assert settled.wait(10)
                    assert future.get(timeout=0) == {"value": value}
                else:
                    assert echo(pipe.connection, value) == value
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=caller, args=(index,)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert failures == []
    assert pipe.connection.stats()["answered"] == 8 * 300
    wait_until(lambda: pipe.connection._reading.watchers == 0)


def test_the_wake_pipe_is_closed_when_the_reader_ends() -> None:
    before = set(os.listdir("/proc/self/fd"))
    pipe = Pipe()
    assert echo(pipe.connection, "one") == "one"
    pipe.connection.connection_lost(ProcessUnavailable("the test ended"))
    pipe.close()
    assert set(os.listdir("/proc/self/fd")) - before == set()


@pytest.mark.usefixtures("parked_for_good")
def test_a_raising_callback_does_not_cost_a_reading_caller_its_answer(pipe: Pipe) -> None:
    # The caller reading gets two answers in one read: another request's (whose callback
    # raises) and then its own.
    callers_read(pipe)
    pipe.echo = False
    other = pipe.connection.call(Echo, value="other")
    # Attached as ReplyFuture's, not the connection's, so that the reader thread stays parked
    # and the caller below reads both answers.
    ReplyFuture.add_done_callback(other, lambda _: 1 / 0)
    mine = pipe.connection.call(Echo, value="mine")
    assert pipe.connection._reading.role is Role.FREE
    threading.Timer(0.1, pipe.answer, [pipe.held[0] + pipe.held[1]]).start()
    assert mine.get(timeout=10) == {"value": "mine"}
    assert other.get(timeout=0) == {"value": "other"}


def no_pipe_after_the_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """File descriptors run out after the test's own pipe (the "child's stdout"): the wake
    pipe cannot be made."""
    real_pipe = os.pipe
    pipes_left = [1]

    def pipe_while_fds_last() -> tuple[int, int]:
        if not pipes_left:
            raise OSError(24, "Too many open files")
        pipes_left.pop()
        return real_pipe()

    monkeypatch.setattr(reading_module.os, "pipe", pipe_while_fds_last)


def test_without_a_wake_pipe_the_reader_thread_reads_everything(
    monkeypatch: pytest.MonkeyPatch, reads: list[tuple[int, int]]
) -> None:
    # No file descriptor left for the wake pipe: callers must not read (nothing could wake
    # one whose request times out), and everything still gets answered.
    no_pipe_after_the_first(monkeypatch)
    pipe = Pipe(request_timeout=5)
    try:
        for index in range(20):
            assert echo(pipe.connection, str(index)) == str(index)
        assert {thread for thread, fd in reads if fd == pipe.read_fd} == {pipe.reader.ident}
    finally:
        pipe.connection.connection_lost(ProcessUnavailable("the test ended"))
        monkeypatch.undo()
        pipe.close()


class ShuffledChild:
    """A child thread that answers what it reads late, out of order, in bursts, and ignores
    the requests whose value starts with "drop"."""

    def __init__(self, seed: int) -> None:
        self.read_fd, self.to_child = os.pipe()
        self.from_child, self.write_fd = os.pipe()
        self._random = random.Random(seed)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        parser = BoxParser()
        held: list[bytes] = []
        while True:
            if held and not select.select([self.read_fd], [], [], 0.001)[0]:
                # Nothing more to read for now: whatever is held back goes out.
                os.write(self.write_fd, b"".join(held))
                held.clear()
                continue
            data = os.read(self.read_fd, 65536)
            if not data:
                break
            for box in parser.feed(data):
                if not box["value"].startswith("drop"):
                    held.append(answer_bytes(box["_ask"], Box(value=box["value"])))
            self._random.shuffle(held)
            burst = self._random.randint(0, len(held))
            if burst:
                if self._random.random() < 0.3:
                    threading.Event().wait(self._random.random() * 0.002)
                os.write(self.write_fd, b"".join(held[:burst]))
                del held[:burst]
        if held:
            os.write(self.write_fd, b"".join(held))
        os.close(self.write_fd)
        os.close(self.read_fd)

    def write(self, data: bytes) -> None:
        os.write(self.to_child, data)

    def end(self) -> None:
        os.close(self.to_child)
        self._thread.join(10)
        assert not self._thread.is_alive()


@pytest.mark.parametrize("seed", range(3))
def test_every_way_of_waiting_at_once_settles_every_future(seed: int) -> None:
    # Threads wait in every way there is (get alone, get with a deadline, callbacks, asking
    # later) on a child that answers late, out of order and in bursts, and ignores some
    # requests (their timeouts fire while callers read). Every future must settle with its own
    # value, or with RequestTimeout for an ignored request; then the connection ends cleanly.
    child = ShuffledChild(seed)
    losses: list[ConnectionLoss] = []
    connection = Connection(child.write, pid=1, generation=1, on_lost=losses.append)
    reader = threading.Thread(target=connection.serve_reads, args=(child.from_child,), daemon=True)
    reader.start()
    failures: list[str] = []

    def caller(index: int) -> None:
        chooser = random.Random(seed * 100 + index)
        later: list[tuple[str, ReplyFuture[dict[str, object]]]] = []
        try:
            for round_ in range(120):
                value = f"{index}-{round_}"
                way = chooser.choice(["get", "deadline", "callback", "later", "drop"])
                if way == "drop":
                    value = "drop " + value
                    future = connection.call(Echo, value=value, timeout=0.05)
                    with pytest.raises(RequestTimeout):
                        future.get(timeout=10)
                    continue
                future = connection.call(Echo, value=value)
                if way == "get":
                    assert future.get(timeout=10) == {"value": value}
                elif way == "deadline":
                    with contextlib.suppress(pykka.Timeout):
                        future.get(timeout=chooser.random() * 0.001)
                    later.append((value, future))
                elif way == "callback":
                    settled = threading.Event()
                    future.add_done_callback(lambda _, settled=settled: settled.set())
                    assert settled.wait(10)
                    assert future.get(timeout=0) == {"value": value}
                else:
                    later.append((value, future))
            for value, future in later:
                assert future.get(timeout=10) == {"value": value}
        except BaseException as error:
            failures.append(f"caller {index}: {error!r}")

    threads = [threading.Thread(target=caller, args=(index,)) for index in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert failures == []
    assert connection.in_flight == 0
    wait_until(lambda: connection._reading.watchers == 0)
    child.end()
    reader.join(10)
    assert not reader.is_alive() and losses == []
    connection.connection_lost(ProcessUnavailable("the test ended"))
    os.close(child.from_child)


def test_a_request_future_maps_and_joins_like_any_pykka_future(pipe: Pipe) -> None:
    # pykka's combinators make a future of the same class with no arguments: one that only
    # waits on the future it maps (it reads nothing itself).
    first = pipe.connection.call(Echo, value="first")
    second = pipe.connection.call(Echo, value="second")
    value = first.map(lambda answer: answer["value"])
    both = first.join(second)
    assert value.get(timeout=10) == "first"
    assert both.get(timeout=10) == [{"value": "first"}, {"value": "second"}]


def test_a_callback_can_be_added_to_a_mapped_future_before_it_settles() -> None:
    # A future made by map() has no connection of its own to read for it: adding a callback
    # before it settles must not ask one to, and the future still maps its answer.
    pipe = Pipe(echo=False)
    try:
        first = pipe.connection.call(Echo, value="first")
        value = first.map(lambda answer: answer["value"])
        value.add_done_callback(lambda _: None)
        pipe.answer(pipe.held.pop())
        assert value.get(timeout=10) == "first"
    finally:
        pipe.connection.connection_lost(ProcessUnavailable("the test ended"))
        pipe.close()


def test_without_a_wake_pipe_the_warning_names_the_cause(monkeypatch: pytest.MonkeyPatch) -> None:
    no_pipe_after_the_first(monkeypatch)
    with structlog.testing.capture_logs() as logs:
        pipe = Pipe()
        try:
            assert echo(pipe.connection, "one") == "one"
        finally:
            pipe.connection.connection_lost(ProcessUnavailable("the test ended"))
            monkeypatch.undo()
            pipe.close()
    warnings = [entry for entry in logs if entry["event"] == "callers_do_not_read"]
    assert len(warnings) == 1
    assert warnings[0]["log_level"] == "warning"
    assert warnings[0]["error"] == "[Errno 24] Too many open files"


@pytest.fixture
def wake_pipe_on_descriptor_zero(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The wake pipe's read end is descriptor 0, as in a host whose stdin is closed (a
    daemon's): a new pipe takes the lowest free numbers. Yields the wake pipe's write end."""
    real_pipe = os.pipe
    saved_stdin = os.dup(0)
    made: list[int] = []
    pipes = [0]

    def second_pipe_on_zero() -> tuple[int, int]:
        read_end, write_end = real_pipe()
        pipes[0] += 1
        if pipes[0] != 2:  # the first is the test's own (the "child's stdout")
            return read_end, write_end
        os.dup2(read_end, 0)
        os.close(read_end)
        made.append(write_end)
        return 0, write_end

    monkeypatch.setattr(reading_module.os, "pipe", second_pipe_on_zero)
    try:
        yield made
    finally:
        monkeypatch.undo()
        os.dup2(saved_stdin, 0)
        os.close(saved_stdin)


@pytest.mark.usefixtures("parked_for_good")
def test_a_wake_pipe_on_descriptor_zero_serves_callers_and_is_closed_at_the_end(
    wake_pipe_on_descriptor_zero: list[int], reads: list[tuple[int, int]]
) -> None:
    pipe = Pipe(request_timeout=0.2)
    try:
        callers_read(pipe)
        assert wake_pipe_on_descriptor_zero, "the wake pipe was not made"
        reads.clear()
        assert echo(pipe.connection, "mine") == "mine"
        assert {thread for thread, fd in reads if fd == pipe.read_fd} == {threading.get_ident()}
        # A caller reading, with no deadline of its own, is woken through descriptor 0 when
        # its request times out.
        pipe.echo = False
        future = pipe.connection.call(Echo, value="never answered")
        outcome: list[BaseException] = []

        def wait_for_ever() -> None:
            try:
                future.get()
            except BaseException as error:
                outcome.append(error)

        waiting = threading.Thread(target=wait_for_ever, daemon=True)
        waiting.start()
        waiting.join(10)
        assert not waiting.is_alive(), "the reading caller was never woken"
        assert len(outcome) == 1 and isinstance(outcome[0], RequestTimeout)
    finally:
        pipe.connection.connection_lost(ProcessUnavailable("the test ended"))
        pipe.close()
    (write_end,) = wake_pipe_on_descriptor_zero
    for fd in (0, write_end):
        with pytest.raises(OSError):
            os.fstat(fd)  # closed by the reader thread as it ended


def _two_unanswered(pipe: Pipe) -> tuple[ReplyFuture[dict[str, object]], ...]:
    """Two requests whose answers the test holds back: ``mine`` (a caller will read for it)
    and ``other`` (another thread will wait for it behind that caller)."""
    pipe.echo = False
    mine = pipe.connection.call(Echo, value="mine")
    other = pipe.connection.call(Echo, value="other")
    return mine, other


@pytest.mark.usefixtures("parked_for_good")
def test_a_reading_caller_keeps_its_deadline_after_reading_for_another_thread(pipe: Pipe) -> None:
    # Once a read settled another thread's future, the reading caller sleeps on the pipe
    # (no spin: the other thread needs the GIL), and still only until its own deadline.
    callers_read(pipe)
    mine, other = _two_unanswered(pipe)
    outcome: list[BaseException] = []

    def read_for_mine() -> None:
        try:
            # Long enough for the other thread to start waiting behind this one first.
            mine.get(timeout=3.0)
        except BaseException as error:
            outcome.append(error)

    reading = threading.Thread(target=read_for_mine, daemon=True)
    reading.start()
    wait_until(lambda: pipe.connection._reading.role is Role.CALLER)
    waiting = threading.Thread(target=other.get, kwargs={"timeout": 10}, daemon=True)
    waiting.start()
    wait_until(lambda: pipe.connection._reading.watchers == 1)
    pipe.answer(pipe.held[1])  # the other's answer only: read by the caller reading
    waiting.join(10)
    assert other.get(timeout=0) == {"value": "other"}
    reading.join(15)
    assert not reading.is_alive(), "the reading caller overslept its deadline"
    assert len(outcome) == 1 and isinstance(outcome[0], pykka.Timeout)


@pytest.mark.usefixtures("parked_for_good")
def test_a_reading_caller_without_a_deadline_reads_for_another_thread_then_itself(
    pipe: Pipe,
) -> None:
    callers_read(pipe)
    mine, other = _two_unanswered(pipe)
    got: list[object] = []
    reading = threading.Thread(target=lambda: got.append(mine.get()), daemon=True)
    reading.start()
    wait_until(lambda: pipe.connection._reading.role is Role.CALLER)
    waiting = threading.Thread(target=other.get, kwargs={"timeout": 10}, daemon=True)
    waiting.start()
    wait_until(lambda: pipe.connection._reading.watchers == 1)
    pipe.answer(pipe.held[1])
    waiting.join(10)
    assert other.get(timeout=0) == {"value": "other"}
    pipe.answer(pipe.held[0])
    reading.join(10)
    assert got == [{"value": "mine"}]


@pytest.mark.usefixtures("parked_for_good")
def test_bad_bytes_met_by_a_caller_are_reported_from_the_start_of_their_read(
    pipe: Pipe,
) -> None:
    # A long bad read: its first 80 bytes are the sample; what the child writes afterwards
    # (read by the reader thread, which drains the pipe) changes nothing of the report.
    callers_read(pipe)
    pipe.echo = False
    future = pipe.connection.call(Echo, value="never answered")
    bad = b"no separator, " * 20 + b"\r\n\r\n"
    threading.Timer(0.1, pipe.answer, [bad]).start()
    threading.Timer(0.4, pipe.answer, [b"more of the same, later\r\n\r\n"]).start()
    with pytest.raises((pykka.Timeout, ProcessUnavailable)):
        future.get(timeout=0.8)
    wait_until(lambda: bool(pipe.losses))
    (loss,) = pipe.losses
    assert loss.cause == "protocol_error"
    assert loss.sample == bad[:80]


@pytest.mark.usefixtures("parked_for_good")
def test_the_reader_thread_asked_back_reads_on_until_a_caller_waits_behind_it(
    pipe: Pipe,
) -> None:
    # A callback asks the parked reader thread back; having read it, the reader thread keeps
    # the pipe (nobody waited behind it since), so an answer nobody waits for is read too.
    callers_read(pipe)
    settled = threading.Event()
    pipe.connection.call(Echo, value="watched").add_done_callback(lambda _: settled.set())
    assert settled.wait(10)
    unwatched = pipe.connection.call(Echo, value="unwatched")
    wait_until(unwatched.done)
    assert unwatched.get(timeout=0) == {"value": "unwatched"}


def test_bad_bytes_met_by_the_reader_thread_are_reported_from_the_start_of_their_read(
    pipe: Pipe,
) -> None:
    bad = b"no separator, " * 20 + b"\r\n\r\n"
    pipe.answer(bad)
    wait_until(lambda: bool(pipe.losses))
    (loss,) = pipe.losses
    assert loss.cause == "protocol_error"
    assert loss.sample == bad[:80]
