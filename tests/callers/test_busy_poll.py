"""Busy polling: a wait may spin on ``poll(0)`` before it sleeps, while that brings data sooner.

``BusyPoll`` is driven here with a fake clock and a fake ``poll`` whose data arrives at a time
the test sets, so every decision (spin or sleep, for how long) is the test's, not the machine's.
The last tests check where the connection and the child runtime use it.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import math
import os
import select
import sys
import threading
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest

from juicectl import ProcessController
from juicectl._busy_poll import (
    DEFAULT_BUSY_POLL,
    EXPLORE_EVERY,
    MAX_BUSY_POLL,
    MAX_QUIET,
    BusyPoll,
    check_busy_poll,
)
from juicectl._reading import Role
from juicectl.child import _io as child_io
from juicectl.child import run, serve
from juicectl.exceptions import ProcessUnavailable
from juicectl.juice import BoxParser, request_bytes
from juicectl.policy import ConnectionOptions
from tests.callers.test_who_reads import (
    Pipe,
    callers_read,
    echo,
    parked_for_good,  # noqa: F401 (a fixture)
    wait_until,
)
from tests.workers.runtime import Echo, TestWorker

US = 1e-6
BUDGET = 100 * US
READY = [(3, select.POLLIN)]


class Peer:
    """A fake clock and a fake ``poll``: data arrives ``latency`` after each wait starts.

    A ``poll(0)`` costs ``step`` of fake time. A sleeping ``poll(ms)`` returns when the data
    arrives plus ``wake`` (the cost of being woken), or when its time runs out.
    """

    def __init__(self, latency: float, *, wake: float = 0.0, step: float = 1 * US) -> None:
        self.now = 1000.0
        self.latency = latency
        self.wake = wake
        self.step = step
        self.arrives = math.inf
        self.spin_polls = 0
        self.sleeps: list[float | None] = []

    def clock(self) -> float:
        return self.now

    def send(self, latency: float | None = None) -> None:
        """The next data arrives ``latency`` (default: the peer's) from now."""
        self.arrives = self.now + (self.latency if latency is None else latency)

    def poll(self, ms: float | None) -> list[tuple[int, int]]:
        assert ms is None or ms >= 0, f"poll({ms}): a negative timeout waits for ever"
        if ms == 0:
            self.spin_polls += 1
            self.now += self.step
            return READY if self.now >= self.arrives else []
        self.sleeps.append(ms)
        until = self.arrives + self.wake
        if ms is not None:
            until = min(until, self.now + ms / 1000.0)
        self.now = max(self.now, until)
        return READY if self.now >= self.arrives else []

    def waits(self, busy: BusyPoll, count: int, latency: float | None = None) -> int:
        """``count`` waits, each for data sent at its start; returns how many spun."""
        spins = busy.spins
        for _ in range(count):
            self.send(latency)
            assert busy.wait(self.poll, None) == READY
        return busy.spins - spins


def settled(peer: Peer, budget: float = BUDGET) -> BusyPoll:
    """A ``BusyPoll`` past its first waits: spinning while they hit, sleeping once they miss."""
    busy = BusyPoll(budget, clock=peer.clock)
    peer.waits(busy, 4)
    return busy


# --- the budget ---------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, 0.0, 1e-6, 0.0001, MAX_BUSY_POLL])
def test_a_budget_from_0_to_10_ms_is_accepted(value: float) -> None:
    assert check_busy_poll(value) == value
    assert BusyPoll(value).budget == value


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (-0.0001, ValueError),
        (0.011, ValueError),
        (math.nan, ValueError),
        (math.inf, ValueError),
        ("0.0001", TypeError),
        (True, TypeError),
        (None, TypeError),
    ],
)
def test_a_bad_budget_says_what_is_wrong(value: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="busy_poll must be"):
        check_busy_poll(value)
    with pytest.raises(error, match="busy_poll must be"):
        BusyPoll(value)  # type: ignore[arg-type]


def test_a_zero_budget_never_spins() -> None:
    peer = Peer(10 * US)
    busy = BusyPoll(0, clock=peer.clock)
    assert peer.waits(busy, 500) == 0
    assert peer.spin_polls == 0
    assert peer.sleeps == [None] * 500
    assert not busy.prefers_spinning()


