#!/usr/bin/env python3
"""Workers on another host: juicectl through OpenSSH against ``ssh host cat`` and execnet, on
a real sshd on loopback (the test harness, ``tests/remote/harness.py``), with issue 17's goals.

    .venv/bin/python benchmarks/remote.py [--rounds N] [--quick]
    .venv/bin/python benchmarks/run.py --only remote

Needs ``sshd`` (Debian's ``openssh-server``) and, for its comparison, execnet (the ``bench``
extra: ``.venv/bin/pip install -e '.[bench]'``). Runs as root (it creates the test user).
Every implementation runs the same worker with the same Python (``/usr/bin/python3`` and a
copy of the package the test user can read); round after round they alternate. Figures are
medians over the rounds. The failure scenarios (the ssh client killed, the parent killed, end
of input, a partition) time how long until no process of the test's marker is left on the
"remote" side.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import structlog

from benchmarks._common import SMALL, WINDOW, rate, windowed
from juicectl import LaunchSpec, ProcessController, RestartPolicy
from juicectl.launch import SshSession, spawn
from tests.remote.harness import Harness, Relay, Sshd, harness_running
from tests.remote.worker import Echo, Sleep, Spawn

PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else "python3"
STOP = {"stop_timeout": 1.0, "kill_timeout": 1.0}
#: Keepalive of the partition scenario: the client's (ServerAlive) and the server's.
CLIENT_KEEPALIVE = (1, 2)
SERVER_KEEPALIVE = (1, 2)
#: The bound of every wait of a scenario.
BOUND = 60.0
#: What sshd logs when its keepalive (ClientAlive) drops a silent client.
_SSHD_TIMEOUT = "Timeout, client not responding"

Figures = dict[str, list[float]]


def _wait_until(predicate: Callable[[], bool], what: str) -> float:
    """Seconds until ``predicate`` holds (bounded)."""
    start = time.perf_counter()
    while not predicate():
        if time.perf_counter() - start > BOUND:
            raise RuntimeError(f"not reached within {BOUND}s: {what}")
        time.sleep(0.005)
    return time.perf_counter() - start


class Bench:
    """The scenarios, on one harness and one sshd."""

    def __init__(self, harness: Harness, sshd: Sshd) -> None:
        self.harness = harness
        self.sshd = sshd
        self.argv = [PYTHON, "-m", "juicectl.child", "remote_worker:Worker"]

    def env(self, mark: str) -> dict[str, str]:
        return self.harness.worker_env(mark)

    def controller(self, mark: str, port: int | None = None, **options: Any) -> ProcessController:
        launcher_options = options.pop("ssh", {})
        launcher = self.harness.launcher(port or self.sshd.port, python=PYTHON,
                                         **launcher_options)
        return ProcessController.start(self.argv, launcher=launcher, env=self.env(mark),
                                       **{**STOP, **options})

    def local(self, mark: str) -> ProcessController:
        return ProcessController.start(self.argv, env=self.env(mark), **STOP)

    def gone(self, mark: str) -> float:
        return _wait_until(lambda: not self.harness.marked(mark), "the remote side empty")

    # --- starts --------------------------------------------------------------------------

    def ssh_connect(self) -> float:
        """A fresh ssh connection, to the remote command's first byte."""
        launcher = self.harness.launcher(self.sshd.port)
        start = time.perf_counter()
        done = subprocess.run(
            [launcher.program(()), *launcher.connection_options(), "--", launcher.host,
             "echo x"], capture_output=True, timeout=BOUND,
        )
        elapsed = time.perf_counter() - start
        assert done.stdout == b"x\n", done.stderr
        return elapsed

    def cold(self, make: Callable[[str], ProcessController]) -> float:
        mark = self.harness.new_mark()
        start = time.perf_counter()
        with make(mark) as controller:
            controller.call(Echo, value=SMALL, timeout=BOUND)
            elapsed = time.perf_counter() - start
        return elapsed

    def warm(self) -> tuple[float, bool]:
        """Start to first answer over a running master; and whether it reused it."""
        mark = self.harness.new_mark()
        with self.controller(mark) as controller:
            controller.call(Echo, value=SMALL, timeout=BOUND)
            session = controller.launch_session
            assert isinstance(session, SshSession)
            master, connections = session.master_pid, self.sshd.connections()
            controller.stop_process().get(timeout=BOUND)
            start = time.perf_counter()
            controller.call(Echo, value=SMALL, timeout=BOUND)
            elapsed = time.perf_counter() - start
            reused = session.master_pid == master and self.sshd.connections() == connections
        return elapsed, reused

    # --- throughput ----------------------------------------------------------------------

    def juicectl_rates(self, remote: bool, count: int) -> tuple[float, float]:
        mark = self.harness.new_mark()
        with (self.controller(mark) if remote else self.local(mark)) as controller:
            connection = controller.get_process().get(timeout=BOUND)

            def call(value: str) -> Any:
                return connection.call(Echo, value=value).get(timeout=BOUND)

            for _ in range(300):
                call(SMALL)
            start = time.perf_counter()
            for _ in range(count):
                call(SMALL)
            sequential = rate(count, time.perf_counter() - start)
            windowed(lambda v: connection.call(Echo, value=v),
                     lambda f: f.get(timeout=BOUND), SMALL, 1000, WINDOW)
            start = time.perf_counter()
            windowed(lambda v: connection.call(Echo, value=v),
                     lambda f: f.get(timeout=BOUND), SMALL, count * 3, WINDOW)
            concurrent = rate(count * 3, time.perf_counter() - start)
        return sequential, concurrent

    def cat_rate(self, count: int, through_master: bool) -> float:
        """Sequential round trips of one line through ``ssh host cat``."""
        launcher = self.harness.launcher(self.sshd.port, control_master=through_master)
        session = launcher.open("cat")
        spec = LaunchSpec(["cat"], launcher=launcher)
        try:
            invocation = session.invocation(spec)
            argv = [*invocation.argv[:-1], "exec cat"]
            with subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  bufsize=0) as cat:
                assert cat.stdin is not None and cat.stdout is not None
                line = (SMALL + "\n").encode()
                for index in range(300 + count):
                    if index == 300:
                        start = time.perf_counter()
                    cat.stdin.write(line)
                    got = b""
                    while not got.endswith(b"\n"):
                        got += cat.stdout.read(64)
                elapsed = time.perf_counter() - start
                cat.stdin.close()
                cat.wait(timeout=BOUND)
        finally:
            session.close()
        return rate(count, elapsed)

    def execnet(self, count: int) -> tuple[float, float, float] | None:
        """execnet over ssh: start to first echo (s), sequential and 64-in-flight echo."""
        try:
            import execnet
        except ImportError:
            return None
        harness = self.harness
        spec = (
            f"ssh=-F /dev/null -o BatchMode=yes -o HostKeyAlias=juicectl-test-host "
            f"-o UserKnownHostsFile={harness.known_hosts} -o StrictHostKeyChecking=yes "
            f"-o IdentitiesOnly=yes -i {harness.client_key} -p {self.sshd.port} "
            f"{harness.user}@127.0.0.1//python={PYTHON}"
        )
        start = time.perf_counter()
        gateway = execnet.makegateway(spec)
        try:
            channel = gateway.remote_exec("for item in channel:\n    channel.send(item)\n")
            channel.send(SMALL)
            channel.receive(BOUND)
            started = time.perf_counter() - start
            for _ in range(300):
                channel.send(SMALL)
                channel.receive(BOUND)
            start = time.perf_counter()
            for _ in range(count):
                channel.send(SMALL)
                channel.receive(BOUND)
            sequential = rate(count, time.perf_counter() - start)
            start = time.perf_counter()
            windowed(channel.send, lambda _: channel.receive(BOUND), SMALL, count * 3, WINDOW)
            concurrent = rate(count * 3, time.perf_counter() - start)
            channel.close()
        finally:
            gateway.exit()
        return started, sequential, concurrent

    # --- stops and failures --------------------------------------------------------------

    def stop_busy(self) -> tuple[float, bool]:
        """Stop of a busy worker with grandchildren: seconds, and the remote group gone by
        the time it resolved."""
        mark = self.harness.new_mark()
        with self.controller(mark) as controller:
            connection = controller.get_process().get(timeout=BOUND)
            connection.call(Spawn).get(timeout=BOUND)
            connection.call(Sleep, seconds=600)
            start = time.perf_counter()
            controller.stop_process().get(timeout=BOUND)
            elapsed = time.perf_counter() - start
            empty = not self.harness.marked(mark)
        self.gone(mark)
        return elapsed, empty

    def client_killed(self) -> float:
        mark = self.harness.new_mark()
        with self.controller(mark, restart=RestartPolicy(mode="temporary")) as controller:
            connection = controller.get_process().get(timeout=BOUND)
            connection.call(Spawn).get(timeout=BOUND)
            connection.call(Sleep, seconds=600)
            os.kill(connection.pid, signal.SIGKILL)
            return self.gone(mark)

    def parent_killed(self) -> float:
        mark = self.harness.new_mark()
        parent = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve().parent.parent / "tests" / "remote"
                                 / "parent.py"),
             str(self.sshd.port), str(self.harness.lib), mark, str(self.harness.root),
             self.harness.user],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )
        assert parent.stdout is not None
        parent.stdout.readline()
        parent.kill()
        parent.wait(timeout=BOUND)
        parent.stdout.close()
        return self.gone(mark)

    def end_of_input(self) -> float:
        mark = self.harness.new_mark()
        launcher = self.harness.launcher(self.sshd.port, python=PYTHON)
        session = launcher.open("end-of-input")
        spec = LaunchSpec(self.argv, env=self.env(mark), launcher=launcher, **STOP)
        child = spawn(session.invocation(spec))
        try:
            _wait_until(lambda: len(self.harness.marked(mark)) == 2, "the worker running")
            assert child.popen.stdin is not None
            child.popen.stdin.close()
            return self.gone(mark)
        finally:
            child.popen.wait(timeout=BOUND)
            child.release()
            for stream in (child.popen.stdout, child.popen.stderr):
                if stream is not None:
                    stream.close()
            session.close()

    def partition(self, server: Sshd) -> tuple[float, float | None, float]:
        """Seconds until the parent sees the partition, until sshd drops the session (its log
        says "Timeout, client not responding"; None if it never said so by the time the
        remote side was empty), and until the remote side is empty."""
        mark = self.harness.new_mark()
        relay = Relay(server.port)
        try:
            with self.controller(mark, port=relay.port, restart=RestartPolicy(mode="temporary"),
                                 ssh={"keepalive": CLIENT_KEEPALIVE}) as controller:
                connection = controller.get_process().get(timeout=BOUND)
                connection.call(Spawn).get(timeout=BOUND)
                busy = connection.call(Sleep, seconds=600)
                logged = server.log().count(_SSHD_TIMEOUT)
                start = time.perf_counter()
                relay.pause()
                _wait_until(busy.done, "the request failed")
                seen = time.perf_counter() - start
                dropped: float | None = None

                def empty() -> bool:
                    nonlocal dropped
                    if dropped is None and server.log().count(_SSHD_TIMEOUT) > logged:
                        dropped = time.perf_counter() - start
                    return not self.harness.marked(mark)

                gone = seen + _wait_until(empty, "the remote empty")
                return seen, dropped, gone
        finally:
            relay.close()


