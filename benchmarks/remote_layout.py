#!/usr/bin/env python3
"""64 in flight over ssh on one machine: the rate, and what each process of the link pays.

    .venv/bin/python benchmarks/remote_layout.py [--layout free|alone|hosts|apart] [--runs N]

One juicectl controller over ssh to the test harness's sshd on loopback (as
``benchmarks/remote.py``), measured ``--runs`` times in a row: requests a second, and per
request the CPU (``/proc/PID/stat``) and the sleeps (voluntary context switches) of this
process, the ssh client, sshd and the worker. ``--layout`` pins the processes to the two CPUs
(``os.sched_setaffinity``), to show that the rate follows their placement:

* ``free``: no pinning (the scheduler places them);
* ``alone``: this process alone on CPU 0, the ssh client, sshd and the worker on CPU 1;
* ``hosts``: this process and the ssh client on CPU 0, sshd and the worker on CPU 1 (as two
  machines would place them);
* ``apart``: this process and sshd on CPU 0, the ssh client and the worker on CPU 1.

Needs ``sshd`` and root, as ``benchmarks/remote.py`` does, and two CPUs or more.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import structlog

from benchmarks._common import SMALL, WINDOW, rate, windowed
from benchmarks.remote import BOUND, Bench
from tests.remote.harness import harness_running
from tests.remote.worker import Echo

_TICKS = os.sysconf("SC_CLK_TCK")


def _usage(pid: int) -> tuple[float, int] | None:
    """CPU seconds and voluntary context switches of ``pid`` so far."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        with open(f"/proc/{pid}/status") as status:
            sleeps = next(int(line.split()[1]) for line in status
                          if line.startswith("voluntary_ctxt_switches"))
    except (OSError, StopIteration):
        return None
    return (int(fields[11]) + int(fields[12])) / _TICKS, sleeps


def _link() -> dict[str, list[int]]:
    """The link's processes on this machine: the ssh clients, sshd's, the remote worker."""
    found: dict[str, list[int]] = {"ssh client": [], "sshd": [], "worker": []}
    listing = subprocess.run(["ps", "-eo", "pid=,comm=,args="], capture_output=True,
                             text=True, check=True).stdout
    for line in listing.splitlines():
        pid, comm, args = line.split(None, 2)
        if "remote_worker" in args and comm.startswith("python"):
            found["worker"].append(int(pid))
        elif comm == "ssh":
            found["ssh client"].append(int(pid))
        elif comm == "sshd":
            found["sshd"].append(int(pid))
    return found


def _pin(layout: str, link: dict[str, list[int]]) -> None:
    if layout == "free":
        return
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("--layout needs two CPUs")
    cpu_of = {
        "alone": {"ssh client": 1, "sshd": 1, "worker": 1},
        "hosts": {"ssh client": 0, "sshd": 1, "worker": 1},
        "apart": {"ssh client": 1, "sshd": 0, "worker": 1},
    }[layout]
    os.sched_setaffinity(0, {0})
    for name, pids in link.items():
        for pid in pids:
            with contextlib.suppress(OSError):  # one that ended meanwhile
                os.sched_setaffinity(pid, {cpu_of[name]})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layout", choices=("free", "alone", "hosts", "apart"), default="free")
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--count", type=int, default=6000, help="requests a run")
    options = parser.parse_args()
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),
    )
    with harness_running() as harness:
        bench = Bench(harness, harness.sshd("layout"))
        with bench.controller(harness.new_mark()) as controller:
            connection = controller.get_process().get(timeout=BOUND)
            link = _link()
            _pin(options.layout, link)
            processes = {"this process": [os.getpid()], **link}
            print(f"layout {options.layout}: " + ", ".join(
                f"{name} {pids}" for name, pids in processes.items()))
            for _ in range(options.runs):
                before = {pid: _usage(pid) for pids in processes.values() for pid in pids}
                start = time.perf_counter()
                windowed(lambda v: connection.call(Echo, value=v),
                         lambda f: f.get(timeout=BOUND), SMALL, options.count, WINDOW)
                figures = [f"{rate(options.count, time.perf_counter() - start):8,.0f} req/s"]
                for name, pids in processes.items():
                    cpu = sleeps = 0.0
                    for pid in pids:
                        old, new = before[pid], _usage(pid)
                        if old is not None and new is not None:
                            cpu += new[0] - old[0]
                            sleeps += new[1] - old[1]
                    figures.append(f"{name} {cpu / options.count * 1e6:4.1f} µs "
                                   f"{sleeps / options.count:.2f} sleeps")
                print(" | ".join(figures), flush=True)


if __name__ == "__main__":
    main()