# --- one wait -----------------------------------------------------------------------------


def test_every_wait_spins_while_the_spins_find_the_data() -> None:
    peer = Peer(10 * US)
    busy = BusyPoll(BUDGET, clock=peer.clock)
    assert peer.waits(busy, 500) == 500
    assert peer.sleeps == []  # each spin found the data
    assert busy.prefers_spinning()


def test_a_first_spin_that_finds_nothing_turns_spinning_off() -> None:
    peer = Peer(1e-3)
    busy = BusyPoll(BUDGET, clock=peer.clock)
    assert peer.waits(busy, 1) == 1
    assert peer.sleeps == [None]  # the spin found nothing: a sleep for the rest
    assert not busy.prefers_spinning()
    assert peer.waits(busy, 10) == 0
    assert peer.sleeps == [None] * 11


def test_a_spin_returns_as_soon_as_the_data_is_there() -> None:
    peer = Peer(30 * US)
    busy = BusyPoll(BUDGET, clock=peer.clock)
    start = peer.now
    peer.send()
    assert busy.wait(peer.poll, None) == READY
    assert peer.now - start == pytest.approx(30 * US, abs=1.5 * US)
    assert peer.sleeps == []


def test_a_spin_that_finds_nothing_sleeps_for_the_rest_of_the_wait() -> None:
    peer = Peer(500 * US)
    busy = BusyPoll(BUDGET, clock=peer.clock)
    start = peer.now
    peer.send()
    assert busy.wait(peer.poll, None) == READY
    assert peer.spin_polls == pytest.approx(100, abs=1)  # 100 us of 1 us polls
    assert peer.sleeps == [None]
    assert peer.now - start == pytest.approx(500 * US)


def test_a_timeout_shorter_than_the_budget_bounds_the_spin() -> None:
    peer = Peer(math.inf)
    busy = BusyPoll(BUDGET, clock=peer.clock)
    start = peer.now
    assert busy.wait(peer.poll, 20 * US) == []
    assert peer.now - start == pytest.approx(20 * US, abs=1.5 * US)
    assert peer.spin_polls == pytest.approx(20, abs=1)
    assert peer.sleeps == []  # the spin used the whole timeout: no sleep after it


def test_a_spin_that_overshoots_the_timeout_ends_with_poll_0_not_a_negative_wait() -> None:
    # Each poll(0) costs 3 us: the spin ends 1 us past a 20 us timeout. A poll() given the
    # negative time left would wait for ever (the fake poll refuses one).
    peer = Peer(math.inf, step=3 * US)
    busy = BusyPoll(BUDGET, clock=peer.clock)
    assert busy.wait(peer.poll, 20 * US) == []
    assert peer.sleeps == []
    assert peer.spin_polls == 8  # seven in the spin, then poll(0) for the time left


def test_the_sleep_after_a_spin_gets_the_time_left() -> None:
    peer = Peer(math.inf)
    busy = BusyPoll(BUDGET, clock=peer.clock)
    start = peer.now
    assert busy.wait(peer.poll, 1.0) == []
    assert len(peer.sleeps) == 1
    assert peer.sleeps[0] == pytest.approx((1.0 - BUDGET) * 1000, abs=0.002)
    assert peer.now - start == pytest.approx(1.0)


@pytest.mark.parametrize("budget", [0.0, BUDGET], ids=["no-budget", "spins-missed"])
def test_a_wait_that_does_not_spin_sleeps_for_the_whole_timeout(budget: float) -> None:
    peer = Peer(math.inf)
    busy = BusyPoll(budget, clock=peer.clock)
    if budget:
        assert busy.wait(peer.poll, 1e-3) == []  # a spin that finds nothing turns it off
        peer.sleeps.clear()
    start = peer.now
    assert busy.wait(peer.poll, 0.25) == []
    assert peer.sleeps == [pytest.approx(250.0)]  # one poll, in milliseconds
    assert peer.now - start == pytest.approx(0.25)


