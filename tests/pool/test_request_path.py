"""The pool's request path with no pipes: one future per request (the connection's own), loads
read from the connections, and what a loss, a full worker and a retiring one do to it.

Each test drives a ``Dispatcher`` over in-memory ``Connection``s whose writes are recorded and
whose answers are fed back with ``data_received``.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from juicectl import ProcessUnavailable, RequestTimeout
from juicectl._reading import RequestFuture
from juicectl.connection import Connection
from juicectl.juice import Box, BoxParser, Command, String, answer_bytes
from juicectl.policy import ConnectionOptions
from juicectl.pool._dispatch import (
    _STALL_SECONDS,
    Dispatcher,
    PoolFuture,
    Route,
    RouteDrained,
    _slot_for,
)
from tests.supervision.conftest import wait_for

pytestmark = pytest.mark.timeout(30)


class Echo(Command):
    arguments = [("value", String())]
    response = [("value", String())]


class Worker:
    """One in-memory worker: a connection whose requests are recorded, answered on demand."""

    def __init__(self, name: str, **options: Any) -> None:
        self.written: list[bytes] = []
        self.connection = Connection(
            self.written.append, pid=1, generation=1, name=name,
            options=ConnectionOptions(**options), on_lost=lambda loss: None,
        )
        self.name = name
        self._answered = 0

    def requests(self) -> list[Box]:
        return list(BoxParser().feed(b"".join(self.written)))

    def answer_next(self, count: int = 1) -> None:
        """Answer the ``count`` oldest requests not answered yet, echoing their values, in one
        read of the child's output."""
        requests = self.requests()[self._answered:self._answered + count]
        assert len(requests) == count, "fewer requests in flight than answers asked for"
        self._answered += count
        self.connection.data_received(b"".join(
            answer_bytes(request["_ask"], Box(value=request["value"])) for request in requests
        ))

    def pending(self) -> int:
        """Requests written to it and not answered yet."""
        return len(self.requests()) - self._answered

    def served(self, reads: int, answers_per_read: int) -> None:
        """Serve ``reads`` x ``answers_per_read`` requests sent on the connection itself (not
        through the pool), ``answers_per_read`` answers to each read."""
        for _ in range(reads):
            for _ in range(answers_per_read):
                self.connection.call(Echo, value="direct")
            self.answer_next(answers_per_read)


def dispatcher(*workers: Worker, max_per_worker: int = 64, coming: int = 0,
               told: list[object] | None = None) -> tuple[Dispatcher, list[Route]]:
    notices = told if told is not None else []
    made = Dispatcher(
        "test", max_per_worker=max_per_worker, max_queued=16, least_loaded=True,
        recycle_after_calls=None, default_timeout=None, tell=notices.append,
    )
    routes = [Route(slot, w.name, w.connection, made) for slot, w in enumerate(workers)]
    made.publish(tuple(routes), tuple(range(len(routes) + coming)), can_grow=False,
                 coming=coming)
    return made, routes


def test_the_caller_gets_the_connections_own_future() -> None:
    worker = Worker("w1")
    pool, _ = dispatcher(worker)
    future = pool.submit(Echo, {"value": "a"}, None, None)
    assert isinstance(future, RequestFuture)
    assert future.worker_future is future
    worker.connection.connection_lost(ProcessUnavailable("gone"))
    lost = worker.connection.lost_requests
    assert lost is not None and [entry.future for entry in lost] == [future]


def test_the_connection_settles_the_pool_future_itself() -> None:
    worker = Worker("w1")
    pool, _ = dispatcher(worker)
    future = pool.submit(Echo, {"value": "a"}, None, None)
    assert not future.done()
    worker.answer_next()
    assert future.done()
    assert future.get(timeout=0) == {"value": "a"}


def test_in_flight_per_worker_is_the_connections_count() -> None:
    worker = Worker("w1")
    pool, (route,) = dispatcher(worker)
    for value in "abc":
        pool.submit(Echo, {"value": value}, None, None)
    assert route.in_flight == worker.connection.in_flight == 3
    worker.answer_next()
    worker.answer_next()
    assert pool.stats()["routes"]["w1"]["in_flight"] == worker.connection.in_flight == 1


