"""ProcessPool with real workers: dispatch, a worker killed with requests outstanding,
recycling, growing and shrinking, sticky keys, the queue's bound, stopping while busy."""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pykka
import pytest

from juicectl import (
    Connection,
    ControllerClosed,
    ProcessPool,
    ProcessUnavailable,
    RequestTimeout,
    RestartPolicy,
    TooManyRequests,
)
from juicectl.juice import ArgumentError
from juicectl.messages import ModeChanged
from juicectl.pool import WorkerGaveUp
from juicectl.pool._dispatch import _slot_for

from .conftest import CONCURRENT, pids_or_failed, ready_pids, wait_until
from .workers import Count, Echo, Pid, Slow

pytestmark = pytest.mark.timeout(60)

MakePool = Callable[..., ProcessPool]


def test_requests_are_answered_by_both_workers(make_pool: MakePool) -> None:
    pool = make_pool(size=2)
    wait_until(lambda: pool.stats()["size"] == 2)
    futures = [pool.call(Echo, value=str(i)) for i in range(500)]
    assert [f.get(timeout=20)["value"] for f in futures] == [str(i) for i in range(500)]
    stats = pool.stats()
    assert stats["size"] == 2
    assert sorted(w["calls"] > 0 for w in stats["workers"]) == [True, True]
    assert all(w["one_at_a_time"] for w in stats["workers"])
    assert stats["written"] == 500


def test_least_loaded_spreads_slow_requests(make_pool: MakePool) -> None:
    pool = make_pool(size=2)
    wait_until(lambda: pool.stats()["size"] == 2)
    futures = [pool.call(Slow, seconds=0.05, n=i) for i in range(8)]
    pids = Counter(f.get(timeout=20)["pid"] for f in futures)
    assert sorted(pids.values()) == [4, 4]


def test_a_batch_sent_before_the_second_worker_is_ready_is_split(make_pool: MakePool) -> None:
    # The second worker's prepare step waits for the test: it is on its way, not serving.
    prepared: list[int] = []
    gate = threading.Event()

    def prepare(connection: Connection) -> None:
        prepared.append(connection.pid)
        if len(prepared) == 2:
            assert gate.wait(30)

    pool = make_pool(size=2, prepare=prepare)
    wait_until(lambda: pool.stats()["size"] == 1 and len(prepared) == 2)
    futures = [pool.call(Slow, seconds=2.0, n=i) for i in range(4)]
    # The worker serving takes its even share; the rest wait for the one on its way ...
    stats = pool.stats()
    assert stats["queued"] == 2
    assert [w["in_flight"] for w in stats["workers"] if w["state"] == "ready"] == [2]
    gate.set()
    # ... which takes them once it is ready: the batch is not left to the first worker.
    first, second = prepared
    assert pids_or_failed(futures) == [first, first, second, second]


def test_a_request_sent_again_after_a_crash_waits_for_the_restart_if_the_other_is_busy(
    make_pool: MakePool,
) -> None:
    pool = make_pool(size=2, restart=RestartPolicy(initial_delay=1.0, jitter=0.0))
    wait_until(lambda: pool.stats()["size"] == 2)
    victim, survivor = ready_pids(pool)
    futures = [pool.call(Slow, seconds=2.0, n=i) for i in range(4)]  # two on each
    wait_until(lambda: all(w["in_flight"] == 2 for w in pool.stats()["workers"]))
    os.kill(victim, signal.SIGKILL)
    # Its running request fails, the one it had not started goes again: not onto the
    # survivor, which has its share already, but to the victim's slot once it has restarted.
    wait_until(lambda: pool.stats()["resent"] == 1)
    assert pool.stats()["queued"] == 1
    outcomes = pids_or_failed(futures)
    assert outcomes.count("failed") == 1 and outcomes.count(survivor) == 2
    restarted = [pid for pid in outcomes if pid not in ("failed", survivor)]
    assert len(restarted) == 1 and restarted[0] != victim


def test_sigkill_with_8_outstanding_fails_only_the_started_one(make_pool: MakePool) -> None:
    pool = make_pool(size=2)
    wait_until(lambda: pool.stats()["size"] == 2)
    victim, survivor = ready_pids(pool)
    # Eight on each worker; each takes 0.2 s, so the victim is running its first.
    futures = [pool.call(Slow, seconds=0.2, n=i) for i in range(16)]
    wait_until(lambda: all(w["in_flight"] == 8 for w in pool.stats()["workers"]))
    os.kill(victim, signal.SIGKILL)
    outcomes = pids_or_failed(futures)
    assert outcomes.count("failed") == 1
    assert victim not in outcomes
    stats = pool.stats()
    assert stats["resent"] == 7 and stats["failed_at_loss"] == 1
    assert all(f.resends <= 1 for f in futures)
    # The dead worker is restarted under its policy: the pool is whole again.
    wait_until(lambda: pool.stats()["size"] == 2 and victim not in ready_pids(pool))
    assert survivor in ready_pids(pool)


