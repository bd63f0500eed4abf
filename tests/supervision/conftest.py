"""Fixtures and helpers for the supervision tests (real children, small timings).

Every bound is small so that each escalation step takes a fraction of a second; the tests
assert outcomes and orders, and check timings only with generous bounds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pykka
import pytest

from juicectl import ProcessController, RestartPolicy
from juicectl.messages import ModeChanged
from tests.conftest import ROOT

FAST: dict[str, Any] = {"startup_timeout": 10.0, "stop_timeout": 0.5, "kill_timeout": 0.5}
"""Stop steps of half a second; a generous startup bound (a loaded machine starts slowly)."""


def policy(mode: str = "permanent", **options: Any) -> RestartPolicy:
    """A restart policy without jitter, so that delays are exact."""
    options.setdefault("jitter", 0.0)
    return RestartPolicy(mode=mode, **options)  # type: ignore[arg-type]


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    """Poll ``predicate`` until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout}s: {what or predicate}")
        time.sleep(0.01)


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie, waiting for its reaper, is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


class Recorder(pykka.ThreadingActor):
    """A subscriber that appends every event, with the monotonic time it arrived, to a list."""

    use_daemon_thread = True

    def __init__(self, sink: list[tuple[float, object]], lock: threading.Lock) -> None:
        super().__init__()
        self._sink = sink
        self._lock = lock

    def on_receive(self, message: object) -> None:
        with self._lock:
            self._sink.append((time.monotonic(), message))


class Events:
    """A ``Recorder`` and what it recorded, read from the test's thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: list[tuple[float, object]] = []
        self.ref = Recorder.start(self._events, self._lock)

    def timed(self, kind: type | None = None) -> list[tuple[float, Any]]:
        """(arrival time, event) pairs, of one ``kind`` if given."""
        with self._lock:
            return [(t, e) for t, e in self._events if kind is None or isinstance(e, kind)]

    def of(self, kind: type) -> list[Any]:
        """The events of one kind, in order."""
        return [e for _, e in self.timed(kind)]

    def modes(self) -> list[tuple[str, str]]:
        """Every mode change as (old, new)."""
        return [(e.old, e.new) for e in self.of(ModeChanged)]

    def wait(self, kind: type, count: int = 1, timeout: float = 10.0) -> list[Any]:
        """Wait until ``count`` events of ``kind`` arrived; return them all."""
        wait_for(lambda: len(self.of(kind)) >= count, timeout, f"{count} x {kind.__name__}")
        return self.of(kind)


@pytest.fixture
def events() -> Events:
    """A subscriber recording events (stopped with every other actor after the test)."""
    return Events()


@pytest.fixture
def supervise() -> Iterator[Callable[..., ProcessController]]:
    """Start controllers with ``FAST`` bounds, in the repository's root, temporary policy
    unless told otherwise; every one is closed at teardown."""
    started: list[ProcessController] = []

    def make(argv: list[str], **options: Any) -> ProcessController:
        options = {**FAST, "cwd": str(ROOT), **options}
        options.setdefault("restart", policy("temporary"))
        controller = ProcessController.start(argv, **options)
        started.append(controller)
        return controller

    yield make
    for controller in started:
        controller.close(timeout=15)
