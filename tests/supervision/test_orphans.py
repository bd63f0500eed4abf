"""No orphans: the child never outlives the parent, whether the parent is SIGKILLed, ends
without ``close()``, or the thread that asked for the child goes away.

The parents here are separate Python processes (``children.parent_script``) so that the test
can kill them; each prints its child's pid on stdout.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from juicectl import ProcessController
from tests.conftest import ROOT
from tests.supervision import children
from tests.supervision.conftest import alive, wait_for
from tests.workers.commands import Echo
from tests.workers.scripts import worker

Supervise = Callable[..., ProcessController]

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the parent-death signal is Linux only"
)


@pytest.fixture
def spawn_parent() -> Iterator[Callable[[list[str]], tuple[subprocess.Popen[str], int]]]:
    """Run a parent script; return it and its child's pid. Every parent is reaped after the
    test, and any child still alive is killed (and the test fails on it)."""
    parents: list[subprocess.Popen[str]] = []
    grandchildren: list[int] = []

    def spawn(argv: list[str]) -> tuple[subprocess.Popen[str], int]:
        parent = subprocess.Popen(
            argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        parents.append(parent)
        assert parent.stdout is not None
        line = parent.stdout.readline()
        assert line.startswith("PID "), f"the parent script printed {line!r}"
        pid = int(line.split()[1])
        grandchildren.append(pid)
        return parent, pid

    yield spawn
    for parent in parents:
        if parent.poll() is None:
            parent.kill()
        parent.wait(10)
        if parent.stdout is not None:
            parent.stdout.close()
    leftovers = [pid for pid in grandchildren if alive(pid)]
    for pid in leftovers:
        os.kill(pid, signal.SIGKILL)
    assert leftovers == [], f"children outlived their parent: {leftovers}"


@linux_only
def test_child_ignoring_eof_and_sigterm_dies_with_a_sigkilled_parent(
    spawn_parent: Callable[[list[str]], tuple[subprocess.Popen[str], int]],
) -> None:
    parent, child = spawn_parent(children.parent_script(children.IGNORES_SIGTERM, then="sleep"))
    assert alive(child)
    parent.kill()  # SIGKILL: no atexit, no close(), no escalation; only the kernel can help
    parent.wait(10)
    wait_for(lambda: not alive(child), timeout=5, what="the orphan gone")


@pytest.fixture
def reap_later() -> Iterator[Callable[[int], None]]:
    """Note pids that must be gone by the end of the test; any still alive is killed, and the
    test fails on it."""
    pids: list[int] = []
    yield pids.append
    leftovers = [pid for pid in pids if alive(pid)]
    for pid in leftovers:
        os.kill(pid, signal.SIGKILL)
    assert leftovers == [], f"processes outlived their parent: {leftovers}"


def test_a_busy_child_and_its_grandchild_die_with_a_sigkilled_parent(
    spawn_parent: Callable[[list[str]], tuple[subprocess.Popen[str], int]],
    reap_later: Callable[[int], None],
    tmp_path: Path,
) -> None:
    # Neither reads its stdin once the parent is gone, nor minds SIGTERM: only the parent-
    # death guard, which kills the child's whole process group, can end them.
    pid_file = tmp_path / "grandchild.pid"
    stubborn_with_grandchild = children.juice_child(
        eof="ignore", sigterm="ignore", grandchild_pid_file=str(pid_file)
    )
    parent, child = spawn_parent(children.parent_script(stubborn_with_grandchild, then="sleep"))
    wait_for(pid_file.exists, what="the grandchild's pid file")
    grandchild = int(pid_file.read_text())
    reap_later(grandchild)
    assert alive(child) and alive(grandchild)
    parent.kill()
    parent.wait(10)
    wait_for(lambda: not alive(child), timeout=5, what="the child gone")
    wait_for(lambda: not alive(grandchild), timeout=5, what="the grandchild gone")


@pytest.mark.parametrize(
    ("after_spawns", "what"),
    [(1, "the guard, before the child exists"), (2, "the guard and the child")],
    ids=["after-the-guard", "after-the-child"],
)
def test_a_parent_killed_in_the_middle_of_a_launch_leaves_nothing_running(
    reap_later: Callable[[int], None], after_spawns: int, what: str
) -> None:
    parent = subprocess.Popen(
        children.dying_parent_script(children.IGNORES_SIGTERM, after_spawns=after_spawns),
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        assert parent.stdout is not None
        lines = parent.stdout.read().splitlines()  # until the parent is dead
        assert parent.wait(10) == -signal.SIGKILL
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(10)
        if parent.stdout is not None:
            parent.stdout.close()
    spawned = [int(line.split()[1]) for line in lines if line.startswith("SPAWNED ")]
    assert len(spawned) == after_spawns, f"{what}: {lines}"
    for pid in spawned:
        reap_later(pid)
    for pid in spawned:
        wait_for(lambda pid=pid: not alive(pid), timeout=5, what=f"pid {pid} gone ({what})")  # type: ignore[misc]


@pytest.mark.parametrize("hook", [False, True], ids=["plain", "with-a-hook-actor"])
def test_interpreter_exit_without_close_stops_the_child(
    spawn_parent: Callable[[list[str]], tuple[subprocess.Popen[str], int]], hook: bool
) -> None:
    parent, child = spawn_parent(children.parent_script(worker(), then="exit", hook=hook))
    # The exit-time close() stops the child the usual way: the parent exits on its own.
    assert parent.wait(20) == 0
    wait_for(lambda: not alive(child), timeout=5, what="the child gone")


def test_interpreter_exit_escalates_for_a_stubborn_child(
    spawn_parent: Callable[[list[str]], tuple[subprocess.Popen[str], int]],
) -> None:
    parent, child = spawn_parent(children.parent_script(children.IGNORES_SIGTERM, then="exit"))
    began = time.monotonic()
    assert parent.wait(20) == 0
    assert time.monotonic() - began >= 0.5  # the full escalation ran (0.2 s x 3)
    assert not alive(child)


@linux_only
def test_the_child_outlives_the_thread_that_asked_for_it(supervise: Supervise) -> None:
    # The parent-death signal follows the thread that forked the child: that is the process
    # actor's own thread (alive until the child is reaped), never the caller's.
    ctl = supervise(worker())
    got: list[object] = []
    caller = threading.Thread(target=lambda: got.append(ctl.get_process().get(timeout=10)))
    caller.start()
    caller.join(10)
    [conn] = got
    time.sleep(0.2)
    assert conn.call(Echo, value="still here").get(timeout=5) == {"value": "still here"}  # type: ignore[attr-defined]