def test_a_concurrent_worker_killed_fails_every_written_request(make_pool: MakePool) -> None:
    pool = make_pool(CONCURRENT, size=1)
    wait_until(lambda: pool.stats()["size"] == 1)
    (victim,) = ready_pids(pool)
    assert pool.stats()["workers"][0]["one_at_a_time"] is False
    futures = [pool.call(Slow, seconds=0.5, n=i) for i in range(8)]
    wait_until(lambda: pool.stats()["workers"][0]["in_flight"] == 8)
    os.kill(victim, signal.SIGKILL)
    failed = 0
    for future in futures:
        with pytest.raises(ProcessUnavailable):
            future.get(timeout=30)
        failed += 1
    assert failed == 8 and pool.stats()["resent"] == 0


def test_recycling_every_50_calls_fails_nothing(make_pool: MakePool) -> None:
    pool = make_pool(size=2, recycle_after_calls=50)
    wait_until(lambda: pool.stats()["size"] == 2)
    first = set(ready_pids(pool))
    seen: set[int] = set()

    def run(count: int) -> None:
        pending = []
        for _ in range(count):
            pending.append(pool.call(Pid))
            if len(pending) >= 16:
                seen.add(pending.pop(0).get(timeout=30)["pid"])  # raises if any failed
        for future in pending:
            seen.add(future.get(timeout=30)["pid"])

    run(200)
    # The replacements start first and take over once ready; the old ones serve meanwhile.
    wait_until(lambda: pool.stats()["recycled"] >= 2)
    run(200)
    stats = pool.stats()
    assert stats["failed_at_loss"] == 0 and stats["resent"] == 0
    assert seen - first, "no request reached a replacement"
    wait_until(lambda: pool.stats()["size"] == 2)


def test_a_recycle_whose_replacement_gives_up_leaves_the_old_worker_serving(
    make_pool: MakePool, tmp_path: Path
) -> None:
    # The replacement cannot start and gives up. That is the recycle failing, not the worker
    # in the slot: the slot stays, the pool keeps its size, and the old worker serves on.
    gave_up = threading.Event()

    class Listener(pykka.ThreadingActor):
        def on_receive(self, message: object) -> None:
            if isinstance(message, WorkerGaveUp):
                gave_up.set()

    listener = Listener.start()
    flag = tmp_path / "refuse"
    argv = [sys.executable, "-m", "juicectl.child", "tests.pool.workers:RefusesWhileFlagged"]
    policy = RestartPolicy(initial_delay=0.0, jitter=0.0, max_restarts=1, window=60)
    try:
        pool = make_pool(argv, size=1, recycle_after_calls=5, restart=policy,
                         env={**os.environ, "POOL_REFUSE_FLAG": str(flag)},
                         subscribers=[listener])
        [old] = [pool.call(Pid).get(timeout=20)["pid"]]
        flag.touch()
        for _ in range(5):
            assert pool.call(Pid).get(timeout=20)["pid"] == old
        assert gave_up.wait(20)
        flag.unlink()
        keyed = [pool.call(Pid, key=k) for k in range(20)]
        unkeyed = [pool.call(Pid) for _ in range(40)]
        assert {f.get(timeout=20)["pid"] for f in keyed + unkeyed} == {old}
        stats = pool.stats()
        assert (stats["slots"], stats["max_size"], stats["size"]) == (1, 1, 1)
        assert (stats["left"], stats["replaced"], stats["recycled"]) == (0, 0, 0)
        assert ready_pids(pool) == [old]
    finally:
        listener.stop()


