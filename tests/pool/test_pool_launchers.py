"""Pools across hosts: workers spread over launchers, each slot's restarts and recycles kept
behind its own launcher, the loss rules unchanged behind one, bad launchers named at the door.

Two ``prefix(["env", "POOL_HOST=..."])`` launchers stand for two hosts: each runs the worker
behind an exec prefix and the remote shim, as ``ssh()`` does, and the worker says which
"host" it is on. One real ``ssh()`` pool is tested in ``tests/remote/test_pool.py``.
"""

from __future__ import annotations

import os
import signal
from collections import Counter
from collections.abc import Callable

import pykka
import pytest

from juicectl import LaunchSpec, ProcessPool, local, prefix
from juicectl.launch import PrefixLauncher
from juicectl.pool import spin_plan

from .conftest import WORKER, pids_or_failed, wait_until
from .workers import Slow, Where

pytestmark = pytest.mark.timeout(90)

MakePool = Callable[..., ProcessPool]

HOSTS = [prefix(["env", "POOL_HOST=a"]), prefix(["env", "POOL_HOST=b"])]


def hosts_serving(pool: ProcessPool, calls: int = 16) -> dict[str, set[int]]:
    """Which hosts answer, and with which worker pids (slow calls, so both workers take some)."""
    seen: dict[str, set[int]] = {}
    futures = [pool.call(Where) for _ in range(calls)]
    for future in futures:
        answer = future.get(timeout=30)
        seen.setdefault(answer["host"], set()).add(answer["pid"])
    return seen


def test_workers_are_spread_over_the_launchers(make_pool: MakePool) -> None:
    pool = make_pool(size=4, launchers=HOSTS)
    wait_until(lambda: pool.stats()["size"] == 4)
    where = Counter(w["where"] for w in pool.stats()["workers"])
    assert where == {"prefix env POOL_HOST=a": 2, "prefix env POOL_HOST=b": 2}
    assert [spec.launcher for spec in pool.placements] == HOSTS
    futures = [pool.call(Slow, seconds=0.05, n=i) for i in range(8)]
    assert sorted(f.get(timeout=30)["n"] for f in futures) == list(range(8))
    seen = hosts_serving(pool, calls=64)
    assert set(seen) == {"a", "b"}


def test_sticky_keys_stay_on_one_host(make_pool: MakePool) -> None:
    pool = make_pool(size=2, launchers=HOSTS)
    wait_until(lambda: pool.stats()["size"] == 2)
    owner: dict[str, set[str]] = {}
    for _ in range(3):
        futures = {f"user{k}": pool.call(Where, key=f"user{k}") for k in range(16)}
        for key, future in futures.items():
            owner.setdefault(key, set()).add(future.get(timeout=30)["host"])
    assert all(len(hosts) == 1 for hosts in owner.values())
    assert set().union(*owner.values()) == {"a", "b"}


def test_a_worker_killed_behind_its_launcher(make_pool: MakePool) -> None:
    pool = make_pool(size=2, launchers=HOSTS)
    wait_until(lambda: pool.stats()["size"] == 2)
    seen = hosts_serving(pool)
    (victim,) = seen["a"]
    futures = [pool.call(Slow, seconds=0.2, n=i) for i in range(16)]
    wait_until(lambda: all(w["in_flight"] == 8 for w in pool.stats()["workers"]))
    os.kill(victim, signal.SIGKILL)  # the worker itself, on "host" a, behind the shim
    outcomes = pids_or_failed(futures)
    # The shim reports the worker's own end, so the write order holds behind a launcher too.
    assert outcomes.count("failed") == 1
    assert victim not in outcomes
    stats = pool.stats()
    assert stats["resent"] == 7 and stats["failed_at_loss"] == 1
    # Restarted behind the same launcher: host a again, with a new worker.
    wait_until(lambda: pool.stats()["size"] == 2)
    after = hosts_serving(pool)
    assert set(after) == {"a", "b"} and victim not in after["a"]


def test_a_recycled_worker_is_replaced_behind_its_launcher(make_pool: MakePool) -> None:
    pool = make_pool(size=2, launchers=HOSTS, recycle_after_calls=20)
    wait_until(lambda: pool.stats()["size"] == 2)
    first = hosts_serving(pool)
    for _ in range(4):
        hosts_serving(pool)  # raises if any request failed
    wait_until(lambda: pool.stats()["recycled"] >= 2 and pool.stats()["size"] == 2)
    assert pool.stats()["failed_at_loss"] == 0
    after = hosts_serving(pool)
    assert set(after) == {"a", "b"}
    assert after["a"] != first["a"] and after["b"] != first["b"]


def test_a_launch_spec_is_spread_over_launchers(make_pool: MakePool) -> None:
    spec = LaunchSpec(argv=WORKER, startup_timeout=20.0)
    pool = make_pool(spec, size=2, launchers=HOSTS)
    wait_until(lambda: pool.stats()["size"] == 2)
    assert set(hosts_serving(pool)) == {"a", "b"}
    assert all(p.startup_timeout == 20.0 for p in pool.placements)


def test_one_launcher_for_every_worker(make_pool: MakePool) -> None:
    pool = make_pool(size=2, launcher=HOSTS[1])
    wait_until(lambda: pool.stats()["size"] == 2)
    assert set(hosts_serving(pool)) == {"b"}
    assert len(pool.placements) == 1


def test_workers_elsewhere_keep_their_own_busy_polling(make_pool: MakePool) -> None:
    # Behind a prefix, with no env given, the pool cannot set one variable of the worker's
    # environment there: it leaves the workers' polling alone and does not count them.
    pool = make_pool(size=2, launchers=HOSTS)
    assert pool.spin_plan == spin_plan(0, os.cpu_count() or 1)
    assert all(p.env is None for p in pool.placements)
    # With local workers among them, those are counted (and turned off past the cores).
    mixed = make_pool(size=2, launchers=[local(), HOSTS[0]])
    assert mixed.spin_plan == spin_plan(1, os.cpu_count() or 1)


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"launchers": []}, ValueError, "launchers must be a non-empty list"),
        ({"launchers": HOSTS[0]}, ValueError, "launchers must be a non-empty list"),
        ({"launchers": [HOSTS[0], "ssh host"]}, TypeError, r"launchers\[1\] must be a launcher"),
        ({"launchers": HOSTS, "launcher": HOSTS[0]}, TypeError, "not both"),
        ({"launcher": PrefixLauncher}, TypeError, "launcher must be a launcher"),
        ({"launchers": [prefix(["env"], shim=False)], "cwd": "/tmp"}, ValueError,
         "without the shim"),
        ({"launchers": HOSTS, "worker_busy_poll": 0}, ValueError,
         "worker_busy_poll=0 cannot reach workers behind"),
    ],
)
def test_bad_launchers_are_named(options: dict[str, object], error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        ProcessPool.start(WORKER, size=1, **options)  # type: ignore[arg-type]
    assert not pykka.ActorRegistry.get_all()


def test_an_explicit_worker_budget_goes_in_the_given_env(make_pool: MakePool) -> None:
    env = dict(os.environ, POOL_HOST="a")
    pool = make_pool(size=1, launchers=HOSTS[:1], env=env, worker_busy_poll=0)
    assert pool.placements[0].env is not None
    assert float(pool.placements[0].env["JUICECTL_BUSY_POLL"]) == 0
    assert set(hosts_serving(pool, calls=2)) == {"a"}
