#!/usr/bin/env python3
"""Pools: juicectl's ``ProcessPool`` against the Python pools people reach for.

    .venv/bin/python benchmarks/pools.py SCENARIO COUNT IMPL
    .venv/bin/python benchmarks/run.py --only pool        (every pool scenario, alternating)

One measurement per process, one JSON line (see ``_common.py``). Two workers everywhere
unless the implementation's name says otherwise; the pools come from the ``bench`` extra
(pebble, loky, ampoule), ``ProcessPoolExecutor`` and ``multiprocessing.Pool`` from the
standard library. Scenarios:

* ``pool_echo``: small echo tasks, 64 outstanding (``mp.Pool`` runs ``imap``, which feeds its
  workers as fast as they take tasks); tasks/s.
* ``pool_cpu``: CPU-bound tasks (``pool_workload.burn``), 64 outstanding; tasks/s, with the
  parent's CPU per task. Beside the pools, ``serial`` (the task in a loop in one process) and
  ``two_loops`` (that loop in two processes at once, no pool and no parent work): what the
  machine itself gives two workers.
* ``pool_cold``: start the pool (or one controller) -> first answer; ms.
* ``pool_kill``: one of two workers SIGKILLed with 8 requests outstanding on it: how many
  failed, how many hung, how long until the pool is whole again (juicectl).
* ``pool_recycle``: ``pool_echo`` with a worker recycled every 500 calls; failures too.
* ``pool_orphan``: the parent SIGKILLed: workers still alive 1 s later (juicectl).
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import structlog

from benchmarks._common import ROOT, SMALL, WARMUP, WINDOW, median_ms, rate, report
from benchmarks.pool_workload import BURN, Burn, Sleep, burn, echo, slow
from benchmarks.workload import Echo
from juicectl.policy import ConnectionOptions

WORKER = [sys.executable, "-m", "juicectl.child", "benchmarks.pool_workload:PoolWorker"]
SIZE = 2
KILL_OUTSTANDING = 8


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def windowed(submit: Callable[[], Any], wait: Callable[[Any], Any], count: int) -> float:
    """Keep ``WINDOW`` outstanding until ``count`` are answered; tasks per second."""
    pending: deque[Any] = deque()
    start = time.perf_counter()
    sent = 0
    while sent < min(WINDOW, count):
        pending.append(submit())
        sent += 1
    while pending:
        wait(pending.popleft())
        if sent < count:
            pending.append(submit())
            sent += 1
    return rate(count, time.perf_counter() - start)


# --- juicectl ---------------------------------------------------------------------------------


def ready_pool(size: int, worker: list[str] | None = None, **options: Any) -> Any:
    """A ``ProcessPool`` of ``size`` workers (``worker``: the argv, ``WORKER`` by default),
    returned once all of them are ready (bounded)."""
    from juicectl import ProcessPool

    pool = ProcessPool.start(worker or WORKER, size=size, **options)
    deadline = time.monotonic() + 30
    while pool.stats()["size"] < size:
        if time.monotonic() > deadline:
            raise RuntimeError("the pool did not get its workers ready")
        time.sleep(0.01)
    return pool


def juicectl(scenario: str, count: int, size: int = SIZE, **options: Any) -> None:
    if scenario == "pool_cold":
        from juicectl import ProcessPool

        samples = []
        for _ in range(count):
            start = time.perf_counter()
            pool = ProcessPool.start(WORKER, size=size)
            pool.call(Echo, value=SMALL).get(timeout=30)
            samples.append(time.perf_counter() - start)
            pool.close()
        report(scenario, median_ms(samples), samples_ms=[round(s * 1000, 1) for s in samples])
        return
    if scenario == "pool_kill":
        juicectl_kill(count)
        return
    if scenario == "pool_orphan":
        juicectl_orphans()
        return
    pool = ready_pool(size, **options)
    try:
        if scenario in ("pool_echo", "pool_recycle"):
            windowed(lambda: pool.call(Echo, value=SMALL), lambda f: f.get(), WARMUP)
            stats = pool.stats()
            failed = [0]

            def wait(future: Any) -> None:
                try:
                    future.get(timeout=30)
                except Exception:
                    failed[0] += 1

            value = windowed(lambda: pool.call(Echo, value=SMALL), wait, count)
            after = pool.stats()
            report(scenario, value, failed=failed[0],
                   recycled=after["recycled"] - stats["recycled"],
                   worker_busy_poll=pool.spin_plan.worker)
        elif scenario == "pool_cpu":
            windowed(lambda: pool.call(Burn, n=BURN), lambda f: f.get(), 2 * size)
            cpu = _cpu()
            value = windowed(lambda: pool.call(Burn, n=BURN), lambda f: f.get(), count)
            report(scenario, value, parent_cpu_us=(_cpu() - cpu) / count * 1e6)
    finally:
        pool.close()


def juicectl_controller(scenario: str, count: int) -> None:
    """One controller alone: the figure a pool of two must not fall below."""
    from juicectl import ProcessController

    if scenario == "pool_cold":
        samples = []
        for _ in range(count):
            start = time.perf_counter()
            with ProcessController.start(WORKER) as controller:
                connection = controller.get_process().get(timeout=30)
                connection.call(Echo, value=SMALL).get(timeout=30)
                samples.append(time.perf_counter() - start)
        report(scenario, median_ms(samples), samples_ms=[round(s * 1000, 1) for s in samples])
        return
    with ProcessController.start(WORKER) as controller:
        connection = controller.get_process().get(timeout=30)
        windowed(lambda: connection.call(Echo, value=SMALL), lambda f: f.get(), WARMUP)
        report(scenario, windowed(lambda: connection.call(Echo, value=SMALL),
                                  lambda f: f.get(), count))


def juicectl_kill(count: int) -> None:
    """SIGKILL one of two workers with ``KILL_OUTSTANDING`` on it, ``count`` times."""
    from juicectl import ProcessController, RestartPolicy

    policy = RestartPolicy()  # the default: 0.1 s +-10% before the first restart
    backoff = policy.initial_delay * (1 + policy.jitter)
    colds = []
    for _ in range(3):
        start = time.perf_counter()
        with ProcessController.start(WORKER) as controller:
            controller.get_process().get(timeout=30).call(Echo, value=SMALL).get(timeout=30)
            colds.append(time.perf_counter() - start)
    cold = sorted(colds)[1]
    failed = hung = 0
    back_ms: list[float] = []
    for _ in range(count):
        # A fresh pool for each kill: a second restart within the policy's window backs off
        # longer (0.2 s, 0.4 s...), and the bound is the first restart's.
        pool = ready_pool(SIZE, restart=policy)
        try:
            futures = [pool.call(Sleep, ms=50) for _ in range(2 * KILL_OUTSTANDING)]
            deadline = time.monotonic() + 10
            while min(w["in_flight"] for w in pool.stats()["workers"]) < KILL_OUTSTANDING:
                if time.monotonic() > deadline:
                    raise RuntimeError("the requests did not spread over the workers")
                time.sleep(0.001)
            victim = pool.stats()["workers"][0]["pid"]
            killed = time.perf_counter()
            os.kill(victim, signal.SIGKILL)
            # Whole again is watched while the requests are still being answered: the time
            # the survivor takes to serve what was re-sent to it is not the restart's.
            while True:
                workers = pool.stats()["workers"]
                if sum(w["state"] == "ready" and w["pid"] != victim for w in workers) == SIZE:
                    break
                if time.perf_counter() - killed > 30:
                    raise RuntimeError("the pool did not get whole again")
                time.sleep(0.002)
            back_ms.append((time.perf_counter() - killed) * 1000)
            for future in futures:
                try:
                    future.get(timeout=10)
                except Exception as error:
                    if type(error).__name__ == "Timeout":
                        hung += 1
                    else:
                        failed += 1
        finally:
            pool.close()
    report("pool_kill", failed / count, hung=hung, kills=count,
           back_to_full_ms=round(sorted(back_ms)[len(back_ms) // 2], 1),
           bound_ms=round((backoff + cold) * 1000, 1), cold_ms=round(cold * 1000, 1))


ORPHAN = """
import sys, time
sys.path.insert(0, {root!r})
from juicectl import ProcessPool
from benchmarks.pool_workload import Sleep
pool = ProcessPool.start({worker!r}, size={size})
pids = set()
while len(pids) < {size}:
    pids |= {{f.get(timeout=30)["pid"] for f in [pool.call(Sleep, ms=20) for _ in range(8)]}}
