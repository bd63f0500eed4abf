"""Chaos under load: caller threads send Echo requests while a killer SIGKILLs the child.

Shared by the suite's short run (``tests/chaos/test_chaos.py``) and the long run on demand
(``pytest -m slow tests/chaos`` or ``benchmarks/chaos.py``).

Each caller loops: ``get_process()`` (retrying on ``ProcessUnavailable``), then a burst of
pipelined ``Echo`` requests, each carrying a value no other request carries, then waits for
every future of the burst. A future must end within ``bound`` seconds, either answered with
*its own* value or failed with ``ProcessUnavailable``. Anything else is counted against us:

* lost: not settled within ``bound`` (a hang);
* crossed: answered with another request's value (an answer reached the wrong caller);
* other: failed with any exception but ``ProcessUnavailable``.

Meanwhile the killer sends SIGKILL to the current child (whichever child of this process
exists: ready, starting or half-way through a handshake) at random intervals, and the
controller's permanent restart policy brings a new one up. After ``close()`` nothing may be
left over compared with before the run: no child process, no thread (the shared daemon
``juicectl-timer`` thread aside) and no file descriptor.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pykka

from juicectl import ControllerClosed, ProcessController, ProcessUnavailable, RestartPolicy
from juicectl.connection import Connection
from tests.conftest import child_pids
from tests.workers.commands import Echo

ROOT = Path(__file__).resolve().parent.parent.parent

WORKER = [sys.executable, "-m", "juicectl.child", "tests.workers.echo:EchoWorker"]

# The one thread the library may leave behind: the shared timer (a daemon, started once).
ALLOWED_THREADS = frozenset({"juicectl-timer"})

# Log events that each mean a broken promise or a bug.
BAD_EVENTS = frozenset(
    {
        "answer_for_unknown_tag",
        "close_timed_out",
        "controller_failed",
        "controller_stopped_with_child",
        "protocol_error",
        "responder_failed",
        "timer_callback_failed",
        "unexpected_message",
    }
)

# Values that exercise the codec on the way: CRLF continuation lines, non-ASCII, a leading
# space, and now and then a large value spanning several reads (so kills land mid-box).
_FILLERS = ("", "plain", "a\r\nb", "snowman \u2603", " leading", "x" * 3000, "y\r\n" * 700)


def open_fds() -> dict[int, str]:
    """This process's open file descriptors and what they point to."""
    fds: dict[int, str] = {}
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            fds[int(name)] = os.readlink(f"/proc/self/fd/{name}")
    return fds


@dataclass
class Snapshot:
    """What this process holds: threads, file descriptors, children."""

    threads: set[threading.Thread]
    fds: dict[int, str]
    children: set[int]

    @classmethod
    def take(cls) -> Snapshot:
        """The current state."""
        return cls(set(threading.enumerate()), open_fds(), child_pids())

    def leaks_since(self, before: Snapshot) -> list[str]:
        """What is here now and was not in ``before`` (allowed threads aside), in words."""
        leaks = [
            f"thread {thread.name!r}"
            for thread in self.threads - before.threads
            if thread.name not in ALLOWED_THREADS and thread.is_alive()
        ]
        leaks += [
            f"fd {fd} -> {target}"
            for fd, target in self.fds.items()
            if before.fds.get(fd) != target
        ]
        leaks += [f"child process {pid}" for pid in self.children - before.children]
        return leaks


def leaks_after(before: Snapshot, settle: float = 15.0) -> list[str]:
    """Leaks compared with ``before``, waiting up to ``settle`` seconds for threads and fds
    that are already on their way out (a reader thread seeing end of file, a pipe closing)."""
    deadline = time.monotonic() + settle
    while True:
        leaks = Snapshot.take().leaks_since(before)
        if not leaks or time.monotonic() > deadline:
            return leaks
        time.sleep(0.05)