def test_an_idle_worker_whose_replacement_is_starting_is_not_shrunk(make_pool: MakePool) -> None:
    # A worker reaches its recycle; its replacement is held in prepare (one recycle at a
    # time: a second one due waits), and both workers then sit idle past max_idle. The one
    # being recycled keeps its slot (its replacement takes it), the other is shrunk, and the
    # pool never goes below min_size.
    gate = threading.Event()

    def prepare(connection: Connection) -> None:
        if connection.name.count(".") > 1:  # a replacement: pool-N.w0.2
            assert gate.wait(30)

    pool = make_pool(min_size=1, max_size=2, max_idle=4.0, recycle_after_calls=40,
                     prepare=prepare)
    assert pool.call(Echo, value="first").get(timeout=20) == {"value": "first"}
    futures = [pool.call(Slow, seconds=0.1, n=i) for i in range(20)]
    wait_until(lambda: pool.stats()["grown"] == 1)
    assert {f.get(timeout=30)["n"] for f in futures} == set(range(20))
    # The first worker (slot 0, the first looked at) reaches its recycle while the other
    # keeps busy too, and the other's last call comes after: the first is idle longer.
    first, second = (next(key for key in range(100) if _slot_for(key, (0, 1)) == slot)
                     for slot in (0, 1))
    while not any(w["state"] == "starting" for w in pool.stats()["workers"]):
        for key in (first, second):
            assert pool.call(Echo, key=key, value="k").get(timeout=20) == {"value": "k"}
    stats = pool.stats()
    assert sorted((w["slot"], w["state"]) for w in stats["workers"]) == [
        (0, "ready"), (0, "starting"), (1, "ready")
    ], stats
    assert pool.call(Slow, key=second, seconds=0.5, n=1).get(timeout=20)["n"] == 1
    wait_until(lambda: pool.stats()["shrunk"] >= 1)
    gate.set()
    wait_until(lambda: pool.stats()["recycled"] >= 1)
    wait_until(lambda: [w["state"] for w in pool.stats()["workers"]] == ["ready"])
    stats = pool.stats()
    assert stats["shrunk"] == 1
    assert stats["slots"] == 1
    [worker] = stats["workers"]
    assert worker["name"].startswith(f"{pool.name}.w{worker['slot']}.")  # the replacement
    assert pool.call(Echo, value="after").get(timeout=20) == {"value": "after"}


def test_the_pool_grows_while_busy_and_shrinks_when_idle(make_pool: MakePool) -> None:
    pool = make_pool(min_size=1, max_size=2, max_idle=0.2)
    assert pool.call(Echo, value="x").get(timeout=20) == {"value": "x"}
    assert pool.stats()["slots"] == 1
    futures = [pool.call(Slow, seconds=0.1, n=i) for i in range(20)]
    wait_until(lambda: pool.stats()["size"] == 2)
    assert {f.get(timeout=30)["n"] for f in futures} == set(range(20))
    assert pool.stats()["grown"] == 1
    wait_until(lambda: pool.stats()["size"] == 1 and pool.stats()["slots"] == 1)
    assert pool.stats()["shrunk"] == 1
    assert pool.call(Echo, value="after").get(timeout=20) == {"value": "after"}


def test_a_pool_of_none_starts_one_for_the_first_request(make_pool: MakePool) -> None:
    pool = make_pool(min_size=0, max_size=2)
    assert pool.stats()["slots"] == 0
    assert pool.call(Echo, value="cold").get(timeout=20) == {"value": "cold"}
    assert pool.stats()["slots"] == 1


def test_sticky_keys_go_to_one_worker_each(make_pool: MakePool) -> None:
    pool = make_pool(size=2)
    wait_until(lambda: pool.stats()["size"] == 2)
    owner: dict[str, set[int]] = {}
    for round_no in range(1, 4):
        futures = {f"user{k}": pool.call(Count, key=f"user{k}", name=f"user{k}")
                   for k in range(32)}
        for key, future in futures.items():
            answer = future.get(timeout=20)
            assert answer["count"] == round_no  # its own worker kept the count
            owner.setdefault(key, set()).add(answer["pid"])
    assert all(len(pids) == 1 for pids in owner.values())
    assert len(set().union(*owner.values())) == 2


def test_past_max_queued_calls_are_refused(make_pool: MakePool) -> None:
    pool = make_pool(size=1, max_per_worker=1, max_queued=2)
    wait_until(lambda: pool.stats()["size"] == 1)
    running = pool.call(Slow, seconds=0.3, n=0)
    held = [pool.call(Slow, seconds=0.0, n=i) for i in (1, 2)]
    assert pool.stats()["queued"] == 2
    with pytest.raises(TooManyRequests, match="max_queued"):
        pool.call(Echo, value="one too many")
    assert running.get(timeout=20)["n"] == 0
    assert [f.get(timeout=20)["n"] for f in held] == [1, 2]


def test_a_held_request_times_out(make_pool: MakePool) -> None:
    pool = make_pool(size=1, max_per_worker=1)
    wait_until(lambda: pool.stats()["size"] == 1)
    running = pool.call(Slow, seconds=0.5, n=0)
    held = pool.call(Echo, value="late", timeout=0.1)
    with pytest.raises(RequestTimeout):
        held.get(timeout=20)
    assert running.get(timeout=20)["n"] == 0


