"""``juicectl demo``, second part: a ``ProcessPool`` of two indexer workers through a crash.

What it shows, as it happens: the pool's events (a subscriber actor prints each
``WorkerChanged`` and ``WorkerLost``), a batch sent through the pool with requests in flight
on both workers, one worker killed with SIGKILL half-way, what the pool did with the requests
on it (those the worker had not started are sent again to the other worker; the one it was
running fails with ``ProcessUnavailable`` and the demo sends it again), the worker restarted
while the other serves, and both stopped at once. Every figure in its summary comes from what
happened: the pool's ``stats()``, its events, the workers' answers (each worker's word counts
are checked against the demo's own).
"""

from __future__ import annotations

import os
import re
import signal
import sys
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from juicectl._cli._demo import Console, Narrator
from juicectl._cli._demo_worker import Index, SetStore
from juicectl.connection import Connection
from juicectl.exceptions import ProcessUnavailable
from juicectl.policy import RestartPolicy
from juicectl.pool import PoolFuture, ProcessPool, WorkerChanged, WorkerGaveUp, WorkerLost

__all__ = ["POOL_WINDOW", "PoolAct", "pool_summary", "run_pool_act"]

#: Requests kept in flight through the pool: a few on each worker, so a kill catches some.
POOL_WINDOW = 8
#: The pool's name, and so the prefix of its workers' names.
POOL_NAME = "demo-pool"

_WORD = re.compile(r"\w+")


class PoolNarrator(Narrator):
    """Subscribed to the pool: prints each pool event as it happens and keeps them."""

    def describe(self, message: object) -> str | None:
        """The line a pool event is told in (None: kept, not told)."""
        if isinstance(message, WorkerChanged):
            return (f"  pool    {message.worker}: {message.old:>8} -> {message.new:<8} "
                    f"({message.cause})")
        if isinstance(message, WorkerLost):
            # The count of what was on the worker comes from here, not from the KILL line: the
            # pool may write it more between the look at its load and the signal.
            return (f"  lost    {message.worker}: {message.reason.describe()}; "
                    f"{message.resent + message.failed} requests were on it: "
                    f"{message.resent} sent again to another worker, {message.failed} failed")
        if isinstance(message, WorkerGaveUp):
            return f"  gave up {message.worker} (replaced: {message.replaced})"
        return None


@dataclass
class PoolAct:
    """What the pool act did: its figures, for the summary and its checks."""

    indexed: dict[str, int] = field(default_factory=dict)  # name -> pid that indexed it
    wrong_counts: list[str] = field(default_factory=list)
    retried: list[str] = field(default_factory=list)  # failed at the kill, sent again
    killed: tuple[str, int] | None = None  # (worker, pid)
    stats: dict[str, Any] = field(default_factory=dict)
    stop_how: dict[str, str] = field(default_factory=dict)
    seen: list[object] = field(default_factory=list)
    whole_again: bool = False

    def problems(self, documents: int) -> list[str]:
        """What went wrong, in words (nothing: the act did what it shows)."""
        found: list[str] = []
        if len(self.indexed) != documents:
            found.append(f"the pool indexed {len(self.indexed)} of {documents} documents")
        if self.wrong_counts:
            found.append(f"wrong word counts for {', '.join(self.wrong_counts)}")
        lost = [e for e in self.seen if isinstance(e, WorkerLost)]
        if self.killed is None:
            found.append("no pool worker was killed")
        elif len(lost) != 1:
            found.append(f"expected one WorkerLost event, the pool told {len(lost)}")
        elif lost[0].failed > 1:
            found.append(f"{lost[0].failed} requests failed at the kill; a one-at-a-time "
                         "worker runs one")
        elif len(self.retried) != lost[0].failed:
            found.append(f"{len(self.retried)} requests failed with ProcessUnavailable, the "
                         f"pool said {lost[0].failed} would")
        if not self.whole_again:
            found.append("the pool was not back to two workers before the stop")
        if not self.stop_how or set(self.stop_how.values()) != {"clean"}:
            found.append(f"the pool's stop was not clean: {self.stop_how}")
        return found