@dataclass
class ChaosReport:
    """The figures of one run."""

    seed: int
    duration: float
    callers: int
    sent: int = 0
    answered: int = 0
    failed_transiently: int = 0
    lost: int = 0
    crossed: int = 0
    other_errors: int = 0
    get_process_transient: int = 0
    get_process_lost: int = 0
    controller_died: int = 0
    kills: int = 0
    restarts: int = 0
    generations: int = 0
    max_settle_seconds: float = 0.0
    leaks: list[str] = field(default_factory=list)
    examples: list[str] = field(default_factory=list)
    other_types: Counter[str] = field(default_factory=Counter)

    @property
    def ok(self) -> bool:
        """Whether every promise held."""
        return (
            self.lost == 0
            and self.crossed == 0
            and self.other_errors == 0
            and self.get_process_lost == 0
            and self.controller_died == 0
            and not self.leaks
            and self.sent == self.answered + self.failed_transiently
        )

    def lines(self) -> list[str]:
        """The figures, one per line."""
        return [
            f"seed                     {self.seed}",
            f"duration                 {self.duration:.1f} s, {self.callers} caller threads",
            f"requests sent            {self.sent}",
            f"kills (SIGKILL)          {self.kills}",
            f"children started         {self.generations} ({self.restarts} automatic restarts)",
            f"answered                 {self.answered}",
            f"failed transiently       {self.failed_transiently} (ProcessUnavailable)",
            f"lost                     {self.lost}",
            f"crossed                  {self.crossed}",
            f"other errors             {self.other_errors} {dict(self.other_types) or ''}",
            f"get_process transient    {self.get_process_transient}",
            f"get_process lost         {self.get_process_lost}",
            f"controller died          {self.controller_died}",
            f"slowest settle           {self.max_settle_seconds:.2f} s",
            f"leaks                    {len(self.leaks)} {self.leaks or ''}",
        ]