def test_read_sleeps_in_read_itself_when_it_does_not_spin() -> None:
    peer = Peer(10 * US)
    busy = BusyPoll(BUDGET, clock=peer.clock)
    reads: list[tuple[int, int]] = []

    def read() -> bytes:
        reads.append((peer.spin_polls, len(peer.sleeps)))
        peer.now = max(peer.now, peer.arrives)
        return b"data"

    peer.send()
    assert busy.read(peer.poll, read) == b"data"  # the first wait spins: polls, then reads
    assert reads == [(10, 0)]
    for count in range(1, 4):  # spins that find nothing within the budget, then read()
        peer.send(1e-3)
        assert busy.read(peer.poll, read) == b"data"
        assert reads[count][0] - reads[count - 1][0] == pytest.approx(100, abs=1)
    assert not busy.prefers_spinning()
    peer.send()
    assert busy.read(peer.poll, read) == b"data"  # spinning is off: read() at once
    assert reads[4] == reads[3]
    assert busy.spins == 4
    assert peer.sleeps == []  # read() itself is the sleep


# --- choosing between spinning and sleeping -----------------------------------------------


def test_spinning_is_kept_while_it_brings_data_sooner() -> None:
    # An idle machine: data comes 20 us after a wait starts, and a sleeper wakes 40 us late.
    peer = Peer(20 * US, wake=40 * US)
    busy = settled(peer)
    assert busy.prefers_spinning()
    count = EXPLORE_EVERY * 10
    assert peer.waits(busy, count) == count
    assert busy.prefers_spinning()


def test_spinning_is_kept_while_it_hits_even_when_a_sleep_would_be_as_fast() -> None:
    # Data already there, or a sleeper woken at once: the wait alone cannot tell the ways
    # apart. The other side's wait can (it waits for this side's wake-up), and so can the
    # Python that runs after it: a spin that hits is kept.
    for latency in (0.0, 20 * US):
        peer = Peer(latency)
        busy = settled(peer)
        assert peer.waits(busy, 200) == 200
        assert busy.prefers_spinning()


def test_spins_that_mostly_miss_turn_spinning_off() -> None:
    # Data comes 1 ms after each wait (a slow handler), and now and then at once: a quarter
    # of the spins hit.
    peer = Peer(1e-3)
    busy = BusyPoll(BUDGET, clock=peer.clock)
    for _ in range(50):
        peer.waits(busy, 1, latency=0.0)
        peer.waits(busy, 3)
    assert not busy.prefers_spinning()


def test_trial_spins_that_find_nothing_come_ever_further_apart() -> None:
    # Data comes 1 ms after each wait starts (a slow handler): no spin can catch it.
    peer = Peer(1e-3, wake=40 * US)
    busy = BusyPoll(BUDGET, clock=peer.clock)
    assert peer.waits(busy, 1) == 1  # the first wait spins, and finds nothing
    assert not busy.prefers_spinning()
    trials = []
    for index in range(20000):
        if peer.waits(busy, 1):
            trials.append(index)
    gaps = [later - earlier for earlier, later in itertools.pairwise(trials)]
    # After the first wait's miss, the first trial comes 128 waits on.
    assert trials[0] == 2 * EXPLORE_EVERY - 1
    assert gaps[:5] == [256, 512, 1024, 2048, 4096]
    assert set(gaps[5:]) == {MAX_QUIET}
    assert not busy.prefers_spinning()


def test_trial_spins_that_find_data_turn_spinning_back_on() -> None:
    peer = Peer(1e-3, wake=40 * US)
    busy = settled(peer)
    peer.waits(busy, 5000)  # trials are 1024 apart by now
    assert not busy.prefers_spinning()
    peer.latency = 20 * US  # quick answers again
    trials = []
    index = 0
    while not busy.prefers_spinning():
        if peer.waits(busy, 1):
            trials.append(index)
        index += 1
        assert index < 10000
    gaps = {later - earlier for earlier, later in itertools.pairwise(trials)}
    assert gaps == {EXPLORE_EVERY}  # from the first trial that found data on
    assert len(trials) == 3  # three hits in a row outweigh the misses (HIT_SHARE)
    assert peer.waits(busy, 100) == 100


