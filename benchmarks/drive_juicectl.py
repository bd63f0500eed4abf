#!/usr/bin/env python3
"""juicectl: a ProcessController driving ``python -m juicectl.child`` (see ``_common.py``).

    .venv/bin/python benchmarks/drive_juicectl.py SCENARIO COUNT [--via-actor] [--busy-poll=S]

``--via-actor`` is the write-path experiment: every request goes through a writer actor's
inbox (a ``tell`` per request, written by that actor's thread) instead of being written by
the caller's thread under the connection's small lock. ``--busy-poll=S`` sets the busy-poll
budget (seconds) of the parent and of the child; ``--busy-poll=0`` turns busy polling off.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pykka
import structlog

from benchmarks._common import (
    BIG,
    ROOT,
    SMALL,
    THREADS,
    WARMUP,
    concurrent_rate,
    median_ms,
    parse_args,
    report,
    rss_kib,
    sequential,
    thread_count,
)
from benchmarks.workload import Echo
from juicectl import Connection, ProcessController, RestartPolicy

ARGV = [sys.executable, "-m", "juicectl.child", "benchmarks.workload:EchoWorker"]


class _Writer(pykka.ThreadingActor):
    """The experiment's writer actor: writes what it is told, one message per request."""

    def __init__(self, write: Any) -> None:
        super().__init__()
        self._write = write

    def on_receive(self, message: Any) -> None:
        self._write(message)


def _route_writes_through_actor(connection: Connection) -> pykka.ActorRef[Any]:
    # Bypass the combined write under the lock: each request becomes one inbox message,
    # written through the connection's transport (reading while it waits for room).
    transport, wait_for_room = connection._transport, connection._wait_for_room
    writer = _Writer.start(lambda data: transport.write(data, wait_for_room))
    connection._send = lambda data, future=None, may_block=True, deadline=None: writer.tell(data)  # type: ignore[method-assign]
    return writer


_busy_poll: float | None = None


def _start(**options: Any) -> ProcessController:
    if _busy_poll is None:
        return ProcessController.start(ARGV, cwd=str(ROOT), **options)
    argv = [*ARGV, f"--busy-poll={_busy_poll}"]
    return ProcessController.start(argv, cwd=str(ROOT), busy_poll=_busy_poll, **options)


def _steady(scenario: str, count: int, via_actor: bool) -> None:
    with _start() as controller:
        connection = controller.get_process().get(timeout=30)
        writer = _route_writes_through_actor(connection) if via_actor else None
        try:
            if scenario in ("seq", "big"):
                value = SMALL if scenario == "seq" else BIG

                def call(value: str) -> str:
                    return str(connection.call(Echo, value=value).get()["value"])

                assert call(value) == value
                result = sequential(call, value, count, connection.pid)
            else:
                result = concurrent_rate(
                    lambda value: connection.call(Echo, value=value),
                    lambda future: future.get(),
                    BIG if scenario == "big64" else SMALL,
                    count,
                    THREADS if scenario == "t8" else 1,
                    connection.pid,
                )
        finally:
            if writer is not None:
                writer.stop()
                del connection._send  # the stop's Shutdown goes the usual way
        report(scenario, **result)


def _cold(count: int) -> None:
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        controller = _start()
        try:
            connection = controller.get_process().get(timeout=30)
            connection.call(Echo, value=SMALL).get(timeout=30)
            samples.append(time.perf_counter() - start)
        finally:
            controller.close()
    report("cold", median_ms(samples), samples_ms=[round(s * 1000, 2) for s in samples])


def _restart(count: int) -> None:
    started = threading.Event()
    # No backoff: measure the restart itself (the default policy waits 0.1 s +-10% first).
    policy = RestartPolicy(initial_delay=0.0, jitter=0.0, max_restarts=count + 10)
    samples = []
    with _start(restart=policy, on_process_startup=started.set) as controller:
        connection = controller.get_process().get(timeout=30)
        connection.call(Echo, value=SMALL).get(timeout=30)
        for _ in range(count):
            started.wait(30)
            started.clear()
            start = time.perf_counter()
            os.kill(connection.pid, signal.SIGKILL)
            if not started.wait(30):
                raise RuntimeError("no restart within 30 s")
            connection = controller.get_process().get(timeout=30)
            connection.call(Echo, value=SMALL).get(timeout=30)
            samples.append(time.perf_counter() - start)
    report("restart", median_ms(samples), samples_ms=[round(s * 1000, 2) for s in samples])


def _rest() -> None:
    threads_before, rss_before = thread_count(), rss_kib()
    with _start() as controller:
        connection = controller.get_process().get(timeout=30)
        for _ in range(WARMUP):
            connection.call(Echo, value=SMALL).get(timeout=30)
        time.sleep(0.2)
        threads = thread_count() - threads_before
        report("rest", threads, parent_rss_delta_kib=rss_kib() - rss_before,
               child_rss_kib=rss_kib(connection.pid), child_threads=thread_count(connection.pid),
               thread_names=sorted(t.name for t in threading.enumerate()))


def main() -> None:
    global _busy_poll
    scenario, count, flags = parse_args()
    for flag in flags:
        if flag.startswith("--busy-poll="):
            _busy_poll = float(flag.partition("=")[2])
    # Benchmarks may configure logging (the library never does): warnings only, as in
    # production, so that the measured path is not the console's.
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),  # stdout carries results
    )
    if scenario == "cold":
        _cold(count)
    elif scenario == "restart":
        _restart(count)
    elif scenario == "rest":
        _rest()
    else:
        _steady(scenario, count, "--via-actor" in flags)


if __name__ == "__main__":
    main()