def test_least_loaded_goes_by_the_connections_counts() -> None:
    first, second = Worker("first"), Worker("second")
    pool, _ = dispatcher(first, second)
    pool.submit(Echo, {"value": "a"}, None, None)
    pool.submit(Echo, {"value": "b"}, None, None)
    assert len(first.written) == len(second.written) == 1
    first.answer_next()
    # "first" has nothing in flight now, "second" one request: both next go to "first".
    pool.submit(Echo, {"value": "c"}, None, None)
    assert (len(first.written), len(second.written)) == (2, 1)


def test_a_held_request_is_written_by_the_answer_that_frees_room() -> None:
    worker = Worker("w1")
    pool, _ = dispatcher(worker, max_per_worker=1)
    first = pool.submit(Echo, {"value": "a"}, None, None)
    second = pool.submit(Echo, {"value": "b"}, None, None)
    assert pool.stats()["queued"] == 1 and second.worker_future is None
    assert [box["value"] for box in worker.requests()] == ["a"]
    worker.answer_next()
    assert first.get(timeout=0) == {"value": "a"}
    assert [box["value"] for box in worker.requests()] == ["a", "b"]
    worker.answer_next()
    assert second.get(timeout=1) == {"value": "b"}


def test_the_connections_own_bound_caps_a_worker_as_the_pool_does() -> None:
    worker = Worker("w1", max_in_flight=2)
    pool, (route,) = dispatcher(worker, max_per_worker=64)
    assert route.cap == 2
    futures = [pool.submit(Echo, {"value": v}, None, None) for v in "abc"]
    assert pool.stats()["queued"] == 1
    worker.answer_next()
    worker.answer_next()
    worker.answer_next()
    assert [f.get(timeout=1) for f in futures] == [{"value": v} for v in "abc"]


def test_a_timed_out_request_frees_room_for_a_held_one() -> None:
    worker = Worker("w1")
    pool, _ = dispatcher(worker, max_per_worker=1)
    stuck = pool.submit(Echo, {"value": "a"}, None, 0.05)
    held = pool.submit(Echo, {"value": "b"}, None, None)
    with pytest.raises(RequestTimeout):
        stuck.get(timeout=10)
    # The timer thread fails the future, then tells the pool of the room: "b" goes after.
    wait_for(lambda: len(worker.requests()) == 2, 10.0, "the held request written")
    worker.answer_next()  # the late answer of "a", dropped
    worker.answer_next()
    assert held.get(timeout=10) == {"value": "b"}


def test_a_lost_request_stays_open_until_the_pool_decides() -> None:
    worker = Worker("w1")
    pool, _ = dispatcher(worker)
    future = pool.submit(Echo, {"value": "a"}, None, None)
    worker.connection.connection_lost(ProcessUnavailable("gone"))
    assert not future.done()
    pool.settle_lost(worker.connection, order_known=False)
    with pytest.raises(ProcessUnavailable, match="gone"):
        future.get(timeout=0)


def test_a_request_the_child_cannot_have_started_goes_once_to_another_worker() -> None:
    lost, other = Worker("lost"), Worker("other")
    pool, (_, other_route) = dispatcher(lost, other)
    pool.retire(other_route)  # both requests go to "lost"
    running = pool.submit(Echo, {"value": "a"}, None, None)
    waiting = pool.submit(Echo, {"value": "b"}, None, None)
    lost.connection.peer_concurrency = 1
    lost.connection.connection_lost(ProcessUnavailable("gone"))
    pool.publish((Route(1, "other", other.connection, pool),), (1,), can_grow=False)
    assert pool.settle_lost(lost.connection, order_known=True) == (1, 1)
    with pytest.raises(ProcessUnavailable):
        running.get(timeout=0)
    assert waiting.resends == 1 and waiting.worker_future is waiting
    assert [box["value"] for box in other.requests()] == ["b"]
    other.answer_next()
    assert waiting.get(timeout=1) == {"value": "b"}
    # Deciding the same loss again sends nothing twice.
    assert pool.settle_lost(lost.connection, order_known=True) == (0, 0)
    assert len(other.requests()) == 1


def test_a_given_future_is_refused_at_an_ended_connection_and_left_as_it_was() -> None:
    worker = Worker("w1")
    worker.connection.connection_lost(ProcessUnavailable("gone"))
    future = RequestFuture()
    with pytest.raises(ProcessUnavailable, match="gone"):
        worker.connection.call_with(Echo, {"value": "a"}, future=future)
    assert not future.done()
    assert worker.written == []


