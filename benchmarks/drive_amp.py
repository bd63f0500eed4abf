#!/usr/bin/env python3
"""Baseline: a Twisted AMP parent driving an AMP child over stdio (see ``_common.py``).

    .venv/bin/python benchmarks/drive_amp.py SCENARIO COUNT

The parent spawns ``amp_child.py`` through a ``ProcessEndpoint`` (``spawnProcess`` under the
hood) and calls it with ``callRemote``, as a Twisted program would. The threaded scenario
calls from plain threads through ``reactor.callFromThread``, Twisted's way for threads.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Generator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from twisted.internet import defer, reactor
from twisted.internet.protocol import ProcessProtocol
from twisted.protocols import amp

from benchmarks._common import (
    BENCH,
    BIG,
    SMALL,
    THREADS,
    WARMUP,
    WINDOW,
    Meter,
    concurrent_rate,
    median_ms,
    parse_args,
    report,
    rss_kib,
    thread_count,
)
from benchmarks.amp_child import Echo

CHILD = str(BENCH / "amp_child.py")


class _Pipes:
    """The transport AMP writes to: the child's stdin (AMP also asks for peer and host)."""

    def __init__(self, process: Any) -> None:
        self._process = process
        self.pid = process.pid

    def write(self, data: bytes) -> None:
        self._process.write(data)

    def writeSequence(self, data: list[bytes]) -> None:
        self._process.writeSequence(data)

    def loseConnection(self) -> None:
        self._process.closeStdin()

    def getPeer(self) -> Any:
        return ("child", self.pid)

    def getHost(self) -> Any:
        return ("parent", os.getpid())


class _AMPProcess(ProcessProtocol):
    """Connects an AMP protocol to a child's stdin/stdout, as ampoule does."""

    def __init__(self, connected: defer.Deferred[amp.AMP]) -> None:
        self.amp = amp.AMP()
        self._connected = connected
        self.ended: defer.Deferred[None] = defer.Deferred()

    def connectionMade(self) -> None:
        self.amp.makeConnection(_Pipes(self.transport))
        self._connected.callback(self.amp)

    def childDataReceived(self, fd: int, data: bytes) -> None:
        if fd == 1:
            self.amp.dataReceived(data)
        else:
            sys.stderr.buffer.write(data)

    def processEnded(self, reason: Any) -> None:
        self.amp.connectionLost(reason)
        self.ended.callback(None)


def _connect() -> defer.Deferred[amp.AMP]:
    connected: defer.Deferred[amp.AMP] = defer.Deferred()
    protocol = _AMPProcess(connected)
    reactor.spawnProcess(protocol, sys.executable, [sys.executable, CHILD], env=dict(os.environ))
    connected.addCallback(lambda proto: setattr(proto, "process", protocol) or proto)
    return connected


def _close(proto: amp.AMP) -> defer.Deferred[None]:
    proto.transport.loseConnection()
    ended: defer.Deferred[None] = proto.process.ended
    return ended


@defer.inlineCallbacks
def _sequential(proto: amp.AMP, value: str, count: int) -> Generator[Any, Any, dict[str, Any]]:
    for _ in range(min(WARMUP, count)):
        yield proto.callRemote(Echo, value=value)
    meter = Meter(count, proto.transport.pid)
    latencies = meter.latencies
    clock = time.perf_counter
    meter.start()
    start = then = clock()
    for _ in range(count):
        yield proto.callRemote(Echo, value=value)
        now = clock()
        latencies.append(now - then)
        then = now
    return meter.figures(then - start)


def _windowed(proto: amp.AMP, value: str, count: int) -> defer.Deferred[dict[str, Any]]:
    """``WINDOW`` callback chains; each answer sends the next request."""
    done: defer.Deferred[dict[str, Any]] = defer.Deferred()
    state = {"sent": 0, "answered": 0}
    meter = Meter(count, proto.transport.pid)
    clock = time.perf_counter
    meter.start()
    start = clock()

    def send() -> None:
        state["sent"] += 1
        proto.callRemote(Echo, value=value).addCallbacks(
            answered, done.errback, callbackArgs=(clock(),)
        )

    def answered(_: object, sent_at: float) -> None:
        meter.latencies.append(clock() - sent_at)
        state["answered"] += 1
        if state["answered"] == count:
            done.callback(meter.figures(clock() - start))
        elif state["sent"] < count:
            send()

    for _ in range(min(WINDOW, count)):
        send()
    return done


