"""A pool over two real ssh hosts: one worker on each, a remote worker killed and restarted
over its own connection, and nothing left on either side (worker or ssh client) once the pool
is closed. The pool's own behaviour is tested in ``tests/pool``."""

from __future__ import annotations

import os
import signal
from collections import Counter
from pathlib import Path

import pytest

from juicectl import ProcessPool, RestartPolicy
from tests.remote.conftest import FAST, GONE_WITHIN, remote_gone
from tests.remote.harness import Harness, Sshd
from tests.remote.worker import Echo, Sleep, Where
from tests.supervision.conftest import wait_for

pytestmark = pytest.mark.timeout(120)


def ssh_clients_to(port: int) -> list[int]:
    """This machine's ssh processes (clients and masters) that name ``port``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            words = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if words and os.path.basename(words[0]) == b"ssh" and str(port).encode() in words:
            found.append(int(entry.name))
    return found


def test_a_pool_over_two_hosts(harness: Harness, sshd: Sshd, mark: str) -> None:
    second = harness.sshd("pool-b")
    pool = ProcessPool.start(
        harness.worker_argv(),
        size=2,
        launchers=[harness.launcher(sshd.port), harness.launcher(second.port)],
        env=harness.worker_env(mark),
        restart=RestartPolicy(initial_delay=0.0, jitter=0.0),
        **FAST,
    )
    try:
        wait_for(lambda: pool.stats()["size"] == 2, GONE_WITHIN, "both workers ready")
        where = Counter(w["where"] for w in pool.stats()["workers"])
        assert where == {f"ssh {harness.user}@127.0.0.1:{server.port}": 1
                         for server in (sshd, second)}
        assert ssh_clients_to(second.port)  # its client (and master) run while it serves
        futures = [pool.call(Sleep, seconds=0.1) for _ in range(8)]
        assert all(f.get(timeout=30)["slept"] == 0.1 for f in futures)
        assert all(w["calls"] > 0 for w in pool.stats()["workers"])
        # A remote worker killed: its controller restarts it over its own ssh connection.
        victim = pool.call(Where).get(timeout=30)["pid"]
        generations = {w["generation"] for w in pool.stats()["workers"]}
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: pool.stats()["size"] == 2
                 and {w["generation"] for w in pool.stats()["workers"]} != generations,
                 GONE_WITHIN, "the killed worker restarted")
        assert [pool.call(Echo, value=str(n)).get(timeout=30)["value"] for n in range(4)] == [
            "0", "1", "2", "3"]
    finally:
        result = pool.close()
        try:
            assert result is not None and len(result) == 2
            remote_gone(harness, mark)
            # The second host serves this test alone: nothing may still talk to it.
            wait_for(lambda: not ssh_clients_to(second.port), GONE_WITHIN,
                     "every ssh client and master to the second host gone")
        finally:
            second.stop()


def test_a_dead_host_fails_no_call_that_a_live_host_will_serve(
    harness: Harness, sshd: Sshd, mark: str
) -> None:
    # The dead host's worker fails to start long before the live host's is ready: the calls
    # made meanwhile wait for the live one instead of failing with the dead one's error.
    from tests.remote.test_ssh import socket_that_refuses

    with socket_that_refuses() as dead:
        pool = ProcessPool.start(
            harness.worker_argv(), size=2,
            launchers=[harness.launcher(dead), harness.launcher(sshd.port)],
            env=harness.worker_env(mark),
            restart=RestartPolicy(initial_delay=0.5, jitter=0.0),
            **FAST,
        )
        try:
            answers = [pool.call(Echo, value=str(n)) for n in range(20)]
            assert [a.get(timeout=60)["value"] for a in answers] == [str(n) for n in range(20)]
        finally:
            pool.close()
    remote_gone(harness, mark)