def test_a_write_refused_at_the_door_goes_to_another_worker() -> None:
    ended, open_ = Worker("ended"), Worker("open")
    pool, (ended_route, _) = dispatcher(ended, open_)
    ended.connection.connection_lost(ProcessUnavailable("gone"))
    futures = [pool.submit(Echo, {"value": v}, None, None) for v in "ab"]
    assert [box["value"] for box in open_.requests()] == ["a", "b"]
    assert not ended_route.accepting
    assert all(isinstance(f, PoolFuture) and not f.done() for f in futures)


def test_when_request_done_runs_after_answers_and_timeouts_not_at_the_loss() -> None:
    worker = Worker("w1")
    calls: list[int] = []
    worker.connection.when_request_done = lambda: calls.append(worker.connection.in_flight)
    worker.connection.call(Echo, value="a")
    timed = worker.connection.call(Echo, value="b", timeout=0.05)
    worker.connection.call(Echo, value="c")
    worker.answer_next()
    assert calls == [2]
    with pytest.raises(RequestTimeout):
        timed.get(timeout=10)
    # The timer thread fails the future first, then calls when_request_done.
    wait_for(lambda: len(calls) == 2, 10.0, "when_request_done after the timeout")
    assert calls == [2, 1]
    worker.connection.connection_lost(ProcessUnavailable("gone"))
    assert calls == [2, 1]


def test_a_retiring_worker_reports_drained_once_its_last_answer_comes() -> None:
    worker = Worker("w1")
    told: list[object] = []
    pool, (route,) = dispatcher(worker, told=told)
    pool.submit(Echo, {"value": "a"}, None, None)
    pool.submit(Echo, {"value": "b"}, None, None)
    assert pool.retire(route) is False
    worker.answer_next()
    assert told == []
    worker.answer_next()
    assert told == [RouteDrained("w1")]


def test_an_empty_worker_retires_at_once_and_reports_nothing_more() -> None:
    worker = Worker("w1")
    told: list[object] = []
    pool, (route,) = dispatcher(worker, told=told)
    pool.submit(Echo, {"value": "a"}, None, None)
    worker.answer_next()
    assert pool.retire(route) is True
    assert told == []


def values(worker: Worker) -> list[str]:
    return [box["value"] for box in worker.requests()]


def test_while_a_worker_is_on_its_way_the_one_serving_takes_only_its_share() -> None:
    first, second = Worker("first"), Worker("second")
    pool, (route,) = dispatcher(first, coming=1)
    futures = [pool.submit(Echo, {"value": value}, None, None) for value in "abcdef"]
    # Three for the worker that serves, three held for the one on its way ...
    assert values(first) == ["a", "b", "c"] and pool.stats()["queued"] == 3
    pool.publish((route, Route(1, "second", second.connection, pool)), (0, 1), can_grow=False)
    # ... which takes them once it serves: the batch is split, not left to the first.
    assert values(second) == ["d", "e", "f"] and pool.stats()["queued"] == 0
    for _ in range(3):
        first.answer_next()
        second.answer_next()
    assert [future.get(timeout=1)["value"] for future in futures] == list("abcdef")


def test_a_lone_request_is_never_held_for_a_worker_on_its_way() -> None:
    worker = Worker("w1")
    pool, _ = dispatcher(worker, coming=3)
    for value in "abc":
        pool.submit(Echo, {"value": value}, None, None)
        assert values(worker)[-1] == value and pool.stats()["queued"] == 0
        worker.answer_next()
    assert pool.stats()["held"] == 0  # written at once, not by way of the queue


def test_the_worker_serving_takes_more_as_it_answers_if_the_other_never_comes() -> None:
    worker = Worker("w1")
    pool, _ = dispatcher(worker, coming=1)
    futures = [pool.submit(Echo, {"value": value}, None, None) for value in "ab"]
    # One in flight: the second's share of two is one each, so it waits for the other.
    assert values(worker) == ["a"] and pool.stats()["queued"] == 1
    futures += [pool.submit(Echo, {"value": value}, None, None) for value in "cd"]
    assert values(worker) == ["a", "b"]
    worker.answer_next()  # 1 in flight and 2 held: its share of 3 is 2, so one more goes
    assert values(worker) == ["a", "b", "c"] and pool.stats()["queued"] == 1
    for _ in range(3):
        worker.answer_next()
    assert [future.get(timeout=1)["value"] for future in futures] == list("abcd")
    assert pool.stats()["queued"] == 0


