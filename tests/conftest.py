"""Fixtures shared by the whole suite: every test ends with no actor running and no child left.

``pykka.ActorRegistry.stop_all()`` stops every actor a test started (a process actor that is
stopped takes its child through the stop escalation and reaps it), then any process still
parented by this test run is killed and reaped, and the test fails: a leaked child is a bug.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pykka
import pytest
import structlog

ROOT = Path(__file__).resolve().parent.parent


def child_pids(parent: int | None = None) -> set[int]:
    """The pids whose parent is ``parent`` (default: this process), read from /proc."""
    parent = os.getpid() if parent is None else parent
    pids: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 2 and int(fields[1]) == parent and fields[0] != "Z":
            pids.add(int(entry.name))
    return pids


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


@pytest.fixture(autouse=True)
def _no_leftovers(request: pytest.FixtureRequest) -> Iterator[None]:
    before = child_pids()
    yield
    pykka.ActorRegistry.stop_all(timeout=10)
    deadline = time.monotonic() + 3
    leaked = child_pids() - before
    while leaked and time.monotonic() < deadline:
        time.sleep(0.02)
        leaked = child_pids() - before
    for pid in leaked:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            os.waitpid(pid, 0)
    if leaked and not request.node.get_closest_marker("allow_leftover_children"):
        pytest.fail(f"the test left child processes running: {sorted(leaked)}")
