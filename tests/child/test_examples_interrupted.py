"""Ctrl-C on the examples: a quiet exit with status 130, and no child left behind.

Each example runs under a small driver that holds it at a known point until the SIGINT comes:
while an import runs (an import it does early, ``structlog``), or in one of its own ``print()``
calls once its children run. So the press lands where the test says, not where a timer guesses.
The worker scripts are pressed while they serve a request. Every press waits until the process
sleeps there (``tests/presses.py``: a press just before a sleep starts is not seen until it ends).
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.presses import IN_SLEEP, wait_until_blocked_in
from tests.supervision.conftest import alive

from .conftest import ROOT

WAIT = 60.0
"""Seconds anything may take (a bound, never a speed test)."""

DRIVER = '''
import builtins, runpy, sys, time

where, script, *args = sys.argv[1:]

def stall():
    print("stalled", file=sys.__stderr__, flush=True)
    time.sleep(600)

class StallImport:
    def find_spec(self, name, path=None, target=None):
        if where == "import" and name == "structlog":
            stall()
        return None

sys.meta_path.insert(0, StallImport())
real_print, prints = builtins.print, []

def print_then_stall(*values, **options):
    real_print(*values, **options)
    if where.isdigit() and sys._getframe(1).f_code.co_filename.endswith(script):
        prints.append(values)  # the example's own, not its log's
        if len(prints) == int(where):
            sys.stdout.flush()
            stall()

builtins.print = print_then_stall
sys.argv = [script, *args]
runpy.run_path(script, run_name="__main__")
'''

EXAMPLES = {
    # example and its arguments: (its print() by which its children run, how it says they
    # stopped, if it does)
    "lifecycle.py": (2, "how=clean"),
    "echo_parent.py": (1, "stopped: StopResult(how='clean'"),
    "batch_parent.py": (1, "stopped: clean"),
    "pool_indexer.py": (1, None),
    "remote_echo.py --here": (1, None),
}


def children(pid: int) -> set[int]:
    """The processes whose parent is ``pid`` (Linux: from /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.add(int(entry.name))
    return found


def press_at(where: str, example: str) -> tuple[subprocess.CompletedProcess[str], set[int]]:
    """Run ``example`` held at ``where``, press Ctrl-C there; its result and its children."""
    script, *args = example.split()
    process = subprocess.Popen(
        [sys.executable, "-c", DRIVER, where, f"examples/{script}", *args], cwd=ROOT,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert process.stderr is not None
        assert process.stderr.readline() == "stalled\n"
        seen = children(process.pid)
        wait_until_blocked_in(process.pid, IN_SLEEP)  # in stall()'s sleep, not on its way
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=WAIT)
    finally:
        process.kill()
        process.wait(timeout=WAIT)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err), seen


@pytest.mark.parametrize("example", EXAMPLES)
def test_ctrl_c_while_an_example_imports_is_quiet(example: str) -> None:
    result, _ = press_at("import", example)
    assert (result.returncode, result.stderr) == (130, "")


@pytest.mark.parametrize("example", EXAMPLES)
def test_ctrl_c_while_an_example_runs_stops_its_children_quietly(example: str) -> None:
    held_at, stopped = EXAMPLES[example]
    result, seen = press_at(str(held_at), example)
    assert (result.returncode, result.stderr) == (130, ""), result.stdout
    assert seen, "the example had no child running when it was pressed"
    if stopped is not None:
        assert stopped in result.stdout
    deadline = time.monotonic() + WAIT
    while any(alive(pid) for pid in seen) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not any(alive(pid) for pid in seen)


NEGOTIATE = b"-Command: Negotiate\r\n-Ask: 1\r\nVersions: 1\r\n\r\n"
SLEEP = b"-Command: Sleep\r\n-Ask: 2\r\nSeconds: 600\r\n\r\n"


@pytest.mark.parametrize(
    "worker",
    [["examples/echo_worker.py"], ["-m", "juicectl.child", "juicectl.examples.echo:EchoWorker"]],
    ids=["script", "child-runtime"],
)
def test_ctrl_c_on_a_worker_run_by_hand_is_quiet(worker: list[str]) -> None:
    process = subprocess.Popen(
        [sys.executable, *worker], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(NEGOTIATE)
        process.stdin.flush()
        assert process.stdout.readline() == b"Version: 1\r\n"   # it serves: the import is done
        process.stdin.write(SLEEP)                               # and now it sleeps in a handler
        process.stdin.flush()
        wait_until_blocked_in(process.pid, IN_SLEEP)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=WAIT)
    finally:
        process.kill()
        process.wait(timeout=WAIT)
    assert (process.returncode, err) == (130, b"")