def test_a_held_keyed_request_goes_while_keyless_ones_wait_for_their_share() -> None:
    worker = Worker("w1")
    pool, _ = dispatcher(worker, max_per_worker=4, coming=1)
    key = next(k for k in range(100) if _slot_for(k, (0, 1)) == 0)  # the serving worker's
    for value in "abcd":
        pool.submit(Echo, {"value": value}, key, None)  # keyed: past any share, up to the cap
    pool.submit(Echo, {"value": "free"}, None, None)
    keyed = pool.submit(Echo, {"value": "mine"}, key, None)
    assert values(worker) == list("abcd") and pool.stats()["queued"] == 2
    worker.answer_next()
    # 3 in flight, 2 held: the keyless one waits (a share of 3), the keyed one is written.
    assert values(worker) == [*"abcd", "mine"] and pool.stats()["queued"] == 1
    for _ in range(4):
        worker.answer_next()
    assert keyed.get(timeout=1) == {"value": "mine"}


def test_two_serving_and_one_on_its_way_each_take_a_third() -> None:
    first, second, third = Worker("first"), Worker("second"), Worker("third")
    pool, routes = dispatcher(first, second, coming=1)
    for value in "abcdef":
        pool.submit(Echo, {"value": value}, None, None)
    assert (len(first.written), len(second.written)) == (2, 2)
    assert pool.stats()["queued"] == 2
    pool.publish((*routes, Route(2, "third", third.connection, pool)), (0, 1, 2),
                 can_grow=False)
    assert len(third.written) == 2 and pool.stats()["queued"] == 0


def test_a_worker_below_its_share_takes_the_request_when_others_are_at_it() -> None:
    workers = [Worker("first"), Worker("second"), Worker("third")]
    pool, _ = dispatcher(*workers, coming=1)
    for value in "abcdef":
        pool.submit(Echo, {"value": value}, None, None)
    assert [len(w.written) for w in workers] == [2, 2, 2]
    # The next pick looks at routes[looks_first], then the one after it, then the last: that
    # last one answers a request, so the two looked at first are at their share (two of six,
    # across four workers) and the last below it.
    looks_first = (pool._turn + 1) % 3
    below = workers[(looks_first + 2) % 3]
    below.answer_next()
    held = pool.stats()["held"]
    pool.submit(Echo, {"value": "g"}, None, None)
    assert sorted(len(w.written) for w in workers) == [2, 2, 3] and len(below.written) == 3
    assert pool.stats()["held"] == held  # taken at once, not by way of the queue


def values_of(worker: Worker) -> list[str]:
    return [box["value"] for box in worker.requests() if box["value"] != "direct"]


def busy(*workers: Worker) -> None:
    """One request on each worker's connection, sent around the pool and left unanswered."""
    for worker in workers:
        worker.connection.call(Echo, value="direct")


def keeping_up(first: Worker, second: Worker) -> Dispatcher:
    """A pool of ``first`` and ``second`` that has measured them keeping up (``first``'s
    reads brought four answers each), with both idle again."""
    pool, _ = dispatcher(first, second)
    first.served(reads=32, answers_per_read=4)
    busy(first, second)
    pool.submit(Echo, {"value": "measured"}, None, None)  # a busy worker's window is measured
    first.answer_next(2)  # the direct request and "measured"
    second.answer_next()
    assert values_of(first) == ["measured"] and values_of(second) == []
    return pool


def test_an_idle_worker_goes_first_until_the_workers_are_seen_keeping_up() -> None:
    # Nothing measured yet: whatever "first" is busy with may be long, and nothing waits
    # behind it while "second" idles.
    first, second = Worker("first"), Worker("second")
    pool, _ = dispatcher(first, second)
    busy(first)
    pool.submit(Echo, {"value": "next"}, None, None)
    assert (values_of(first), values_of(second)) == ([], ["next"])