def _from_threads(proto: amp.AMP, count: int) -> dict[str, Any]:
    """Blocking on the main thread's side: runs in a thread while the reactor runs."""

    def submit(value: str) -> Future[Any]:
        future: Future[Any] = Future()

        def send() -> None:
            proto.callRemote(Echo, value=value).addCallbacks(
                future.set_result, lambda failure: future.set_exception(failure.value)
            )

        reactor.callFromThread(send)
        return future

    return concurrent_rate(submit, lambda future: future.result(), SMALL, count, THREADS,
                           proto.transport.pid)


@defer.inlineCallbacks
def _steady(scenario: str, count: int) -> Generator[Any, Any, None]:
    proto = yield _connect()
    try:
        if scenario in ("seq", "big"):
            value = SMALL if scenario == "seq" else BIG
            answer = yield proto.callRemote(Echo, value=value)
            assert answer["value"] == value
            result = yield _sequential(proto, value, count)
        elif scenario in ("c64", "big64"):
            value = BIG if scenario == "big64" else SMALL
            yield _windowed(proto, value, min(WARMUP, count))
            result = yield _windowed(proto, value, count)
        else:
            from twisted.internet.threads import deferToThread

            result = yield deferToThread(_from_threads, proto, count)
        report(scenario, **result)
    finally:
        yield _close(proto)


@defer.inlineCallbacks
def _cold(count: int) -> Generator[Any, Any, None]:
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        proto = yield _connect()
        yield proto.callRemote(Echo, value=SMALL)
        samples.append(time.perf_counter() - start)
        yield _close(proto)
    report("cold", median_ms(samples), samples_ms=[round(s * 1000, 2) for s in samples])


@defer.inlineCallbacks
def _restart(count: int) -> Generator[Any, Any, None]:
    # No supervisor in plain Twisted: a program notices the loss and spawns again itself.
    samples = []
    proto = yield _connect()
    yield proto.callRemote(Echo, value=SMALL)
    for _ in range(count):
        start = time.perf_counter()
        os.kill(proto.transport.pid, signal.SIGKILL)
        yield proto.process.ended
        proto = yield _connect()
        yield proto.callRemote(Echo, value=SMALL)
        samples.append(time.perf_counter() - start)
    yield _close(proto)
    report("restart", median_ms(samples), samples_ms=[round(s * 1000, 2) for s in samples])


@defer.inlineCallbacks
def _rest() -> Generator[Any, Any, None]:
    threads_before, rss_before = thread_count(), rss_kib()
    proto = yield _connect()
    for _ in range(WARMUP):
        yield proto.callRemote(Echo, value=SMALL)
    yield _sleep(0.2)
    pid = proto.transport.pid
    report("rest", thread_count() - threads_before, parent_rss_delta_kib=rss_kib() - rss_before,
           child_rss_kib=rss_kib(pid), child_threads=thread_count(pid))
    yield _close(proto)


def _sleep(seconds: float) -> defer.Deferred[None]:
    from twisted.internet.task import deferLater

    return deferLater(reactor, seconds, lambda: None)


def main() -> None:
    scenario, count, _ = parse_args()
    if scenario == "cold":
        work = _cold(count)
    elif scenario == "restart":
        work = _restart(count)
    elif scenario == "rest":
        work = _rest()
    else:
        work = _steady(scenario, count)
    failures: list[Any] = []
    work.addErrback(failures.append)
    work.addBoth(lambda _: reactor.callLater(0.05, reactor.stop))
    reactor.run()
    if failures:
        failures[0].raiseException()


if __name__ == "__main__":
    threading.current_thread().name = "MainThread"
    main()
