"""``juicectl demo``: a controller supervising the indexer worker through a crash, then a pool.

What it shows, as it happens: every mode change (a subscriber actor prints ``ModeChanged``
events), the ``prepare`` step pointing each new child at the store, the work going out with a
progress bar, the child killed with SIGKILL half-way, the requests that were in flight failing
with ``ProcessUnavailable`` and being sent again, the automatic restart, a clean stop, and a
summary. Every figure in the summary comes from what happened (the connections' counters, the
controller's ``stats()``, the worker's own answers); the exit status is 1 if a check fails.
The second part, a ``ProcessPool`` of two of these workers through a crash, is
``juicectl._cli._demo_pool``.

This is a program, not the library, so it configures structlog (the library never does): the
controller's own log lines that tell the story are shown, the rest are filtered out.
"""

from __future__ import annotations

import os
import random
import signal
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, MutableMapping
from pathlib import Path
from typing import Any, TextIO

import pykka
import structlog

from juicectl._cli._demo_worker import Index, Search, SetStore
from juicectl._future import ReplyFuture
from juicectl.connection import Connection
from juicectl.controller import ProcessController
from juicectl.exceptions import ProcessUnavailable
from juicectl.messages import GaveUp, ModeChanged, ProcessStarted, ProcessTerminated
from juicectl.policy import RestartPolicy

__all__ = ["run_demo"]

#: Requests kept in flight at once: enough that a kill always catches some of them.
WINDOW = 4
#: Seconds of pretend work per document, in the worker.
COST = 0.02
#: The word the demo searches for at the end.
WORD = "juice"
#: The library's log lines worth showing in the demo (warnings and errors always are).
STORY_EVENTS = frozenset({"launched", "child_terminated", "restart_scheduled"})

_VOCABULARY = [
    "apple", "orange", "juice", "press", "pulp", "bottle", "crate", "orchard", "harvest", "peel",
    "citrus", "squeeze", "glass", "morning", "market", "basket", "seed", "tree", "leaf", "sugar",
]


class Console:
    """Thread-safe output: whole lines, and a progress bar redrawn in place on a terminal."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._tty = stream.isatty()
        self._lock = threading.Lock()
        self._bar_shown = False
        self._last_step = -1

    def line(self, text: str) -> None:
        with self._lock:
            if self._bar_shown:
                self._stream.write("\r\033[K")
                self._bar_shown = False
            self._stream.write(text + "\n")
            self._stream.flush()

    def progress(self, done: int, total: int) -> None:
        width = 30
        filled = width * done // total
        bar = f"  [{'#' * filled}{'.' * (width - filled)}] {done:>3}/{total} documents"
        with self._lock:
            if self._tty:
                self._stream.write("\r" + bar)
                self._bar_shown = True
                if done == total:
                    self._stream.write("\n")
                    self._bar_shown = False
            else:
                # No terminal (CI, a pipe): a line at each eighth, so a log stays short.
                step = done * 8 // total
                if step == self._last_step and done != total:
                    return
                self._last_step = step
                self._stream.write(bar + "\n")
            self._stream.flush()


class _ConsoleLogger:
    """structlog's end of the line: rendered lines go to the console."""

    def __init__(self, console: Console) -> None:
        self._console = console

    def msg(self, message: str) -> None:
        self._console.line(f"  log     {message}")

    debug = info = warning = warn = error = critical = exception = fatal = failure = msg