def run_pool_act(console: Console, docs: list[tuple[str, str]], store: Path,
                 cost: float) -> PoolAct:
    """Index ``docs`` through a pool of two workers, killing one half-way; print the story."""
    act = PoolAct()
    narrator = PoolNarrator.start(console, act.seen)
    argv = [sys.executable, "-m", "juicectl.child", "juicectl._cli._demo_worker:IndexWorker"]

    def prepare(connection: Connection) -> None:
        # Each worker keeps its own store: two children never write one index file.
        folder = store / f"worker-{connection.pid}"
        connection.call(SetStore, path=folder).get(timeout=10)

    console.line("")
    console.line(f"juicectl demo, part 2: a ProcessPool of two indexer workers ({POOL_NAME})")
    console.line(f"  plan: index {len(docs)} documents through the pool ({POOL_WINDOW} in "
                 "flight), SIGKILL the worker with the most requests on it half-way, let the "
                 "pool restart it while the other serves, stop both at once.")
    console.line("")
    pool = ProcessPool.start(
        argv, size=2, name=POOL_NAME, prepare=prepare, subscribers=[narrator],
        restart=RestartPolicy(initial_delay=0.2, jitter=0.0, max_restarts=3, window=60.0),
        startup_timeout=10.0, stop_timeout=5.0, kill_timeout=2.0,
    )
    try:
        _drive_pool(console, pool, docs, cost, act)
        # The batch may be done before the pool has seen the kill: wait for the loss to be
        # seen and the worker restarted, or the stop would find the child dead already.
        lost = 1 if act.killed is not None else 0
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            stats = pool.stats()
            if stats["lost"] >= lost and stats["size"] == 2:
                break
            time.sleep(0.02)
        act.stats = pool.stats()
        act.whole_again = act.stats["size"] == 2
        console.line(f"  stop    {POOL_NAME}: both workers at once ...")
        results = pool.close() or {}
        act.stop_how = {name: (result.how if result else "timed out")
                        for name, result in results.items()}
        console.line(f"  stopped: {', '.join(f'{n} {h}' for n, h in act.stop_how.items())}")
    finally:
        pool.close()
        narrator.stop(block=True, timeout=10)
    return act


def _drive_pool(console: Console, pool: ProcessPool, docs: list[tuple[str, str]],
                cost: float, act: PoolAct) -> None:
    texts = dict(docs)
    pending: deque[str] = deque(texts)
    in_flight: dict[str, PoolFuture] = {}
    console.progress(0, len(docs))
    while pending or in_flight:
        while pending and len(in_flight) < POOL_WINDOW:
            name = pending.popleft()
            in_flight[name] = pool.call(Index, name=name, text=texts[name], cost=cost,
                                        timeout=10)
        name, future = next(iter(in_flight.items()))
        del in_flight[name]
        try:
            answer = future.get(timeout=15)
        except ProcessUnavailable as error:
            act.retried.append(name)
            console.line(f"  retry   {name}: {error.reason} (ProcessUnavailable); sending it "
                         "again")
            pending.appendleft(name)
            continue
        counts = Counter(word.lower() for word in _WORD.findall(texts[name]))
        if (answer["words"], answer["distinct"]) != (sum(counts.values()), len(counts)):
            act.wrong_counts.append(name)
        act.indexed[name] = answer["pid"]
        console.progress(len(act.indexed), len(docs))
        if act.killed is None and len(act.indexed) >= len(docs) // 2:
            _kill_busiest(console, pool, act)


def _kill_busiest(console: Console, pool: ProcessPool, act: PoolAct) -> None:
    workers = [w for w in pool.stats()["workers"] if w["state"] == "ready"]
    if not workers:
        return  # none serving this moment: the next answer tries again
    busiest = max(workers, key=lambda w: w["in_flight"])
    act.killed = (busiest["name"], busiest["pid"])
    console.line(f"  KILL    {busiest['name']} (pid {busiest['pid']}) with SIGKILL, the worker "
                 "with the most requests on it")
    os.kill(busiest["pid"], signal.SIGKILL)


def pool_summary(console: Console, act: PoolAct) -> None:
    """The pool act's summary lines (its checks are ``PoolAct.problems``)."""
    by_pid = Counter(act.indexed.values())
    stats = act.stats
    console.line("")
    console.line("pool summary")
    console.line(f"  documents indexed   {len(act.indexed)} by {len(by_pid)} worker processes ("
                 + ", ".join(f"pid {pid}: {n}" for pid, n in sorted(by_pid.items()))
                 + "); every word count checked against the demo's own")
    lost = [e for e in act.seen if isinstance(e, WorkerLost)]
    if act.killed is not None and lost:
        worker, pid = act.killed
        console.line(f"  crash               {worker} (pid {pid}) killed: {lost[0].resent} "
                     "requests it had not started were sent again by the pool, "
                     f"{lost[0].failed} it was running failed and the demo sent it again")
    console.line(f"  workers             {stats.get('started', 0)} started, "
                 f"{stats.get('lost', 0)} lost and restarted; {stats.get('size', 0)} serving "
                 "before the stop")
    console.line(f"  stop                {', '.join(act.stop_how.values()) or 'none'} "
                 "(in parallel)")
