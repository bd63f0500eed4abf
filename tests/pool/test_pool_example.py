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
    files = len(list(ROOT.glob("juicectl/**/*.py")))
    # stdout carries the example's own lines only: its log goes to stderr, so a warning logged
    # by another thread never lands inside a result line.
    ours = ("killed worker ", "indexed ", "after retrying the failed: ", "'pool': ", "'worker': ",
            "'future': ")
    strangers = [line for line in out.stdout.splitlines() if not line.startswith(ours)]
    assert strangers == [], out.stdout
    outcome = re.search(r"^indexed (\d+) of (\d+) files .* re-sent (\d+), failed (\d+)$",
                        out.stdout, re.MULTILINE)
    assert outcome is not None, out.stdout
    indexed, total, _resent, failed = map(int, outcome.groups())
    assert total == files and failed <= 1 and indexed + failed == total
    assert f"after retrying the failed: {files} files" in out.stdout
    assert "'pool': " in out.stdout
