"""Spawning under a parent-death guard: the child is in the guard's process group, the group
dies when the guard's pipe closes (as it does when the parent dies), and the stop
escalation's SIGTERM leaves the guard in place."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import structlog

from juicectl import ProcessLaunchError
from juicectl.launch import GUARD_SHELL, Invocation, ParentDeathGuard, spawn
from tests.conftest import ROOT
from tests.supervision.conftest import alive, wait_for

SLEEPER = (sys.executable, "-c", "import time; time.sleep(60)")


def invocation(argv: tuple[str, ...] = SLEEPER, cwd: str | None = None) -> Invocation:
    return Invocation(argv=argv, env=None, cwd=cwd, command=argv)


def pgid_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[2])


def close_pipes(child: object) -> None:
    popen = child.popen  # type: ignore[attr-defined]
    for stream in (popen.stdin, popen.stdout, popen.stderr):
        stream.close()


def test_the_child_joins_the_process_group_its_guard_leads() -> None:
    child = spawn(invocation())
    try:
        assert child.guard is not None
        assert child.pgid == child.guard.pid != child.pid
        assert pgid_of(child.pid) == pgid_of(child.guard.pid) == child.pgid
    finally:
        child.release()
        child.popen.wait(10)
        close_pipes(child)


def test_closing_the_guards_pipe_kills_the_whole_group() -> None:
    # What the kernel does to the pipe when the parent dies, release() does by hand.
    child = spawn(invocation((sys.executable, "-c",
                              "import subprocess, sys, time\n"
                              "g = subprocess.Popen([sys.executable, '-c', "
                              "'import time; time.sleep(60)'])\n"
                              "print(g.pid, flush=True)\n"
                              "time.sleep(60)\n")))
    assert child.guard is not None
    assert child.popen.stdout is not None
    grandchild = int(child.popen.stdout.readline())
    child.guard.release()
    assert child.popen.wait(10) == -signal.SIGKILL
    wait_for(lambda: not alive(grandchild), timeout=10, what="the grandchild gone")
    child.release()
    close_pipes(child)


def test_the_guard_outlives_sigterm_to_the_group() -> None:
    child = spawn(invocation())
    try:
        assert child.guard is not None
        child.signal_group(signal.SIGTERM)
        assert child.popen.wait(10) == -signal.SIGTERM
        assert child.guard.alive()
    finally:
        child.release()
        close_pipes(child)
    assert child.guard is not None and not child.guard.alive()


# Python 3.12+ warns that fork() in a process with threads may deadlock the copy; this one
# only sleeps and leaves with os._exit().
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_copy_of_the_parent_does_not_keep_the_guard_from_firing() -> None:
    child = spawn(invocation())
    assert child.guard is not None
    forked = os.fork()
    if forked == 0:  # pragma: no cover - the forked copy only waits, then leaves
        time.sleep(30)
        os._exit(0)
    try:
        child.guard.release()  # this process's write end closed; the fork's must be too
        assert child.popen.wait(10) == -signal.SIGKILL
    finally:
        os.kill(forked, signal.SIGKILL)
        os.waitpid(forked, 0)
        child.release()
        close_pipes(child)


def test_without_a_shell_the_child_runs_unguarded_in_its_own_group() -> None:
    with structlog.testing.capture_logs() as logs:
        child = spawn(invocation(), guard_shell="/no/such/shell")
        try:
            assert child.guard is None
            assert child.pgid == child.pid == pgid_of(child.pid)
        finally:
            child.release()
            child.popen.wait(10)
            close_pipes(child)
    [warning] = [e for e in logs if e["event"] == "parent_death_guard_unavailable"]
    assert warning["shell"] == "/no/such/shell"


def test_a_failed_spawn_leaves_no_guard_behind(tmp_path: Path) -> None:
    gone = str(tmp_path / "gone")
    with pytest.raises(ProcessLaunchError) as info:
        spawn(invocation(cwd=gone))
    assert f"the working directory (cwd) {gone!r} does not exist" in str(info.value)
    # The autouse fixture fails the test if the guard is left running or unreaped.


def test_a_guard_whose_parent_dies_before_it_is_armed_still_ends_the_group(tmp_path: Path) -> None:
    # The parent dies the moment the child is spawned, before its guard (a shell slowed down
    # here, as a loaded machine slows it) says "armed" on a pipe nobody reads any more.
    slow_shell = tmp_path / "slow-sh"
    slow_shell.write_text(f'#!/bin/sh\nsleep 0.3\nexec {GUARD_SHELL} "$@"\n')
    slow_shell.chmod(0o755)
    parent = textwrap.dedent(f"""
        import os, signal
        from juicectl.launch import Invocation, spawn
        argv = {SLEEPER!r}
        child = spawn(Invocation(argv=argv, env=None, cwd=None, command=argv),
                      guard_shell={str(slow_shell)!r})
        print(child.guard.pid, child.pid, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    out = subprocess.run([sys.executable, "-c", parent], cwd=ROOT, capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == -signal.SIGKILL, out.stderr
    guard, child = map(int, out.stdout.split())
    try:
        wait_for(lambda: not alive(child), timeout=10, what="the child gone")
        wait_for(lambda: not alive(guard), timeout=10, what="the guard gone")
    finally:
        for pid in (child, guard):
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


GUARDED_PARENT = """
import sys, time
sys.path.insert(0, {root!r})
from juicectl.launch import ParentDeathGuard
guard = ParentDeathGuard.start(remove_on_death=sys.argv[1])
assert guard.wait_armed(5)
print("armed", flush=True)
time.sleep(60)
"""


def test_a_removing_guard_removes_its_directory_when_the_parent_dies(tmp_path: Path) -> None:
    directory = tmp_path / "it's $here"  # quoted for the shell
    (directory / "inner").mkdir(parents=True)
    (directory / "inner" / "socket").write_text("x")
    parent = subprocess.Popen(
        [sys.executable, "-c", GUARDED_PARENT.format(root=str(ROOT)), str(directory)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert parent.stdout is not None and parent.stdout.readline() == "armed\n"
        parent.kill()  # no close, no atexit: only the guard can clean up
        parent.wait(timeout=10)
        wait_for(lambda: not directory.exists(), 10, "the directory removed")
        assert tmp_path.exists()
    finally:
        parent.kill()
        parent.wait(timeout=10)
        if parent.stdout is not None:
            parent.stdout.close()


def test_a_released_removing_guard_leaves_its_directory(tmp_path: Path) -> None:
    # A released master's directory may hold the next master: only the parent's death
    # removes it.
    directory = tmp_path / "session"
    directory.mkdir()
    guard = ParentDeathGuard.start(remove_on_death=str(directory))
    assert guard.wait_armed(5)
    assert guard.release() == -signal.SIGKILL
    assert directory.exists()