def run(rounds: int, quick: bool) -> dict[str, Any]:
    """Every scenario, ``rounds`` times, alternating; the raw figures."""
    count = 1000 if quick else 3000
    figures: Figures = {}

    def note(name: str, value: float) -> None:
        figures.setdefault(name, []).append(value)
        sys.stderr.write(f"  {name:34} {value:12.4f}\n")

    flags: dict[str, list[bool]] = {"reused": [], "stop_empty": []}
    with harness_running() as harness:
        sshd = harness.sshd("bench")
        slow = harness.sshd("partition", client_alive=SERVER_KEEPALIVE)
        bench = Bench(harness, sshd)
        for round_no in range(rounds):
            sys.stderr.write(f"round {round_no + 1}/{rounds}\n")
            note("ssh connect (s)", bench.ssh_connect())
            note("local cold start (s)", bench.cold(bench.local))
            note("remote cold start (s)", bench.cold(bench.controller))
            warm, reused = bench.warm()
            note("remote start over the master (s)", warm)
            flags["reused"].append(reused)
            for remote in (round_no % 2 == 0, round_no % 2 == 1):
                seq, c64 = bench.juicectl_rates(remote, count)
                where = "remote" if remote else "local"
                note(f"juicectl {where} seq (req/s)", seq)
                note(f"juicectl {where} c64 (req/s)", c64)
            note("ssh cat seq (req/s)", bench.cat_rate(count, through_master=False))
            note("ssh cat via master seq (req/s)", bench.cat_rate(count, through_master=True))
            found = bench.execnet(count)
            if found is not None:
                note("execnet start (s)", found[0])
                note("execnet seq (req/s)", found[1])
                note("execnet c64 (req/s)", found[2])
            elapsed, empty = bench.stop_busy()
            note("stop busy (s)", elapsed)
            flags["stop_empty"].append(empty)
            note("client killed: remote empty (s)", bench.client_killed())
            note("parent killed: remote empty (s)", bench.parent_killed())
            note("end of input: remote empty (s)", bench.end_of_input())
            seen, dropped, gone = bench.partition(slow)
            note("partition seen (s)", seen)
            note("partition: remote empty (s)", gone)
            if dropped is not None:
                note("partition: sshd dropped the session (s)", dropped)
                note("partition: remote empty after sshd's drop (s)", gone - dropped)
    return {"figures": figures, "flags": flags}