def test_a_machine_that_gets_busy_turns_spinning_off_and_back_on() -> None:
    peer = Peer(20 * US, wake=40 * US)
    busy = settled(peer)
    peer.waits(busy, 200)
    assert busy.prefers_spinning()
    # Busy: a spinning waiter keeps the other side from running, and it answers late; a
    # sleeper is woken at once (no idle CPU to wake up).
    peer.latency, peer.wake = 300 * US, 0.0
    peer.waits(busy, 10)
    assert not busy.prefers_spinning()
    # Quiet again: the trial spins notice.
    peer.latency, peer.wake = 20 * US, 40 * US
    peer.waits(busy, 2000)
    assert busy.prefers_spinning()


def test_one_long_idle_wait_does_not_make_spinning_look_good() -> None:
    # A slow handler (spins never pay), then a ten-second gap while sleeping: a sleep counts
    # for nothing, so sleeping stays preferred.
    peer = Peer(1e-3, wake=40 * US)
    busy = settled(peer)
    peer.waits(busy, 100)
    peer.waits(busy, 1, latency=10.0)
    assert peer.waits(busy, 200) <= 2
    assert not busy.prefers_spinning()


# --- where the connection spins -----------------------------------------------------------


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float | None]:
    """The timeout of every wait a reading caller makes through ``BusyPoll.wait``."""
    seen: list[float | None] = []
    real_wait = BusyPoll.wait

    def wait(self: BusyPoll, poll: Any, timeout: float | None) -> Any:
        seen.append(timeout)
        return real_wait(self, poll, timeout)

    monkeypatch.setattr(BusyPoll, "wait", wait)
    return seen


@contextlib.contextmanager
def reading_pipe(**options: Any) -> Iterator[Pipe]:
    """A ``Pipe`` whose callers read their own answers, its reader thread parked for good."""
    pipe = Pipe(**options)
    try:
        callers_read(pipe)
        yield pipe
    finally:
        pipe.connection.connection_lost(ProcessUnavailable("the test ended"))
        pipe.close()


@pytest.mark.usefixtures("parked_for_good")
def test_a_caller_reading_alone_spins_first(waits: list[float | None]) -> None:
    with reading_pipe() as pipe:
        spins = pipe.connection._reading.busy_poll.spins
        for index in range(20):
            assert echo(pipe.connection, f"v{index}") == f"v{index}"
        assert len(waits) >= 20
        assert pipe.connection._reading.busy_poll.spins > spins


@pytest.mark.usefixtures("parked_for_good")
def test_a_connection_with_a_zero_budget_never_spins(waits: list[float | None]) -> None:
    with reading_pipe(busy_poll=0) as pipe:
        for index in range(20):
            assert echo(pipe.connection, f"v{index}") == f"v{index}"
        assert len(waits) >= 20  # callers read, and wait through BusyPoll...
        assert pipe.connection._reading.busy_poll.spins == 0  # ...which never spins


def _held_calls(pipe: Pipe, waits: list[float | None], *values: str) -> list[Any]:
    """Echo calls whose answers the test writes itself; the record of waits starts empty."""
    pipe.echo = False
    waits.clear()
    return [pipe.connection.call(Echo, value=value) for value in values]


def _getting(future: Any) -> threading.Thread:
    """A thread blocked in ``future.get()`` (10 s at most)."""
    thread = threading.Thread(target=future.get, kwargs={"timeout": 10})
    thread.start()
    return thread


@pytest.mark.usefixtures("parked_for_good")
def test_no_spin_right_after_a_read_that_woke_another_thread(waits: list[float | None]) -> None:
    with reading_pipe() as pipe:
        connection = pipe.connection
        [first] = _held_calls(pipe, waits, "first")
        reading = _getting(first)
        wait_until(lambda: len(waits) == 1)  # the first caller reads, and waits
        second = connection.call(Echo, value="second")
        waiting = _getting(second)
        wait_until(lambda: connection._reading.watchers == 1)  # the second waits without reading
        first_answer, second_answer = pipe.held
        pipe.answer(second_answer)  # read by the first caller: it wakes the second thread
        waiting.join(10)
        assert second.get(timeout=0) == {"value": "second"}
        pipe.answer(first_answer)
        reading.join(10)
        assert first.get(timeout=0) == {"value": "first"}
        # The first caller's wait after that read was a plain poll, not a spin.
        assert len(waits) == 1