def _configure_structlog(console: Console) -> None:
    def keep_the_story(
        _logger: Any, method: str, event: MutableMapping[str, Any]
    ) -> Mapping[str, Any]:
        if method in ("warning", "error", "critical", "exception"):
            return event
        if event.get("event") in STORY_EVENTS:
            return event
        raise structlog.DropEvent

    def trim(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> Mapping[str, Any]:
        controller = event.pop("controller", None)
        if controller not in (None, "demo") and "worker" not in event:
            event["worker"] = controller  # part 2: which of the pool's workers says it
        for key in ("argv", "generation", "timestamp"):
            event.pop(key, None)
        if isinstance(event.get("delay"), float):
            event["delay"] = round(event["delay"], 2)
        if isinstance(event.get("uptime"), float):
            event["uptime"] = round(event["uptime"], 2)
        return event

    structlog.configure(
        processors=[
            keep_the_story,
            trim,
            structlog.dev.ConsoleRenderer(colors=False, pad_event_to=18),
        ],
        logger_factory=lambda *_args: _ConsoleLogger(console),
        cache_logger_on_first_use=False,
    )


class Narrator(pykka.ThreadingActor):
    """Subscribed to the controller: prints each event as it happens and keeps them."""

    def __init__(self, console: Console, seen: list[object]) -> None:
        super().__init__()
        self._console = console
        self._seen = seen

    def on_receive(self, message: Any) -> Any:
        self._seen.append(message)
        line = self.describe(message)
        if line is not None:
            self._console.line(line)
        return None

    def describe(self, message: object) -> str | None:
        """The line an event is told in (None: kept, not told)."""
        if isinstance(message, ModeChanged):
            return (f"  mode    {message.old:>13} -> {message.new:<13} "
                    f"({message.cause}, child #{message.generation})")
        if isinstance(message, ProcessStarted):
            return f"  ready   child #{message.generation} is pid {message.pid}"
        if isinstance(message, ProcessTerminated):
            return f"  ended   child #{message.generation}: {message.reason.describe()}"
        if isinstance(message, GaveUp):
            return f"  gave up after {message.restarts} restarts: {message.last.describe()}"
        return None


def make_documents(count: int) -> list[tuple[str, str]]:
    """``count`` small documents, the same every run."""
    rng = random.Random(2006)
    width = len(str(count))
    return [
        (f"doc-{number:0{width}d}", " ".join(rng.choices(_VOCABULARY, k=rng.randint(8, 30))))
        for number in range(1, count + 1)
    ]


class _Run:
    """The demo's bookkeeping: what was sent, what failed, what was retried."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.connections: dict[int, Connection] = {}
        self.indexed: set[str] = set()
        self.requests_retried = 0
        self.gets_refused = 0
        self.killed: tuple[int, int, int] | None = None  # (generation, pid, in flight)
        self.in_flight_at_kill: set[str] = set()
        self.failed_after_kill: set[str] = set()  # sent after the kill, before it was noticed
        self.prepared: list[tuple[int, int]] = []  # (generation, documents in the store)

    def prepare(self, store: Path) -> Callable[[Connection], None]:
        def prepare(connection: Connection) -> None:
            # Runs for every new child, before any caller gets its connection.
            answer = connection.call(SetStore, path=store).get(timeout=10)
            self.prepared.append((connection.generation, answer["documents"]))
            self.console.line(
                f"  prepare child #{connection.generation}: SetStore -> the store holds "
                f"{answer['documents']} documents"
            )

        return prepare

    def connection(self, controller: ProcessController) -> Connection | None:
        """The current connection, or None (counted, reported) while there is none to have."""
        try:
            connection: Connection = controller.get_process().get(timeout=15)
        except ProcessUnavailable as error:
            self.gets_refused += 1
            if self.gets_refused == 1 or self.gets_refused % 10 == 0:
                self.console.line(f"  wait    get_process: {error.reason}; trying again")
            time.sleep(0.05)
            return None
        self.connections[connection.generation] = connection
        return connection


def run_demo(documents: int = 40, *, stream: TextIO | None = None) -> int:
    """Run the demo, printing to ``stream`` (stdout); return 0, or 1 if a check failed."""
    console = Console(stream or sys.stdout)
    _configure_structlog(console)
    started = time.monotonic()
    docs = make_documents(documents)
    kill_after = documents // 2
    run = _Run(console)
    seen: list[object] = []
    narrator = Narrator.start(console, seen)
    argv = [sys.executable, "-m", "juicectl.child", "juicectl._cli._demo_worker:IndexWorker"]
    console.line("juicectl demo, part 1: a ProcessController supervising an indexer worker")
    console.line(f"  child: {' '.join(['python', *argv[1:]])}")
    console.line(f"  plan: index {documents} documents ({WINDOW} requests in flight), kill the "
                 f"child with SIGKILL after {kill_after}, let the controller restart it, stop.")
    console.line("")
    with tempfile.TemporaryDirectory(prefix="juicectl-demo-") as store:
        controller = ProcessController.start(
            argv,
            name="demo",
            prepare=run.prepare(Path(store)),
            restart=RestartPolicy(initial_delay=0.2, jitter=0.0, max_restarts=3, window=60.0),
            subscribers=[narrator],
            startup_timeout=10.0,
            stop_timeout=5.0,
            kill_timeout=2.0,
        )
        try:
            outcome = _drive(controller, run, docs, kill_after)
        finally:
            controller.close()
            narrator.stop(block=True, timeout=10)
        problems = _summary(console, run, docs, outcome, seen)
        # Imported here: part 2 builds on this module's console and narrator.
        from juicectl._cli._demo_pool import pool_summary, run_pool_act

        pool_act = run_pool_act(console, docs, Path(store) / "pool", COST)
    pool_summary(console, pool_act)
    problems += pool_act.problems(len(docs))
    console.line("")
    console.line(f"time {time.monotonic() - started:.1f} s, both parts")
    if problems:
        for problem in problems:
            console.line(f"demo FAILED: {problem}")
        return 1
    console.line("demo OK")
    return 0


def _drive(
    controller: ProcessController, run: _Run, docs: list[tuple[str, str]], kill_after: int
) -> dict[str, Any]:
    console = run.console
    pending: deque[tuple[str, str]] = deque(docs)
    in_flight: dict[str, ReplyFuture[dict[str, Any]]] = {}
    texts = dict(docs)
    console.progress(0, len(docs))
    while pending or in_flight:
        while pending and len(in_flight) < WINDOW:
            connection = run.connection(controller)
            if connection is None:
                if in_flight:
                    break  # collect what is out first
                continue
            name, text = pending.popleft()
            in_flight[name] = connection.call(Index, name=name, text=text, cost=COST, timeout=10)
        if not in_flight:
            continue
        name, future = next(iter(in_flight.items()))
        del in_flight[name]
        try:
            future.get(timeout=15)
        except ProcessUnavailable as error:
            run.requests_retried += 1
            if name not in run.in_flight_at_kill:
                run.failed_after_kill.add(name)
            console.line(f"  retry   {name}: {error.reason} (ProcessUnavailable); sending it again")
            pending.appendleft((name, texts[name]))
            continue
        run.indexed.add(name)
        console.progress(len(run.indexed), len(docs))
        if run.killed is None and len(run.indexed) >= kill_after and in_flight:
            run.in_flight_at_kill = set(in_flight)
            _kill(controller, run, len(in_flight))
    console.line("")
    # What the worker says, checked against what we sent.
    connection = controller.get_process().get(timeout=15)
    found = connection.call(Search, word=WORD).get(timeout=10)["documents"]
    console.line(f"  search  {WORD!r}: {len(found)} documents hold it")
    stats = controller.stats()
    console.line("  stop    stop_process() ...")
    result = controller.stop_process().get(timeout=20)
    console.line(f"  stopped: {result.how}")
    return {"found": found, "stats": stats, "stop": result}


def _kill(controller: ProcessController, run: _Run, in_flight: int) -> None:
    stats = controller.stats()
    pid, generation = stats["pid"], stats["generation"]
    run.killed = (generation, pid, in_flight)
    run.console.line(
        f"  KILL    child #{generation} (pid {pid}) with SIGKILL, {in_flight} requests in flight"
    )
    os.kill(pid, signal.SIGKILL)


def _times(count: int) -> str:
    return "once" if count == 1 else f"{count} times"


def _summary(
    console: Console,
    run: _Run,
    docs: list[tuple[str, str]],
    outcome: dict[str, Any],
    seen: list[object],
) -> list[str]:
    """Print part 1's summary; return what went wrong in it, in words."""
    totals = {"sent": 0, "answered": 0, "failed": 0}
    for connection in run.connections.values():
        for key in totals:
            totals[key] += connection.stats()[key]
    stats = outcome["stats"]
    expected = sorted(name for name, text in docs if WORD in text.lower().split())
    modes = [(e.old, e.new, e.cause) for e in seen if isinstance(e, ModeChanged)]
    started = sum(isinstance(e, ProcessStarted) for e in seen)
    problems = []
    if len(run.indexed) != len(docs):
        problems.append(f"only {len(run.indexed)} of {len(docs)} documents were indexed")
    if outcome["found"] != expected:
        problems.append(f"the worker found {len(outcome['found'])} documents with {WORD!r}, "
                        f"{len(expected)} hold it")
    if run.killed is None:
        problems.append("the child was never killed")
    elif stats["restarts"] != 1:
        problems.append(f"expected 1 automatic restart, the controller made {stats['restarts']}")
    if ("stopped", "starting", "restart") not in modes:
        problems.append("no restart was seen among the mode changes")
    if outcome["stop"].how != "clean":
        problems.append(f"the stop was not clean: {outcome['stop'].how}")
    if modes and modes[-1][1] != "stopped":
        problems.append(f"the last mode seen was {modes[-1][1]!r}")

    killed = run.killed
    console.line("")
    console.line("summary")
    console.line(f"  documents indexed   {len(run.indexed)} of {len(docs)}; the worker finds "
                 f"{WORD!r} in {len(outcome['found'])}, as many as were sent with it")
    console.line(f"  requests            {totals['sent']} sent, {totals['answered']} answered, "
                 f"{totals['failed']} failed (the connections' own counters: readiness probes, "
                 "SetStore, Search and Shutdown included)")
    if killed is not None:
        console.line(f"  crash               child #{killed[0]} (pid {killed[1]}) killed with "
                     f"{killed[2]} requests in flight")
    late = len(run.failed_after_kill)
    console.line(f"  failures retried    {run.requests_retried} requests failed with "
                 "ProcessUnavailable and were sent again"
                 + (f" ({late} of them sent after the kill, before the loss was noticed)"
                    if late else ""))
    console.line(f"                      get_process() refused {_times(run.gets_refused)} while "
                 "the dead child's exit was being reported")
    restarts = stats["restarts"]
    held = ", ".join(str(documents) for _, documents in run.prepared)
    console.line(f"  children            {started} started, {restarts} automatic "
                 f"restart{'' if restarts == 1 else 's'}; the store held {held} documents as "
                 "each one started")
    console.line(f"  mode changes        {len(modes)}")
    console.line(f"  stop                {outcome['stop'].how}")
    return problems


if __name__ == "__main__":
    sys.exit(run_demo())