def test_while_the_workers_keep_up_the_first_takes_requests_though_another_idles() -> None:
    # This side is the slower: the load stays on one worker, the first in the pool's order.
    first, second = Worker("first"), Worker("second")
    pool = keeping_up(first, second)
    for value in "abc":
        pool.submit(Echo, {"value": value}, None, None)
    assert (values_of(first), values_of(second)) == (["measured", "a", "b", "c"], [])


def test_an_idle_worker_takes_the_next_once_the_first_stalls() -> None:
    # No answer read from "first" for the stall time while it takes requests: whatever it is
    # busy with may be long, and "second", idle, takes the next.
    first, second = Worker("first"), Worker("second")
    pool = keeping_up(first, second)
    pool.submit(Echo, {"value": "a"}, None, None)  # the pick notes first's reads so far
    time.sleep(_STALL_SECONDS * 2)
    pool.submit(Echo, {"value": "b"}, None, None)
    assert (values_of(first), values_of(second)) == (["measured", "a"], ["b"])
    first.answer_next()  # an answer from first again: it takes the next, second busy or not
    second.answer_next()
    pool.submit(Echo, {"value": "c"}, None, None)
    assert (values_of(first), values_of(second)) == (["measured", "a", "c"], ["b"])


def test_a_stalled_first_worker_passes_requests_to_a_busy_one_with_room() -> None:
    first, second = Worker("first"), Worker("second")
    pool = keeping_up(first, second)
    busy(second)
    pool.submit(Echo, {"value": "a"}, None, None)
    time.sleep(_STALL_SECONDS * 2)
    for value in "bc":  # second has more in flight than first after "b": it still takes "c"
        pool.submit(Echo, {"value": value}, None, None)
    assert (values_of(first), values_of(second)) == (["measured", "a"], ["b", "c"])


def test_a_stalled_first_worker_takes_requests_when_the_others_are_full() -> None:
    first, second = Worker("first"), Worker("second")
    pool, _ = dispatcher(first, second, max_per_worker=4)
    first.served(reads=32, answers_per_read=4)
    busy(first, second)
    pool.submit(Echo, {"value": "measured"}, None, None)  # first keeps up: it takes it
    for _ in range(3):
        second.connection.call(Echo, value="direct")  # second full: 4 in flight
    time.sleep(_STALL_SECONDS * 2)
    pool.submit(Echo, {"value": "a"}, None, None)
    assert (values_of(first), values_of(second)) == (["measured", "a"], [])


def test_after_a_quiet_spell_a_read_seen_late_is_no_proof_the_first_still_answers() -> None:
    # Answers read long after the pick before, then a request that may be long still
    # outstanding: the read may be old, and a lone request goes to the idle worker.
    first, second = Worker("first"), Worker("second")
    pool = keeping_up(first, second)
    for value in "ab":
        pool.submit(Echo, {"value": value}, None, None)
    time.sleep(_STALL_SECONDS * 2)
    first.answer_next()  # "a" answered; "b" still on first
    pool.submit(Echo, {"value": "c"}, None, None)
    assert (values_of(first), values_of(second)) == (["measured", "a", "b"], ["c"])


def test_a_full_first_worker_passes_requests_on_while_the_workers_keep_up() -> None:
    first, second = Worker("first"), Worker("second")
    pool = keeping_up(first, second)
    for _ in range(63):
        first.connection.call(Echo, value="direct")
    pool.submit(Echo, {"value": "a"}, None, None)  # its 64th: full
    pool.submit(Echo, {"value": "b"}, None, None)
    assert (values_of(first), values_of(second)) == (["measured", "a"], ["b"])


def test_among_busy_workers_one_whose_answers_wait_to_be_read_takes_the_next() -> None:
    # Answers that wait to be read, two or more a read over the last 32 reads: this side is
    # the slower, and "first" takes the next requests though "second" has fewer in flight.
    first, second = Worker("first"), Worker("second")
    pool, _ = dispatcher(first, second)
    first.served(reads=32, answers_per_read=2)
    busy(first, second)
    for value in "abc":
        pool.submit(Echo, {"value": value}, None, None)
    assert (values_of(first), values_of(second)) == (["a", "b", "c"], [])


