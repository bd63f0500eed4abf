#!/usr/bin/env python3
"""What a worker's start costs: a fresh ``python -m juicectl.child`` that serves nothing.

    .venv/bin/python benchmarks/worker_start.py [--runs N] [CHECKOUT ...]

Each run starts ``python -m juicectl.child benchmarks.workload:EchoWorker`` with its stdin on
``/dev/null``, so it starts, finds the end of its input and exits 0: the whole of it is the
interpreter, the imports and the runtime's set-up, which every cold start, restart,
replacement and recycle pays before its first answer. Prints the median CPU time (user +
system, from ``getrusage``) and wall time of ``--runs`` runs, and the standard-library
modules of the start that ``docs/performance.md`` ("The worker's start") keeps out of it.

With CHECKOUT paths (other checkouts of this project, a ``git worktree`` of an older commit),
each is measured with ``PYTHONPATH`` at it, round after round in turn, for a before and after
on the same minutes of the machine. Without, this checkout.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORKER = "benchmarks.workload:EchoWorker"
#: What a start used to import without needing it.
HEAVY = ("dataclasses", "inspect", "logging", "concurrent.futures", "argparse", "shutil")


def one_start(checkout: Path) -> tuple[float, float]:
    """CPU seconds and wall seconds of one worker's start, with ``checkout`` first on the
    path."""
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "juicectl.child", WORKER], cwd=checkout,
                          env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"the worker in {checkout} exited {done.returncode}: {done.stderr.decode()}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, wall


def heavy_imports(checkout: Path) -> list[str]:
    """Which of ``HEAVY`` a start in ``checkout`` imports (``-X importtime`` on stderr)."""
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "juicectl.child", WORKER],
                          cwd=checkout, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=60)
    names = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()}
    return [name for name in HEAVY if name in names]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("checkouts", nargs="*", type=Path)
    options = parser.parse_args(argv)
    checkouts = [path.resolve() for path in options.checkouts] or [ROOT]
    figures: dict[Path, list[tuple[float, float]]] = {path: [] for path in checkouts}
    for _ in range(options.runs):
        for path in checkouts:
            figures[path].append(one_start(path))
    print(f"python {sys.version.split()[0]}, {options.runs} runs each, in turn")
    print("| checkout | CPU ms (median) | wall ms (median) | of these, imported |")
    print("|---|---:|---:|---|")
    for path, runs in figures.items():
        cpu = statistics.median(c for c, _ in runs) * 1000
        wall = statistics.median(w for _, w in runs) * 1000
        heavy = ", ".join(heavy_imports(path)) or "none"
        print(f"| {path} | {cpu:.1f} | {wall:.1f} | {heavy} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
