"""The demo: `juicectl demo` runs as CI runs it (no terminal, no stdin) and tells the truth."""

from __future__ import annotations

import io
import re
import subprocess
import sys

import pytest

from juicectl._cli import _demo, _demo_pool
from tests.conftest import ROOT


def test_the_demo_runs_and_exits_0() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "juicectl", "demo"],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "Traceback" not in out + result.stderr
    # Each step of the story, in order.
    steps = [
        "mode          stopped -> starting      (GetProcess, child #1)",
        "prepare child #1: SetStore -> the store holds 0 documents",
        "mode         starting -> ready         (ChildProcessCreated, child #1)",
        "KILL    child #1",
        "killed by SIGKILL",
        "(restart, child #2)",
        "prepare child #2: SetStore -> the store holds",
        "40/40 documents",
        "stopped: clean",
        "summary",
        # Part 2: the pool.
        "juicectl demo, part 2: a ProcessPool of two indexer workers",
        "starting -> ready    (ready)",
        "KILL    demo-pool.w",
        "ready -> lost     (lost)",
        "40/40 documents",
        "stopped: demo-pool.w",
        "pool summary",
        "stop                clean, clean (in parallel)",
        "demo OK",
    ]
    position = 0
    for step in steps:
        found = out.find(step, position)
        assert found >= 0, f"{step!r} missing (or out of order) in:\n{out}"
        position = found
    assert re.search(r"retry   doc-\d+: child \d+ killed by SIGKILL", out)
    assert re.search(r"children +2 started, 1 automatic restart", out)
    assert re.search(r"requests +\d+ sent, \d+ answered, [1-9]\d* failed", out)
    assert re.search(r"time +\d+\.\d s", out)
    assert re.search(r"KILL    demo-pool\.w\d \(pid \d+\) with SIGKILL, the worker with the most "
                     r"requests on it$", out, re.MULTILINE)
    # How many requests were on it is told once, by the pool, when it has decided their fate:
    # a count taken before the signal could disagree (the pool may write more in between).
    assert re.search(r"lost    demo-pool\.w\d: child \d+ killed by SIGKILL, a signal juicectl did "
                     r"not send; \d+ requests were on it: \d+ sent again to another worker, "
                     r"[01] failed", out)
    assert re.search(r"documents indexed   40 by [23] worker processes", out)
    assert re.search(r"workers +2 started, 1 lost and restarted; 2 serving before the stop", out)
    # No terminal: the progress bar is printed as lines, not redrawn with carriage returns.
    assert "\r" not in out


def test_the_summary_comes_from_what_happened() -> None:
    stream = io.StringIO()
    assert _demo.run_demo(documents=6, stream=stream) == 0, stream.getvalue()
    out = stream.getvalue()
    part_1 = out.split("juicectl demo, part 2")[0]
    retried = int(re.search(r"failures retried +(\d+)", part_1).group(1))  # type: ignore[union-attr]
    assert retried == part_1.count("  retry   ")
    assert "documents indexed   6 of 6" in out


def test_the_pool_summary_comes_from_what_happened() -> None:
    stream = io.StringIO()
    assert _demo.run_demo(documents=6, stream=stream) == 0, stream.getvalue()
    part_2 = stream.getvalue().split("juicectl demo, part 2")[1]
    lost = re.search(r"(\d+) sent again to another worker, (\d+) failed", part_2)
    assert lost is not None
    # The demo sends again what failed at the kill, and says so once for each.
    assert part_2.count("  retry   ") == int(lost.group(2))
    indexed = re.search(r"documents indexed   6 by \d+ worker processes \((.*)\)", part_2)
    assert indexed is not None
    assert sum(int(n) for n in re.findall(r"pid \d+: (\d+)", indexed.group(1))) == 6


def test_a_pool_worker_never_killed_makes_the_demo_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_demo_pool, "_kill_busiest", lambda *args: None)
    stream = io.StringIO()
    assert _demo.run_demo(documents=4, stream=stream) == 1
    assert "demo FAILED: no pool worker was killed" in stream.getvalue()


def test_a_failed_check_makes_the_demo_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    # If the child is never killed, the demo does not pretend it was.
    monkeypatch.setattr(_demo, "_kill", lambda *args: None)
    stream = io.StringIO()
    assert _demo.run_demo(documents=4, stream=stream) == 1
    assert "demo FAILED: the child was never killed" in stream.getvalue()


def test_documents_are_the_same_every_run() -> None:
    assert _demo.make_documents(5) == _demo.make_documents(5)
    assert [name for name, _ in _demo.make_documents(12)][:2] == ["doc-01", "doc-02"]