print(" ".join(map(str, sorted(pids))), flush=True)
time.sleep(60)
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False


def juicectl_orphans() -> None:
    script = ORPHAN.format(root=str(ROOT), worker=WORKER, size=SIZE)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        pids = [int(pid) for pid in parent.stdout.readline().split()]
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        time.sleep(1.0)
        alive = [pid for pid in pids if _alive(pid)]
    finally:
        if parent.poll() is None:
            parent.kill()
    for pid in alive:  # the goal failed: do not leave them behind for the next run
        os.kill(pid, signal.SIGKILL)
    report("pool_orphan", len(alive), workers=len(pids))


# --- the standard library and the bench extra ---------------------------------------------


def _executor_run(scenario: str, count: int, make: Callable[[], Any],
                  submit: Callable[[Any, Callable[..., Any], Any], Any],
                  result: Callable[[Any], Any], close: Callable[[Any], None]) -> None:
    if scenario == "pool_cold":
        samples = []
        for _ in range(count):
            start = time.perf_counter()
            pool = make()
            result(submit(pool, echo, SMALL))
            samples.append(time.perf_counter() - start)
            close(pool)
        report(scenario, median_ms(samples), samples_ms=[round(s * 1000, 1) for s in samples])
        return
    pool = make()
    try:
        for _ in range(SIZE * 4):  # every worker started
            result(submit(pool, slow, 0.01))
        if scenario == "pool_echo":
            windowed(lambda: submit(pool, echo, SMALL), result, WARMUP)
            report(scenario, windowed(lambda: submit(pool, echo, SMALL), result, count))
        elif scenario == "pool_cpu":
            cpu = _cpu()
            value = windowed(lambda: submit(pool, burn, BURN), result, count)
            report(scenario, value, parent_cpu_us=(_cpu() - cpu) / count * 1e6)
    finally:
        close(pool)


