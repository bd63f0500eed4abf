"""Running one hostile child under a real controller, and measuring what it costs the parent.

``hostile(name, tmp_path)`` starts a controller for ``tests/hostile/children/NAME.py`` and
yields a ``Hostile``; on the way out it closes the controller and checks that nothing is
left over (no child, thread or file descriptor, compared with before). The child writes its
pid to a marker file the first time; launched again by the same controller, it finds the
marker and behaves, which shows the controller is usable again.

``MemoryMeter`` measures the parent during the hostile part: the peak of Python allocations
(tracemalloc, every thread) and the growth of the resident set (VmHWM, the kernel's peak,
reset at the start through ``/proc/self/clear_refs``).
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import time
import tracemalloc
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import structlog
from structlog.testing import capture_logs

from juicectl import ProcessController, RestartPolicy
from tests.chaos.engine import Snapshot, leaks_after
from tests.workers.commands import Echo

ROOT = Path(__file__).resolve().parent.parent.parent
CHILDREN = Path(__file__).resolve().parent / "children"
MiB = 1 << 20

# Bounds that keep the escalations short; what is tested is that each step happens.
BOUNDS = {"startup_timeout": 10.0, "stop_timeout": 1.0, "kill_timeout": 0.5}


def argv(name: str) -> list[str]:
    """The command line of hostile child ``name``."""
    return [sys.executable, str(CHILDREN / f"{name}.py")]


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def wait_for(predicate: Any, timeout: float = 20.0, what: str = "condition") -> None:
    """Poll ``predicate()`` until true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached within {timeout}s")
        time.sleep(0.02)


class Captured:
    """Log entries captured with ``structlog.testing.capture_logs``, ``child_stderr`` lines
    bounded: only the first ``keep`` are kept (all are counted), so a child's stderr flood
    does not fill the test's own memory."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.stderr_lines = 0
        self.entries: list[MutableMapping[str, Any]] = []

    def __call__(self, logger: Any, method_name: str, event_dict: Any) -> Any:
        if event_dict.get("event") == "child_stderr":
            self.stderr_lines += 1
            if self.stderr_lines > self.keep:
                raise structlog.DropEvent
        return event_dict

    def events(self, name: str) -> list[MutableMapping[str, Any]]:
        """The captured entries of event ``name``."""
        return [entry for entry in self.entries if entry.get("event") == name]


@contextlib.contextmanager
def capture_logs_bounded(keep: int = 50) -> Iterator[Captured]:
    """``structlog.testing.capture_logs`` with the child's stderr lines bounded."""
    captured = Captured(keep)
    with capture_logs(processors=[captured]) as entries:
        captured.entries = entries
        yield captured


def _kib(field: str) -> int:
    match = re.search(rf"{field}:\s+(\d+) kB", Path("/proc/self/status").read_text())
    return int(match.group(1)) * 1024 if match else 0


class MemoryMeter:
    """Peak extra memory of this process while the block runs (see the module docs)."""

    def __init__(self) -> None:
        self.traced_peak = 0
        self.rss_growth = 0
        self._started_tracing = False

    def __enter__(self) -> MemoryMeter:
        if not tracemalloc.is_tracing():
            tracemalloc.start()
            self._started_tracing = True
        self._traced_base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        with contextlib.suppress(OSError):
            Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        self._rss_base = _kib("VmRSS")
        return self

    def __exit__(self, *exc: object) -> None:
        self.traced_peak = tracemalloc.get_traced_memory()[1] - self._traced_base
        self.rss_growth = max(0, _kib("VmHWM") - self._rss_base)
        if self._started_tracing:
            tracemalloc.stop()

    def __str__(self) -> str:
        return (
            f"peak traced +{self.traced_peak / MiB:.1f} MiB, "
            f"peak RSS +{self.rss_growth / MiB:.1f} MiB"
        )


class Hostile:
    """A controller running a hostile child, and what the test needs around it."""

    def __init__(self, name: str, ctl: ProcessController, marker: Path) -> None:
        self.name = name
        self.ctl = ctl
        self.marker = marker

    @property
    def pid(self) -> int:
        """The pid of the first (hostile) launch, from the marker it wrote."""
        wait_for(
            lambda: self.marker.exists() and self.marker.read_text().strip(),
            what=f"{self.name} writes its pid",
        )
        return int(self.marker.read_text())

    def wait_stopped(self, timeout: float = 20.0) -> dict[str, Any]:
        """Wait for the controller's mode to be back to ``stopped``; return its stats."""
        wait_for(lambda: self.ctl.mode == "stopped", timeout, f"{self.name}: mode stopped")
        return self.ctl.stats()

    def assert_gone(self, pid: int, timeout: float = 20.0) -> None:
        """The hostile child has exited (and been reaped)."""
        wait_for(lambda: not pid_alive(pid), timeout, f"{self.name}: pid {pid} gone")

    def assert_usable_again(self) -> None:
        """The same controller launches its command again and that child answers."""
        hostile_pid = self.pid
        connection = self.ctl.get_process().get(timeout=15)
        assert connection.pid != hostile_pid
        value = f"{self.name} relaunched\r\nand answering"
        assert connection.call(Echo, value=value).get(timeout=10) == {"value": value}
        result = self.ctl.stop_process().get(timeout=15)
        assert result.how == "clean", result
        assert not pid_alive(connection.pid)


@contextlib.contextmanager
def hostile(
    name: str, tmp_path: Path, env: dict[str, str] | None = None, **options: Any
) -> Iterator[Hostile]:
    """Run hostile child ``name`` under a fresh controller; close it and check for leaks."""
    before = Snapshot.take()
    marker = tmp_path / f"{name}.pid"
    options = {**BOUNDS, **options}
    options.setdefault("restart", RestartPolicy(mode="temporary"))
    ctl = ProcessController.start(
        argv(name),
        name=f"hostile-{name}",
        cwd=str(ROOT),
        env={**os.environ, **(env or {}), "HOSTILE_MARKER": str(marker)},
        **options,
    )
    try:
        yield Hostile(name, ctl, marker)
    except BaseException:
        ctl.close(timeout=30)
        raise
    ctl.close(timeout=30)
    leaks = leaks_after(before)
    assert not leaks, f"{name}: left over after close(): {leaks}"