def _med(figures: Figures, name: str) -> float | None:
    values = figures.get(name)
    return statistics.median(values) if values else None


def report(result: dict[str, Any]) -> None:
    """The medians, then each goal of issue 17 with PASS or FAIL."""
    figures: Figures = result["figures"]
    flags: dict[str, list[bool]] = result["flags"]
    print("\n| remote figure | median | min - max |\n|---|---:|---:|")
    for name, values in figures.items():
        print(f"| {name} | {statistics.median(values):,.4g} | "
              f"{min(values):,.4g} - {max(values):,.4g} |")
    grace = 2 * 0.4 * STOP["kill_timeout"]
    goals: list[tuple[str, float | None, float | None, bool]] = []

    def ratio(a: str, b: str) -> float | None:
        top, bottom = _med(figures, a), _med(figures, b)
        return top / bottom if top is not None and bottom else None

    def goal(text: str, value: float | None, bound: float | None, lower: bool) -> None:
        goals.append((text, value, bound, lower))

    connect, local_cold = _med(figures, "ssh connect (s)"), _med(figures, "local cold start (s)")
    if connect is not None and local_cold is not None:
        goal("start to first answer <= ssh connect + 1.1x local cold start (s)",
             _med(figures, "remote cold start (s)"), connect + 1.1 * local_cold, True)
        goal("start over the master <= 1.3x local cold start (s)",
             _med(figures, "remote start over the master (s)"), 1.3 * local_cold, True)
    goal("restarts reuse the connection (rounds)", float(sum(flags["reused"])),
         float(len(flags["reused"])), False)
    goal("sequential echo >= 0.5x ssh cat (ratio)",
         ratio("juicectl remote seq (req/s)", "ssh cat seq (req/s)"), 0.5, False)
    goal("sequential echo >= 1.3x execnet (ratio)",
         ratio("juicectl remote seq (req/s)", "execnet seq (req/s)"), 1.3, False)
    goal("64 in flight >= 0.8x local (ratio)",
         ratio("juicectl remote c64 (req/s)", "juicectl local c64 (req/s)"), 0.8, False)
    goal("64 in flight >= 1.5x execnet (ratio)",
         ratio("juicectl remote c64 (req/s)", "execnet c64 (req/s)"), 1.5, False)
    stop_bound = STOP["stop_timeout"] + STOP["kill_timeout"]
    stops = figures.get("stop busy (s)", [])
    goal("stop busy within stop_timeout + kill_timeout, remote gone (worst, s)",
         max(stops) if stops and all(flags["stop_empty"]) else None, stop_bound, True)
    for name in ("client killed", "parent killed", "end of input"):
        values = figures.get(f"{name}: remote empty (s)", [])
        goal(f"0 remote processes after: {name} (worst, s; within the grace)",
             max(values) if values else None, grace + 1.0, True)
    interval, count = SERVER_KEEPALIVE
    values = figures.get("partition: remote empty (s)", [])
    goal("0 remote processes after a partition <= server keepalive x (count + 1) + grace "
         "(worst, s)", max(values) if values else None, interval * (count + 1) + grace, True)
    # Not one of the goals: the part of that wait that is the shim's, once sshd has
    # ended the session (sshd 9.2 drops a silent client after about 2 x interval x (count + 1)).
    values = figures.get("partition: remote empty after sshd's drop (s)", [])
    goal("the shim's part: 0 remote processes after sshd drops the session <= grace (worst, s)",
         max(values) if values else None, grace, True)
    interval, count = CLIENT_KEEPALIVE
    values = figures.get("partition seen (s)", [])
    goal("a partition is seen within the client keepalive bound + 1 s (worst, s)",
         max(values) if values else None, interval * count + 1.0, True)
    print("\n| goal | measured | bound | result |\n|---|---:|---:|---|")
    for text, value, bound, lower in goals:
        if value is None or bound is None:
            print(f"| {text} | n/a | | not measured |")
            continue
        passed = value <= bound if lower else value >= bound
        print(f"| {text} | {value:.3g} | {bound:.3g} | {'PASS' if passed else 'FAIL'} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, help="rounds (default 5, quick 3)")
    parser.add_argument("--quick", action="store_true", help="fewer requests, 3 rounds")
    args = parser.parse_args(argv)
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR),
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),  # stdout carries results
    )
    rounds = args.rounds or (3 if args.quick else 5)
    print(f"remote: {rounds} rounds on a loopback sshd, python {PYTHON}", flush=True)
    report(run(rounds, args.quick))
    return 0


if __name__ == "__main__":
    sys.exit(main())