def process_pool_executor(scenario: str, count: int, size: int = SIZE) -> None:
    from concurrent.futures import ProcessPoolExecutor

    _executor_run(scenario, count, lambda: ProcessPoolExecutor(max_workers=size),
                  lambda pool, fn, arg: pool.submit(fn, arg), lambda f: f.result(),
                  lambda pool: pool.shutdown())


def loky_executor(scenario: str, count: int) -> None:
    from loky import ProcessPoolExecutor

    _executor_run(scenario, count, lambda: ProcessPoolExecutor(max_workers=SIZE),
                  lambda pool, fn, arg: pool.submit(fn, arg), lambda f: f.result(),
                  lambda pool: pool.shutdown())


def pebble_pool(scenario: str, count: int) -> None:
    from pebble import ProcessPool

    def close(pool: Any) -> None:
        pool.close()
        pool.join()

    _executor_run(scenario, count, lambda: ProcessPool(max_workers=SIZE),
                  lambda pool, fn, arg: pool.schedule(fn, args=(arg,)), lambda f: f.result(),
                  close)


def mp_pool(scenario: str, count: int) -> None:
    import multiprocessing

    def values(n: int, value: Any) -> Iterator[Any]:
        for _ in range(n):
            yield value

    if scenario == "pool_cold":
        samples = []
        for _ in range(count):
            start = time.perf_counter()
            with multiprocessing.Pool(SIZE) as pool:
                next(pool.imap(echo, [SMALL]))
                samples.append(time.perf_counter() - start)
        report(scenario, median_ms(samples), samples_ms=[round(s * 1000, 1) for s in samples])
        return
    with multiprocessing.Pool(SIZE) as pool:
        pool.map(slow, [0.01] * SIZE * 4)
        function, argument = (echo, SMALL) if scenario == "pool_echo" else (burn, BURN)
        for _ in pool.imap(function, values(min(WARMUP, count), argument)):
            pass
        cpu, start = _cpu(), time.perf_counter()
        for _ in pool.imap(function, values(count, argument)):
            pass
        value = rate(count, time.perf_counter() - start)
        report(scenario, value, parent_cpu_us=(_cpu() - cpu) / count * 1e6)


