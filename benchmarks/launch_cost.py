#!/usr/bin/env python3
"""What it costs the parent to launch one child, by way of tying it to the parent's life.

    .venv/bin/python benchmarks/launch_cost.py [--count N] [--ballast-mib M]

Each line launches ``/bin/true`` with three pipes, as the process actor does, ``N`` times
(default 200), and prints the median and the 10th percentile of the time the launching
thread spends (from the first ``Popen`` call until the last returns; the child's run and
reaping are not counted):

* ``plain``: ``start_new_session=True``, nothing else (no parent-death tie at all);
* ``preexec_fn prctl``: what juicectl did before: ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` in a
  ``preexec_fn`` (Python code between fork and exec, which also forces ``fork()``);
* ``setpriv prefix``: util-linux ``setpriv --pdeathsig KILL --`` in front of the command
  (Linux only; skipped when ``setpriv`` is missing);
* ``guard`` (juicectl's choice): ``juicectl.launch.spawn``, a ``/bin/sh`` guard leading the
  child's process group, then the child joining it.

``--ballast-mib`` first fills that much memory in the parent: ``fork()`` copies the page
tables of the whole parent, ``vfork()`` (what ``subprocess`` uses when no ``preexec_fn`` is
given) does not.
"""

from __future__ import annotations

import argparse
import ctypes
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from juicectl.launch import Invocation, spawn

PROGRAM = ["/bin/true"]
PIPES = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE}


def _close(popen: subprocess.Popen[bytes]) -> None:
    for stream in (popen.stdin, popen.stdout, popen.stderr):
        if stream is not None:
            stream.close()


def plain() -> Callable[[], None]:
    popen = subprocess.Popen(PROGRAM, start_new_session=True, bufsize=0, **PIPES)  # type: ignore[call-overload]

    def reap() -> None:
        popen.wait()
        _close(popen)

    return reap


def _prctl() -> Callable[[], None]:
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def set_parent_death_signal() -> None:
        prctl(1, 9, 0, 0, 0)  # PR_SET_PDEATHSIG, SIGKILL

    return set_parent_death_signal


_PREEXEC = _prctl() if sys.platform.startswith("linux") else None


def preexec() -> Callable[[], None]:
    popen = subprocess.Popen(  # type: ignore[call-overload]
        PROGRAM, start_new_session=True, bufsize=0, preexec_fn=_PREEXEC, **PIPES
    )

    def reap() -> None:
        popen.wait()
        _close(popen)

    return reap


def setpriv() -> Callable[[], None]:
    popen = subprocess.Popen(  # type: ignore[call-overload]
        ["setpriv", "--pdeathsig", "KILL", "--", *PROGRAM],
        start_new_session=True,
        bufsize=0,
        **PIPES,
    )

    def reap() -> None:
        popen.wait()
        _close(popen)

    return reap


_INVOCATION = Invocation(argv=tuple(PROGRAM), env=None, cwd=None, command=tuple(PROGRAM))


def guard() -> Callable[[], None]:
    child = spawn(_INVOCATION)

    def reap() -> None:
        child.popen.wait()
        child.release()
        _close(child.popen)

    return reap


def measure(launch: Callable[[], Callable[[], None]], count: int) -> list[float]:
    """Seconds the launching thread spends, per launch."""
    times = []
    for _ in range(count):
        began = time.perf_counter()
        reap = launch()
        times.append(time.perf_counter() - began)
        reap()
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=200, help="launches per line")
    parser.add_argument("--ballast-mib", type=int, default=0,
                        help="memory to fill in the parent first (MiB)")
    args = parser.parse_args()
    ballast = bytearray(args.ballast_mib * 1024 * 1024)
    for offset in range(0, len(ballast), 4096):  # touch every page: resident, as in use
        ballast[offset] = 1
    lines: list[tuple[str, Callable[[], Callable[[], None]]]] = [("plain", plain)]
    if _PREEXEC is not None:
        lines.append(("preexec_fn prctl", preexec))
    if shutil.which("setpriv"):
        lines.append(("setpriv prefix", setpriv))
    lines.append(("guard", guard))
    print(f"launching {PROGRAM[0]} {args.count} times per line, parent ballast "
          f"{args.ballast_mib} MiB")
    print(f"{'':<18} {'median':>10} {'p10':>10}")
    for name, launch in lines:
        measure(launch, 10)  # warm up
        times = sorted(measure(launch, args.count))
        p10 = times[len(times) // 10]
        print(f"{name:<18} {statistics.median(times) * 1e3:>7.3f} ms {p10 * 1e3:>7.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
