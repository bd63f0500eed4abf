"""The pool example runs as documented: ``python examples/pool_indexer.py``."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from ..conftest import ROOT

pytestmark = pytest.mark.timeout(120)


def test_pool_indexer_survives_a_killed_worker() -> None:
    out = subprocess.run(
        [sys.executable, "examples/pool_indexer.py"],
        cwd=ROOT, capture_output=True, text=True, timeout=100,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    # The kill is the example's story, told on stdout: no warning about it on stderr.
    assert out.stderr == ""
    files = len(list(ROOT.glob("juicectl/**/*.py")))
    ours = ("killed worker ", "indexed ", "after retrying the failed: ", "'pool': ", "'worker': ",
            "'future': ")
    strangers = [line for line in out.stdout.splitlines() if not line.startswith(ours)]
    assert strangers == [], out.stdout
    # Every run shows what the docstring promises: the kill finds the worker counting a file,
    # which fails, and files queued behind it, which the pool sends to the other worker.
    assert re.search(r"^killed worker \d+ mid-batch, with requests outstanding$", out.stdout,
                     re.MULTILINE), out.stdout
    outcome = re.search(r"^indexed (\d+) of (\d+) files .* re-sent (\d+), failed (\d+)$",
                        out.stdout, re.MULTILINE)
    assert outcome is not None, out.stdout
    indexed, total, resent, failed = map(int, outcome.groups())
    assert (total, failed, indexed) == (files, 1, files - 1)
    assert resent >= 1
    assert f"after retrying the failed: {files} files" in out.stdout
    assert "'pool': " in out.stdout