def ampoule_pool(scenario: str, count: int, recycle_after: int = 0) -> None:
    from ampoule import main, pool
    from twisted.internet import defer, reactor

    from benchmarks.amp_child import Echo as AmpEcho
    from benchmarks.pool_ampoule import EchoChild

    starter = main.ProcessStarter(env={**os.environ, "PYTHONPATH": str(ROOT)},
                                  packages=("twisted", "ampoule"))
    outcome: dict[str, Any] = {}

    def windowed_amp(pp: Any, n: int) -> defer.Deferred[float]:
        done: defer.Deferred[float] = defer.Deferred()
        state = {"sent": 0, "answered": 0, "failed": 0}
        start = time.perf_counter()

        def send() -> None:
            state["sent"] += 1
            pp.doWork(AmpEcho, value=SMALL).addCallbacks(answered, failure)

        def failure(_: Any) -> None:
            state["failed"] += 1
            answered(None)

        def answered(_: Any) -> None:
            state["answered"] += 1
            if state["answered"] == n:
                outcome["failed"] = state["failed"]
                done.callback(rate(n, time.perf_counter() - start))
            elif state["sent"] < n:
                send()

        for _ in range(min(WINDOW, n)):
            send()
        return done

    @defer.inlineCallbacks
    def run() -> Any:
        try:
            if scenario == "pool_cold":
                samples = []
                for _ in range(count):
                    start = time.perf_counter()
                    pp = pool.ProcessPool(EchoChild, min=SIZE, max=SIZE, starter=starter,
                                          recycleAfter=0)
                    yield pp.start()
                    yield pp.doWork(AmpEcho, value=SMALL)
                    samples.append(time.perf_counter() - start)
                    yield pp.stop()
                outcome["value"] = median_ms(samples)
                return
            pp = pool.ProcessPool(EchoChild, min=SIZE, max=SIZE, starter=starter,
                                  recycleAfter=recycle_after)
            yield pp.start()
            yield windowed_amp(pp, min(WARMUP, count))
            outcome["value"] = yield windowed_amp(pp, count)
            yield pp.stop()
        except Exception as error:
            outcome["error"] = repr(error)
        finally:
            reactor.stop()

    reactor.callWhenRunning(run)
    reactor.run()
    if "error" in outcome:
        raise RuntimeError(outcome["error"])
    report(scenario, outcome["value"], failed=outcome.get("failed", 0))


def serial(scenario: str, count: int) -> None:
    """The CPU-bound task run in the parent itself, one after another: twice this is the
    most two workers can do."""
    burn(BURN)
    start = time.perf_counter()
    for _ in range(count):
        burn(BURN)
    report(scenario, rate(count, time.perf_counter() - start),
           task_ms=(time.perf_counter() - start) / count * 1000)


def _loop_after_go(scenario: str, count: int) -> None:
    """One of ``two_loops``' processes: warm up, say so, wait for the go on stdin, then run
    the task ``count`` times and print how long that took (seconds)."""
    burn(BURN)
    print("ready", flush=True)
    sys.stdin.readline()
    start = time.perf_counter()
    for _ in range(count):
        burn(BURN)
    print(time.perf_counter() - start, flush=True)