def test_a_request_held_then_written_times_out_naming_its_callers_timeout(
    make_pool: MakePool,
) -> None:
    # Held behind a busy worker, then written with what is left of its timeout: it fails at
    # the connection, and the message names the caller's timeout, not what was left.
    pool = make_pool(size=1, max_per_worker=1)
    wait_until(lambda: pool.stats()["size"] == 1)
    running = pool.call(Slow, seconds=0.2, n=0)
    held = pool.call(Slow, seconds=1.0, n=1, timeout=0.5)
    assert running.get(timeout=20)["n"] == 0
    with pytest.raises(RequestTimeout, match=r"got no answer within 0\.5s$"):
        held.get(timeout=20)


def test_stop_with_workers_busy(make_pool: MakePool) -> None:
    pool = make_pool(size=2, max_per_worker=2)
    wait_until(lambda: pool.stats()["size"] == 2)
    in_flight = [pool.call(Slow, seconds=0.3, n=i) for i in range(4)]
    held = [pool.call(Echo, value=str(i)) for i in range(3)]
    result = pool.close()
    assert result is not None and len(result) == 2
    # Shutdown is answered after the requests before it: those in flight were answered.
    assert sorted(f.get(timeout=20)["n"] for f in in_flight) == [0, 1, 2, 3]
    for future in held:
        with pytest.raises(ControllerClosed):
            future.get(timeout=20)
    # A closed pool is for good, as a closed controller is: not the transient failure.
    with pytest.raises(ControllerClosed, match=r"pool .* is closed; request not sent"):
        pool.call(Echo, value="after close")
    assert pool.stats()["state"] == "closed"


def test_stop_all_with_requests_held_fails_them_as_closed_and_answers_those_in_flight(
    make_pool: MakePool,
) -> None:
    # stop_all() stops the workers' actors first, newest first, while answers free room: a
    # held request must not be written to a worker that is stopping (it would only fail at
    # the exit), but fail as the pool's close fails it.
    pool = make_pool(size=2, max_per_worker=1)
    wait_until(lambda: pool.stats()["size"] == 2)
    in_flight = [pool.call(Slow, seconds=0.3, n=i) for i in range(2)]
    held = [pool.call(Slow, seconds=0.0, n=i) for i in range(2, 8)]
    wait_until(lambda: pool.stats()["held"] == 6)
    pykka.ActorRegistry.stop_all()
    assert sorted(f.get(timeout=20)["n"] for f in in_flight) == [0, 1]
    for future in held:
        with pytest.raises(ControllerClosed):
            future.get(timeout=20)


def test_bad_arguments_are_refused_at_the_door(make_pool: MakePool) -> None:
    pool = make_pool(size=1)
    with pytest.raises(ArgumentError):
        pool.call(Echo, value=3)
    with pytest.raises(ArgumentError):
        pool.call("Echo")  # type: ignore[arg-type]
    with pytest.raises(ArgumentError, match="timeout"):
        pool.call(Echo, value="x", timeout=-1)
    assert pool.call(Echo, value="fine").get(timeout=20) == {"value": "fine"}


def test_workers_stop_in_parallel(make_pool: MakePool) -> None:
    # Each worker is busy for seconds when the pool stops, and answers Shutdown only after
    # its request: closed one after another, the first would be stopped before the last
    # began to stop. In parallel, every one is stopping before any has stopped.
    modes: list[tuple[str, str]] = []

    class Listener(pykka.ThreadingActor):
        def on_receive(self, message: object) -> None:
            if isinstance(message, ModeChanged):
                modes.append((message.controller, message.new))

    listener = Listener.start()
    try:
        pool = make_pool(size=3, max_per_worker=1, worker_subscribers=[listener])
        wait_until(lambda: pool.stats()["size"] == 3)
        busy = [pool.call(Slow, seconds=2.0, n=i) for i in range(3)]
        wait_until(lambda: all(w["in_flight"] == 1 for w in pool.stats()["workers"]))
        result = pool.close()
        assert result is not None and sorted(r.how for r in result.values() if r) == [
            "clean"] * 3
        assert sorted(f.get(timeout=20)["n"] for f in busy) == [0, 1, 2]
        wait_until(lambda: sum(new == "stopped" for _, new in modes) >= 3)
        stopping = [i for i, (_, new) in enumerate(modes) if new == "stopping"]
        stopped = [i for i, (_, new) in enumerate(modes) if new == "stopped"]
        assert len({modes[i][0] for i in stopping}) == 3
        assert max(stopping) < min(stopped), modes
    finally:
        listener.stop()
