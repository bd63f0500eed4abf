"""The examples run as documented: ``python examples/<name>.py`` from the repository root."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from .conftest import ROOT


def run_example(name: str, *args: str) -> str:
    out = subprocess.run(
        [sys.executable, f"examples/{name}", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_echo_parent() -> None:
    stdout = run_example("echo_parent.py")
    assert "call: {'value': 'hello\\r\\nworld ✓'}" in stdout
    assert "declared error: ValueError on purpose" in stdout
    assert "stopped: StopResult(how='clean'" in stdout


def test_batch_parent_survives_a_crash_thanks_to_prepare() -> None:
    stdout = run_example("batch_parent.py")
    assert "crashed on purpose: UNHANDLED" in stdout
    before = re.search(r"^'worker': (.*)$", stdout, re.MULTILINE)
    after = re.search(r"still finds 'worker' in (\d+) files", stdout)
    assert before is not None and after is not None, stdout
    # The new child found the index the crashed one saved, in the store prepare gave it.
    assert int(after.group(1)) == len(before.group(1).split(", ")) > 0
    assert "stopped: clean" in stdout


@pytest.mark.parametrize("worker", ["echo_worker.py", "batch_worker.py"])
def test_a_worker_script_serves_until_end_of_input(worker: str) -> None:
    out = subprocess.run(
        [sys.executable, f"examples/{worker}"],
        cwd=ROOT,
        input=b"-Command: Negotiate\r\n-Ask: 1\r\nVersions: 1\r\n\r\n",
        capture_output=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == b"Version: 1\r\nConcurrency: 1\r\n-Answer: 1\r\n\r\n"