def two_loops(scenario: str, count: int) -> None:
    """The CPU-bound task in two plain processes at once, released together: the most this
    machine gives two workers, with no pool, no parent work and no pipes in between (the sum
    of the two loops' rates). Against ``serial``, the speed-up from 1 to 2 workers that no
    pool can beat here."""
    each = max(count // 2, 1)
    argv = [sys.executable, str(Path(__file__).resolve()), scenario, str(each), "_loop_after_go"]
    loops = [subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    try:
        for loop in loops:
            assert loop.stdout is not None
            if loop.stdout.readline().strip() != "ready":
                raise RuntimeError("a loop process did not start")
        for loop in loops:
            assert loop.stdin is not None
            loop.stdin.write("go\n")
            loop.stdin.flush()
        seconds = []
        for loop in loops:
            assert loop.stdout is not None
            seconds.append(float(loop.stdout.readline()))
    finally:
        for loop in loops:
            if loop.poll() is None:
                loop.kill()
            loop.wait(30)
    # Each loop's own rate, added: a pool whose workers take the next task when free gets
    # the faster CPU's share too, so this is the most it could reach.
    report(scenario, sum(rate(each, s) for s in seconds), loop_seconds=seconds)


IMPLS: dict[str, Callable[[str, int], None]] = {
    "juicectl": juicectl,
    "juicectl_1": lambda scenario, count: juicectl(scenario, count, size=1),
    "juicectl_recycling": lambda scenario, count: juicectl(scenario, count,
                                                           recycle_after_calls=500),
    # The CPU rule's alternative: the workers poll too, with the default budget (the parent's):
    # three spinners on two cores.
    "juicectl_spinning": lambda scenario, count: juicectl(
        scenario, count, worker_busy_poll=ConnectionOptions().busy_poll),
    "controller": juicectl_controller,
    "ppe": process_pool_executor,
    "ppe_1": lambda scenario, count: process_pool_executor(scenario, count, size=1),
    "loky": loky_executor,
    "pebble": pebble_pool,
    "mp_pool": mp_pool,
    "ampoule": ampoule_pool,
    "ampoule_recycling": lambda scenario, count: ampoule_pool(scenario, count, 500),
    "serial": serial,
    "two_loops": two_loops,
    "_loop_after_go": _loop_after_go,
}


def main() -> None:
    if len(sys.argv) != 4 or sys.argv[3] not in IMPLS:
        sys.exit(f"usage: {sys.argv[0]} SCENARIO COUNT {{{','.join(IMPLS)}}}")
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(30),
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),  # stdout carries results
    )
    IMPLS[sys.argv[3]](sys.argv[1], int(sys.argv[2]))


if __name__ == "__main__":
    main()


# --- what run.py needs: the implementations, scenarios, counts and goals ----------------------

_SELF = str(Path(__file__).resolve())
_OURS = "juicectl pool"

#: run.py's name of each implementation -> the driver command (scenario and count go first).
POOL_DRIVERS: dict[str, list[str]] = {
    _OURS: [sys.executable, _SELF, "juicectl"],
    "juicectl pool x1": [sys.executable, _SELF, "juicectl_1"],
    "juicectl pool, recycling 500": [sys.executable, _SELF, "juicectl_recycling"],
    "juicectl pool, workers polling": [sys.executable, _SELF, "juicectl_spinning"],
    "juicectl controller": [sys.executable, _SELF, "controller"],
    "ProcessPoolExecutor": [sys.executable, _SELF, "ppe"],
    "pebble": [sys.executable, _SELF, "pebble"],
    "loky": [sys.executable, _SELF, "loky"],
    "mp.Pool imap": [sys.executable, _SELF, "mp_pool"],
    "ampoule": [sys.executable, _SELF, "ampoule"],
    "ampoule, recycling 500": [sys.executable, _SELF, "ampoule_recycling"],
    "serial": [sys.executable, _SELF, "serial"],
    "two bare loops": [sys.executable, _SELF, "two_loops"],
}

_BASELINES = ["ProcessPoolExecutor", "pebble", "loky", "mp.Pool imap", "ampoule"]

#: Scenario -> the implementations measured in it.
POOL_MEASURED: dict[str, list[str]] = {
    "pool_echo": [_OURS, "juicectl pool, workers polling", "juicectl controller", *_BASELINES],
    "pool_cpu": [_OURS, "juicectl pool x1", "serial", "two bare loops", "ProcessPoolExecutor"],
    "pool_cold": [_OURS, "juicectl controller", *_BASELINES],
    "pool_kill": [_OURS],
    "pool_recycle": [_OURS, "juicectl pool, recycling 500", "ampoule",
                     "ampoule, recycling 500"],
    "pool_orphan": [_OURS],
}

#: Scenario -> (count, quick count).
POOL_COUNTS: dict[str, tuple[int, int]] = {
    "pool_echo": (20000, 6000),
    "pool_cpu": (300, 100),
    "pool_cold": (5, 3),
    "pool_kill": (3, 2),
    "pool_recycle": (20000, 6000),
    "pool_orphan": (1, 1),
}