@pytest.mark.usefixtures("parked_for_good")
def test_no_spin_while_other_requests_are_in_flight(waits: list[float | None]) -> None:
    with reading_pipe() as pipe:
        connection = pipe.connection
        first, second = _held_calls(pipe, waits, "first", "second")
        reading = _getting(first)
        wait_until(lambda: connection._reading.role is Role.CALLER and len(pipe.held) == 2)
        first_answer, second_answer = pipe.held
        pipe.answer(second_answer)  # read by the first caller, while two were in flight
        wait_until(second.done)
        # Only now, its own request alone in flight, does the caller wait through BusyPoll.
        wait_until(lambda: len(waits) == 1)
        pipe.answer(first_answer)
        reading.join(10)
        assert first.get(timeout=0) == {"value": "first"}
        assert len(waits) == 1


def test_connection_options_refuse_a_bad_budget() -> None:
    with pytest.raises(ValueError, match=r"busy_poll must be between 0 and 0\.01 seconds"):
        ConnectionOptions(busy_poll=1.0)


def test_a_controller_refuses_a_bad_budget_and_starts_nothing() -> None:
    threads = threading.active_count()
    with pytest.raises(ValueError, match=r"busy_poll must be between 0 and 0\.01 seconds"):
        ProcessController.start([sys.executable, "-c", "pass"], busy_poll=-1)
    with pytest.raises(TypeError, match="busy_poll must be a number of seconds"):
        ProcessController.start([sys.executable, "-c", "pass"], busy_poll="fast")  # type: ignore[arg-type]
    assert threading.active_count() == threads


# --- where the child spins ----------------------------------------------------------------


class _Recorded(BusyPoll):
    made: ClassVar[list[float]] = []

    def __init__(self, budget: float) -> None:
        super().__init__(budget)
        _Recorded.made.append(budget)


@pytest.fixture
def budgets(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The budget of every ``BusyPoll`` the child runtime makes."""
    _Recorded.made = []
    monkeypatch.setattr(child_io, "BusyPoll", _Recorded)
    return _Recorded.made


class _NoSpinWorker(TestWorker):
    busy_poll = 0.0


def _serve_one_echo(worker: object, **options: Any) -> None:
    to_child_r, to_child_w = os.pipe()
    from_child_r, from_child_w = os.pipe()
    try:
        os.write(to_child_w, request_bytes(Echo, "1", Echo.make_arguments({"value": "v"})))
        os.close(to_child_w)
        serve(worker, to_child_r, from_child_w, **options)
        assert BoxParser().feed(os.read(from_child_r, 65536)) == [{"value": "v", "_answer": "1"}]
    finally:
        os.close(to_child_r)
        os.close(from_child_r)


@pytest.mark.parametrize(
    ("worker", "options", "made"),
    [
        (TestWorker(), {}, [DEFAULT_BUSY_POLL]),
        (_NoSpinWorker(), {}, []),
        (_NoSpinWorker(), {"busy_poll": 0.002}, [0.002]),
        (TestWorker(), {"busy_poll": 0}, []),
        (TestWorker(), {"concurrency": 2}, []),  # a concurrent worker's reader never spins
    ],
    ids=["default", "worker-attribute", "argument-wins", "zero", "concurrent"],
)
def test_the_child_spins_as_configured(
    budgets: list[float], worker: object, options: dict[str, Any], made: list[float]
) -> None:
    _serve_one_echo(worker, **options)
    assert budgets == made


def test_serve_refuses_a_bad_budget() -> None:
    with pytest.raises(ValueError, match=r"busy_poll must be between 0 and 0\.01 seconds"):
        serve(TestWorker(), io.BytesIO(), io.BytesIO(), busy_poll=0.5)


def test_run_refuses_a_bad_budget_before_touching_stdio() -> None:
    stdout_before = os.fstat(1)
    with pytest.raises(ValueError, match="busy_poll must be between"):
        run(TestWorker, busy_poll=-1, exit_process=False)
    after = os.fstat(1)
    assert (after.st_dev, after.st_ino) == (stdout_before.st_dev, stdout_before.st_ino)
