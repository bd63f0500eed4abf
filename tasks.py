#!/usr/bin/env python3
"""Project tasks that set up their own virtual environment.

    python3 tasks.py demo     run the demo (installs the package into .venv first)
    python3 tasks.py test     lint, type-check, build the docs strictly, run the test suite
    python3 tasks.py bench    run the benchmarks (on demand, never part of the tests)

Only the standard library is used here, so a fresh machine with Python 3.11+ needs nothing
else. The environment is rebuilt when ``pyproject.toml`` changes.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")


def _run(*argv: str | Path) -> int:
    print("+", " ".join(str(a) for a in argv), flush=True)
    return subprocess.call([str(a) for a in argv], cwd=ROOT)


def ensure_venv(extras: str) -> None:
    """Create ``.venv`` and install the package with ``extras``, once per pyproject version."""
    if sys.version_info < (3, 11):  # noqa: UP036 - this file runs before anything checks
        sys.exit(f"juicectl needs Python 3.11 or newer, this is {sys.version.split()[0]}")
    if not PYTHON.exists():
        print(f"creating {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()[:16]
    stamp = VENV / f".installed-{extras or 'base'}-{digest}"
    if stamp.exists():
        return
    spec = f".[{extras}]" if extras else "."
    quiet = ["-q"] if os.environ.get("CI") else []
    if _run(PYTHON, "-m", "pip", "install", *quiet, "--disable-pip-version-check",
            "-e", spec) != 0:
        sys.exit("installing the package into .venv failed")
    stamp.touch()


def demo(args: list[str]) -> int:
    ensure_venv("")
    return _run(PYTHON, "-m", "juicectl", "demo", *args)


def test(args: list[str]) -> int:
    ensure_venv("test,dev,docs")
    linted = [p for p in ("juicectl", "tests", "examples", "benchmarks", "scripts", "tasks.py")
              if (ROOT / p).exists()]
    # mkdocs 1.x prints a banner about its successor on every run: not news for a test run.
    os.environ.setdefault("NO_MKDOCS_2_WARNING", "1")
    for step in (
        [PYTHON, "-m", "ruff", "check", *linted],
        [PYTHON, "-m", "mypy"],
        [PYTHON, "-m", "mkdocs", "build", "--strict", "--quiet"],
    ):
        if _run(*step) != 0:
            return 1
    rc = _run(PYTHON, "-m", "pytest", *args)
    if rc == 5:
        print("pytest collected no tests: that is a failure", flush=True)
        return 1
    return rc


def bench(args: list[str]) -> int:
    ensure_venv("test,dev,bench")  # bench: the pools benchmarks/pools.py runs against
    return _run(PYTHON, "benchmarks/run.py", *args)


TASKS = {"demo": demo, "test": test, "bench": bench}


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in TASKS:
        print(__doc__)
        return 2
    return TASKS[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