#: Slow implementations measure fewer requests (their rate is what counts).
POOL_COUNT_FACTOR: dict[str, float] = {
    "ampoule": 0.25, "ampoule, recycling 500": 0.1, "pebble": 0.5, "loky": 0.5,
}

Median = Callable[[str, str], "float | None"]
Extra = Callable[[str, str, str], "float | None"]


def pool_goals(median: Median, extra: Extra) -> list[tuple[str, str, bool | None]]:
    """Issue 16's goals, each (goal, measured, passed), from the medians of a run;
    ``extra(scenario, impl, key)`` is the median of another figure of the result lines.
    ``passed`` is None for a figure that is only reported beside the goals."""
    rows: list[tuple[str, str, bool | None]] = []

    def ratio(text: str, scenario: str, theirs: str, bound: float, *, at_most: bool = False,
              mine: str = _OURS) -> None:
        a, b = median(scenario, mine), median(scenario, theirs)
        if a is None or b is None or not b:
            return
        value = a / b
        rows.append((text, f"{value:.2f}x", value <= bound if at_most else value >= bound))

    for theirs, bound in (("ProcessPoolExecutor", 3.0), ("pebble", 2.0), ("ampoule", 5.0),
                          ("mp.Pool imap", 1.0), ("juicectl controller", 0.9)):
        ratio(f"echo, 64 outstanding: >= {bound:g}x {theirs}", "pool_echo", theirs, bound)
    ratio("CPU rule (workers' polling off): >= 1x the pool with its workers polling",
          "pool_echo", "juicectl pool, workers polling", 1.0)
    ratio("CPU-bound: >= 1.9x from 1 to 2 workers", "pool_cpu", "juicectl pool x1", 1.9)
    two, serial_rate = median("pool_cpu", _OURS), median("pool_cpu", "serial")
    if two is not None and serial_rate:
        share = two / (2 * serial_rate)
        rows.append(("CPU-bound: within 5% of twice the serial rate", f"{share:.1%}",
                     share >= 0.95))
    bare = median("pool_cpu", "two bare loops")
    if bare is not None and serial_rate:
        rows.append(("... the machine: two bare loops at once, against the serial rate",
                     f"{bare / serial_rate:.2f}x", None))
        if two is not None:
            rows.append(("... the pool against two bare loops at once", f"{two / bare:.1%}",
                         None))
    cpu = extra("pool_cpu", _OURS, "parent_cpu_us")
    if cpu is not None:
        rows.append(("CPU-bound: parent CPU <= 50 us per task", f"{cpu:.1f} us", cpu <= 50))
    ratio("start to first answer, 2 workers: <= 1.2x one controller's (time ratio)",
          "pool_cold", "juicectl controller", 1.2, at_most=True)
    failed, hung = median("pool_kill", _OURS), extra("pool_kill", _OURS, "hung")
    back, bound_ms = (extra("pool_kill", _OURS, "back_to_full_ms"),
                      extra("pool_kill", _OURS, "bound_ms"))
    if failed is not None and hung is not None:
        rows.append(("SIGKILL with 8 outstanding: <= 1 failed, none hung",
                     f"{failed:g} failed, {hung:g} hung per kill", failed <= 1 and hung == 0))
    if back is not None and bound_ms is not None:
        rows.append(("... back to full size within the backoff + one cold start",
                     f"{back:.0f} ms (bound {bound_ms:.0f} ms)", back <= bound_ms))
    recycled_failed = extra("pool_recycle", "juicectl pool, recycling 500", "failed")
    if recycled_failed is not None:
        rows.append(("recycling every 500 calls: 0 failed", f"{recycled_failed:g}",
                     recycled_failed == 0))
    ratio("recycling every 500 calls: <= 10% throughput cost", "pool_recycle", _OURS, 0.9,
          mine="juicectl pool, recycling 500")
    alive = median("pool_orphan", _OURS)
    if alive is not None:
        rows.append(("parent SIGKILLed: no worker alive 1 s later", f"{alive:g} alive",
                     alive == 0))
    return rows