def test_among_busy_workers_the_least_loaded_when_each_read_waited_for_its_answer() -> None:
    # One answer a read: the child is the slower, and the load is shared.
    first, second = Worker("first"), Worker("second")
    pool, _ = dispatcher(first, second)
    first.served(reads=32, answers_per_read=1)
    busy(first, second)
    for value in "abcd":
        pool.submit(Echo, {"value": value}, None, None)
    assert (len(values_of(first)), len(values_of(second))) == (2, 2)


def test_a_worker_that_kept_up_shares_again_once_its_reads_bring_one_answer_each() -> None:
    first, second = Worker("first"), Worker("second")
    pool, _ = dispatcher(first, second)
    first.served(reads=32, answers_per_read=3)
    busy(first, second)
    for value in "ab":  # first keeps up: both go there
        pool.submit(Echo, {"value": value}, None, None)
    first.served(reads=32, answers_per_read=1)  # as many in flight as before: 3
    for value in "cd":  # first no longer keeps up: second, the least loaded, takes both
        pool.submit(Echo, {"value": value}, None, None)
    assert (values_of(first), values_of(second)) == (["a", "b"], ["c", "d"])


def test_the_connection_counts_the_reads_that_brought_bytes() -> None:
    worker = Worker("w1")
    worker.served(reads=3, answers_per_read=2)
    assert (worker.connection.reads, worker.connection.answered) == (3, 6)
    worker.connection.data_received(b"")  # end of file: no bytes, not counted
    assert worker.connection.reads == 3


def test_idle_workers_take_one_request_at_a_time_in_turn() -> None:
    first, second = Worker("first"), Worker("second")
    pool, _ = dispatcher(first, second)
    for value in "abcd":
        pool.submit(Echo, {"value": value}, None, None)
        for worker in (first, second):
            if worker.pending():
                worker.answer_next()
    assert sorted([values_of(first), values_of(second)]) == [["a", "c"], ["b", "d"]]


def test_workers_that_take_no_requests_are_passed_over() -> None:
    # Four retired after the one serving: the pick (and the pool's looks after it: again,
    # then once more after holding it) starts at each in turn, and none may stop it.
    serving, *retired = [Worker(name) for name in ("serving", "r1", "r2", "r3", "r4")]
    pool, (_, *retired_routes) = dispatcher(serving, *retired)
    for route in retired_routes:
        pool.retire(route)
    for value in "abcde":
        pool.submit(Echo, {"value": value}, None, None)
        assert pool.stats()["queued"] == 0
        serving.answer_next()
    assert values_of(serving) == list("abcde")
    assert all(values_of(worker) == [] for worker in retired)


def test_full_workers_are_passed_over_and_the_next_is_held_when_all_are() -> None:
    free, *full = [Worker(name) for name in ("free", "f1", "f2", "f3", "f4")]
    pool, _ = dispatcher(free, *full, max_per_worker=1)
    busy(*full)
    for value in "abcde":  # wherever the pick starts, the free worker takes it
        pool.submit(Echo, {"value": value}, None, None)
        assert pool.stats()["queued"] == 0
        free.answer_next()
    busy(free)  # all full: the next is held
    pool.submit(Echo, {"value": "f"}, None, None)
    assert pool.stats()["queued"] == 1
    assert values_of(free) == list("abcde")
    assert all(values_of(worker) == [] for worker in full)


def test_picks_on_their_way_to_a_worker_count_as_its_load() -> None:
    first, second = Worker("first"), Worker("second")
    pool, (first_route, _) = dispatcher(first, second)
    busy(first, first, second, second)
    first_route.writing.append(None)  # a pick written by another thread any moment now
    pool.submit(Echo, {"value": "a"}, None, None)
    assert (values_of(first), values_of(second)) == ([], ["a"])


def test_keeping_up_is_measured_over_the_reads_since_the_window_before() -> None:
    first, second = Worker("first"), Worker("second")
    first.served(reads=32, answers_per_read=1)  # before the pool: not part of any window
    pool, _ = dispatcher(first, second)
    first.served(reads=32, answers_per_read=3)
    busy(first, second)
    pool.submit(Echo, {"value": "a"}, None, None)  # the window is measured: first keeps up
    first.served(reads=16, answers_per_read=1)  # half a window: not measured yet
    pool.submit(Echo, {"value": "b"}, None, None)
    assert (values_of(first), values_of(second)) == (["a", "b"], [])