class _Tally:
    """Counters shared by the caller threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.other_types: Counter[str] = Counter()
        self.examples: list[str] = []
        self.max_settle = 0.0

    def add(self, key: str, example: str | None = None) -> None:
        with self.lock:
            self.counts[key] += 1
            if example is not None and len(self.examples) < 20:
                self.examples.append(example)


def _caller(
    ctl: ProcessController,
    index: int,
    rng: random.Random,
    stop: threading.Event,
    closing: threading.Event,
    tally: _Tally,
    bound: float,
    max_burst: int,
) -> None:
    sequence = 0
    while not stop.is_set():
        try:
            connection: Connection = ctl.get_process().get(timeout=bound)
        except ControllerClosed as error:
            if not closing.is_set():  # the controller actor died under us
                tally.add("controller_died", f"caller {index}: {error!r}")
            time.sleep(0.005)
            continue
        except ProcessUnavailable:
            tally.add("get_process_transient")
            time.sleep(0.005)  # transient: try again shortly, as a caller would
            continue
        except pykka.Timeout:
            tally.add("get_process_lost", f"caller {index}: get_process() unsettled")
            continue
        burst = []
        for _ in range(rng.randint(1, max_burst)):
            sequence += 1
            value = f"{index}-{sequence}-{rng.choice(_FILLERS)}"
            burst.append((value, time.monotonic(), connection.call(Echo, value=value)))
            tally.add("sent")
        for value, sent_at, future in burst:
            try:
                answer = future.get(timeout=max(0.0, sent_at + bound - time.monotonic()))
            except ProcessUnavailable:
                tally.add("failed_transiently")
            except pykka.Timeout:
                tally.add("lost", f"caller {index}: request {value[:40]!r} unsettled")
                continue
            except Exception as error:
                tally.add("other_errors", f"caller {index}: {error!r}")
                with tally.lock:
                    tally.other_types[type(error).__name__] += 1
            else:
                if answer == {"value": value}:
                    tally.add("answered")
                else:
                    tally.add("crossed", f"sent {value[:40]!r}, got {str(answer)[:60]}")
            settle = time.monotonic() - sent_at
            with tally.lock:
                tally.max_settle = max(tally.max_settle, settle)


def _killer(
    rng: random.Random,
    stop: threading.Event,
    calm: threading.Event,
    low: float,
    high: float,
    kills: list[int],
) -> None:
    while not stop.wait(rng.uniform(low, high)):
        if calm.is_set():
            continue
        for pid in child_pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
            kills.append(pid)


def _wait_for_progress(
    tally: _Tally, kills: list[int], calm: threading.Event, bound: float
) -> None:
    """Go on past the planned duration until the run has seen a kill and an answer (a slow
    machine may start children more slowly than the killer kills them): once a kill has
    happened the killer holds off, so that a child lives long enough to answer. Bounded."""
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        with tally.lock:
            answered = tally.counts["answered"]
        if kills and answered:
            return
        if kills:
            calm.set()
        time.sleep(0.01)


def run_chaos(
    *,
    duration: float,
    callers: int = 8,
    kill_interval: tuple[float, float] = (0.1, 0.6),
    bound: float = 30.0,
    max_burst: int = 8,
    seed: int | None = None,
    restart: RestartPolicy | None = None,
    close_under_fire: bool = False,
) -> ChaosReport:
    """Run the chaos for ``duration`` seconds and return the figures (leak check included).

    Args:
        duration: seconds of load and kills.
        callers: caller threads.
        kill_interval: the killer sleeps a random time in this range between kills.
        bound: seconds within which every future must settle.
        max_burst: each caller pipelines 1 to this many requests at a time.
        seed: for the random choices (printed in the report).
        restart: the policy (default: permanent, small backoff, no intensity limit to hit).
        close_under_fire: ``close()`` while the callers and the killer are still at work
            (they then get ``ControllerClosed``, a permanent failure), instead of after.
    """
    seed = random.randrange(1 << 32) if seed is None else seed
    master = random.Random(seed)
    policy = restart or RestartPolicy(
        mode="permanent",
        initial_delay=0.01,
        factor=1.5,
        max_delay=0.1,
        jitter=0.5,
        max_restarts=1_000_000,
        window=60.0,
    )
    report = ChaosReport(seed=seed, duration=duration, callers=callers)
    before = Snapshot.take()
    ctl = ProcessController.start(
        WORKER,
        name="chaos",
        cwd=str(ROOT),
        restart=policy,
        startup_timeout=10.0,
        stop_timeout=2.0,
        kill_timeout=1.0,
    )
    stop = threading.Event()
    calm = threading.Event()  # the killer holds off (see _wait_for_progress)
    closing = threading.Event()
    tally = _Tally()
    kills: list[int] = []
    threads = [
        threading.Thread(
            target=_caller,
            args=(ctl, i, random.Random(master.random()), stop, closing, tally, bound, max_burst),
            name=f"chaos-caller-{i}",
        )
        for i in range(callers)
    ]
    killer = threading.Thread(
        target=_killer,
        args=(random.Random(master.random()), stop, calm, *kill_interval, kills),
        name="chaos-killer",
    )
    try:
        for thread in threads:
            thread.start()
        killer.start()
        time.sleep(duration)
        _wait_for_progress(tally, kills, calm, bound)
    finally:
        if close_under_fire:
            stats = ctl.stats()
            closing.set()
            ctl.close()
        stop.set()
        killer.join()
        for thread in threads:
            # A caller waits at most ``bound`` per future it holds; never hang the run.
            thread.join(timeout=bound * (max_burst + 1))
        if not close_under_fire:
            stats = ctl.stats()
            closing.set()
            ctl.close()
    report.leaks = [
        f"caller thread {t.name!r} still running" for t in threads if t.is_alive()
    ] + leaks_after(before)
    counts = tally.counts
    report.sent = counts["sent"]
    report.answered = counts["answered"]
    report.failed_transiently = counts["failed_transiently"]
    report.lost = counts["lost"]
    report.crossed = counts["crossed"]
    report.other_errors = counts["other_errors"]
    report.other_types = tally.other_types
    report.get_process_transient = counts["get_process_transient"]
    report.get_process_lost = counts["get_process_lost"]
    # A dead controller answers stats() without a generation.
    report.controller_died = counts["controller_died"] + ("generation" not in stats)
    report.kills = len(kills)
    report.restarts = int(stats.get("restarts", 0))
    report.generations = int(stats.get("generation", 0))
    report.max_settle_seconds = tally.max_settle
    report.examples = tally.examples
    return report


def describe_failure(report: ChaosReport) -> str:
    """The figures and the first examples, for an assertion message."""
    return "\n".join([*report.lines(), *report.examples])


__all__ = [
    "BAD_EVENTS",
    "ChaosReport",
    "Snapshot",
    "child_pids",
    "leaks_after",
    "open_fds",
    "run_chaos",
]
