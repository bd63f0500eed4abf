"""A pool's options checked at the door, workers that cannot start or give up, the CPU
budget's rule, a worker that does not say how it runs, and no orphan after the parent dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import pykka
import pytest

from juicectl import LaunchSpec, ProcessLaunchError, ProcessPool, ProcessUnavailable, RestartPolicy
from juicectl._busy_poll import DEFAULT_BUSY_POLL
from juicectl.child._runtime import BUSY_POLL_ENV
from juicectl.pool import SpinPlan, WorkerGaveUp, WorkerLost, spin_plan

from ..conftest import ROOT
from .conftest import WORKER, wait_until
from .workers import Echo, Pid

pytestmark = pytest.mark.timeout(60)

MakePool = Callable[..., ProcessPool]


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"size": 0}, ValueError, "size must be >= 1"),
        ({"size": "2"}, TypeError, "size must be an int"),
        ({"size": 2, "max_size": 3}, TypeError, "not both"),
        ({"min_size": 3, "max_size": 2}, ValueError, r"min_size \(3\)"),
        ({"min_size": -1, "max_size": 2}, ValueError, "min_size must be >= 0"),
        ({"size": 1, "max_idle": 0}, ValueError, "max_idle must be > 0"),
        ({"size": 1, "recycle_after_calls": 0}, ValueError, "recycle_after_calls"),
        ({"size": 1, "recycle_after_seconds": -1}, ValueError, "recycle_after_seconds"),
        ({"size": 1, "dispatch": "random"}, ValueError, "dispatch must be"),
        ({"size": 1, "max_per_worker": 0}, ValueError, "max_per_worker"),
        ({"size": 1, "max_queued": -1}, ValueError, "max_queued"),
        ({"size": 1, "on_give_up": "retry"}, ValueError, "on_give_up"),
        ({"size": 1, "restart": "permanent"}, TypeError,
         "restart must be a juicectl.RestartPolicy"),
        ({"min_size": "1"}, TypeError, "min_size must be an int"),
        ({"size": 1, "on_process_startup": 5}, TypeError, "on_process_startup must be"),
        ({"size": 1, "on_process_termination": "x"}, TypeError, "on_process_termination must"),
        ({"size": 1, "on_process_startup": lambda event: None}, TypeError,
         "on_process_startup must be .* cannot be called with 0 arguments"),
        ({"size": 1, "worker_subscribers": [5]}, TypeError,
         r"worker_subscribers\[0\] must be a pykka.ActorRef"),
        ({"size": 1, "subscribers": [print]}, TypeError,
         r"subscribers\[0\] must be a pykka.ActorRef, not .*\(a callable"),
        ({"size": 1, "subscribers": 5}, TypeError, "subscribers must be an iterable"),
        ({"size": 1, "name": 5}, TypeError, "name must be a str or None"),
        ({"size": 1, "name": ""}, ValueError, "name must be a non-empty str"),
        ({"size": 1, "worker_busy_poll": 1}, ValueError, "^worker_busy_poll must be between"),
        ({"size": 1, "worker_busy_poll": "1"}, TypeError, "^worker_busy_poll must be a number"),
        ({"size": 1, "startup_timeout": 0}, ValueError, "startup_timeout"),
        ({"max_size": -1}, ValueError, "^max_size must be >= 1, not -1"),
        # A typo, not a pool: refused before any worker starts.
        ({"size": 10**9}, ValueError, r"^size must be at most 1024 \(MAX_WORKERS\), not 10{9}$"),
        ({"max_size": 1025}, ValueError, r"^max_size must be at most 1024 \(MAX_WORKERS\)"),
        ({"min_size": 2000}, ValueError, r"^min_size must be at most 1024 \(MAX_WORKERS\)"),
        ({"min_size": 1, "max_size": 5000}, ValueError, r"^max_size must be at most 1024"),
        ({"size": 1, "prepare": "1"}, TypeError, "^prepare must be a callable"),
        ({"size": 1, "env": -1}, TypeError, "^env must be a mapping"),
        ({"size": 1, "env": "A=1"}, TypeError, "^env must be a mapping"),
        ({"size": 1, "cwd": 123}, TypeError, "^cwd must be a str"),
    ],
)
def test_bad_options_are_named(options: dict[str, object], error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        ProcessPool.start(WORKER, **options)  # type: ignore[arg-type]
    assert not pykka.ActorRegistry.get_all()


@pytest.mark.parametrize("target", [None, 5, "python3 -m worker"])
def test_a_bad_target_is_named(target: object) -> None:
    with pytest.raises(TypeError, match=r"^target must be the worker's command"):
        ProcessPool.start(target, size=1)  # type: ignore[arg-type]
    assert not pykka.ActorRegistry.get_all()


def test_launch_options_beside_a_launch_spec_are_refused() -> None:
    with pytest.raises(TypeError, match="env, startup_timeout: give these in the LaunchSpec"):
        ProcessPool.start(LaunchSpec(argv=WORKER), size=1, env={}, startup_timeout=3)


def test_a_launch_spec_runs(make_pool: MakePool) -> None:
    pool = make_pool(LaunchSpec(argv=WORKER, startup_timeout=20), size=1)
    assert pool.call(Echo, value="spec").get(timeout=20) == {"value": "spec"}


def test_a_worker_that_cannot_be_launched_fails_the_calls_with_why(make_pool: MakePool) -> None:
    pool = make_pool(["/nonexistent/worker"], size=1)
    with pytest.raises(ProcessLaunchError, match="/nonexistent/worker"):
        pool.call(Echo, value="x").get(timeout=20)


def test_a_worker_that_gives_up_leaves_and_the_pool_says_so(make_pool: MakePool) -> None:
    events: list[object] = []

    class Listener(pykka.ThreadingActor):
        def on_receive(self, message: object) -> None:
            events.append(message)

    listener = Listener.start()
    policy = RestartPolicy(initial_delay=0.0, jitter=0.0, max_restarts=1, window=60)
    pool = make_pool([sys.executable, "-c", "import sys; sys.exit(3)"], size=1,
                     restart=policy, on_give_up="leave", subscribers=[listener])
    with pytest.raises(ProcessUnavailable):
        pool.call(Echo, value="x").get(timeout=20)
    wait_until(lambda: any(isinstance(e, WorkerGaveUp) for e in events))
    gave_up = next(e for e in events if isinstance(e, WorkerGaveUp))
    assert gave_up.replaced is False
    wait_until(lambda: pool.stats()["slots"] == 0)
    with pytest.raises(ProcessUnavailable,
                       match=r"no worker left: .*\(the last: .*exited with status 3\)"):
        pool.call(Echo, value="y")


def test_a_worker_whose_child_ends_before_it_is_ready_fails_the_calls_with_why(
    make_pool: MakePool,
) -> None:
    # As a lone controller fails them: held, they would wait for restarts that fail alike.
    policy = RestartPolicy(initial_delay=1.0, jitter=0.0)
    pool = make_pool([sys.executable, "-c", "import sys; sys.exit(3)"], size=2, restart=policy)
    with pytest.raises(ProcessUnavailable, match="exited with status 3"):
        pool.call(Echo, value="x").get(timeout=20)
    with pytest.raises(ProcessUnavailable, match="exited with status 3"):
        pool.call(Echo, value="y").get(timeout=20)


def test_a_pool_whose_start_fails_midway_closes_what_it_started(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from juicectl.exceptions import ControllerClosed
    from juicectl.pool._actor import PoolActor

    started: list[ProcessPool] = []
    add_slot = PoolActor._add_slot
    calls = iter(range(10))

    def second_fails(self: PoolActor) -> None:
        if next(calls) == 1:
            raise RuntimeError("no second slot")
        add_slot(self)

    monkeypatch.setattr(PoolActor, "_add_slot", second_fails)
    pool = ProcessPool.start(WORKER, size=2)
    started.append(pool)
    try:
        # pykka stops an actor whose on_start raised without on_stop: the pool closes itself.
        with pytest.raises(ControllerClosed):
            pool.call(Echo, value="x").get(timeout=20)
        wait_until(lambda: not pykka.ActorRegistry.get_all())
    finally:
        pool.close()


def test_a_worker_that_gives_up_is_replaced(make_pool: MakePool, tmp_path: object) -> None:
    # The first child of each slot fails at start until a flag file exists; then they work.
    flag = os.path.join(str(tmp_path), "ok")
    script = (
        "import os, sys\n"
        f"if not os.path.exists({flag!r}): sys.exit(3)\n"
        "from juicectl.child._main import main\n"
        "main(['tests.pool.workers:PoolWorker'])\n"
    )
    policy = RestartPolicy(initial_delay=0.0, jitter=0.0, max_restarts=1, window=60)
    events: list[object] = []

    class Listener(pykka.ThreadingActor):
        def on_receive(self, message: object) -> None:
            events.append(message)
            if isinstance(message, WorkerGaveUp):
                open(flag, "w").close()

    pool = make_pool([sys.executable, "-c", script], size=1, restart=policy,
                     subscribers=[Listener.start()])
    wait_until(lambda: pool.stats()["size"] == 1)
    assert any(isinstance(e, WorkerGaveUp) and e.replaced for e in events)
    assert pool.stats()["replaced"] == 1
    assert pool.call(Echo, value="back").get(timeout=20) == {"value": "back"}


def test_the_lost_event_says_what_became_of_the_requests(make_pool: MakePool) -> None:
    events: list[object] = []

    class Listener(pykka.ThreadingActor):
        def on_receive(self, message: object) -> None:
            events.append(message)

    pool = make_pool(size=1, subscribers=[Listener.start()])
    pid = pool.call(Pid).get(timeout=20)["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: any(isinstance(e, WorkerLost) for e in events))
    lost = next(e for e in events if isinstance(e, WorkerLost))
    assert lost.reason.signal == signal.SIGKILL and (lost.resent, lost.failed) == (0, 0)
    assert pool.call(Pid).get(timeout=20)["pid"] != pid


def test_the_cpu_rule() -> None:
    # The parent spins (one, whatever its threads); every worker too while all fit in the
    # cores, else the first ones, as many as fit beside the parent.
    assert spin_plan(1, 2) == SpinPlan(DEFAULT_BUSY_POLL, None, spinners=2, polling_workers=1)
    assert spin_plan(2, 2) == SpinPlan(DEFAULT_BUSY_POLL, 0.0, spinners=2, polling_workers=1)
    assert spin_plan(3, 4) == SpinPlan(DEFAULT_BUSY_POLL, None, spinners=4, polling_workers=3)
    assert spin_plan(8, 4) == SpinPlan(DEFAULT_BUSY_POLL, 0.0, spinners=4, polling_workers=3)
    assert spin_plan(2, 1) == SpinPlan(DEFAULT_BUSY_POLL, 0.0, spinners=1, polling_workers=0)
    assert spin_plan(2, 2, parent=0.0) == SpinPlan(0.0, None, spinners=2, polling_workers=2)
    assert spin_plan(3, 2, parent=0.0) == SpinPlan(0.0, 0.0, spinners=2, polling_workers=2)
    # An explicit budget is every worker's.
    assert spin_plan(2, 2, worker=0.0001) == SpinPlan(DEFAULT_BUSY_POLL, 0.0001, spinners=3,
                                                      polling_workers=2)
    assert spin_plan(2, 2, worker=0.0) == SpinPlan(DEFAULT_BUSY_POLL, 0.0, spinners=1,
                                                   polling_workers=0)


def _busy_poll_by_slot(pool: ProcessPool) -> dict[int, str | None]:
    """Each serving worker's JUICECTL_BUSY_POLL, as its process has it (None: unset)."""
    found: dict[int, str | None] = {}
    for worker in pool.stats()["workers"]:
        with open(f"/proc/{worker['pid']}/environ", "rb") as environ:
            variables = dict(
                item.decode().partition("=")[::2] for item in environ.read().split(b"\0") if item
            )
        found[worker["slot"]] = variables.get(BUSY_POLL_ENV)
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/PID/environ")
def test_only_the_first_workers_poll_when_all_would_not_fit(make_pool: MakePool) -> None:
    cores = os.cpu_count() or 1
    size = cores + 1
    pool = make_pool(size=size, env={k: v for k, v in os.environ.items() if k != BUSY_POLL_ENV})
    assert pool.spin_plan.polling_workers == cores - 1
    wait_until(lambda: pool.stats()["size"] == size
               and all(w["pid"] is not None for w in pool.stats()["workers"]))
    by_slot = _busy_poll_by_slot(pool)
    first = sorted(by_slot)[: cores - 1]
    assert {slot: by_slot[slot] for slot in first} == dict.fromkeys(first)  # their own setting
    assert [by_slot[slot] for slot in sorted(by_slot)[cores - 1:]] == ["0.0"] * 2
    # A restart keeps its slot, and so its polling.
    first_slot = min(by_slot)
    victim = next(w["pid"] for w in pool.stats()["workers"] if w["slot"] == first_slot)
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: any(w["slot"] == first_slot and w["pid"] not in (None, victim)
                           and w["state"] == "ready" for w in pool.stats()["workers"]))
    assert _busy_poll_by_slot(pool)[first_slot] is None


def test_workers_are_launched_with_the_plan(make_pool: MakePool) -> None:
    pool = make_pool(size=(os.cpu_count() or 1) + 1)
    assert pool.spin_plan.worker == 0.0
    assert pool.spec.env is not None and pool.spec.env[BUSY_POLL_ENV] == "0.0"
    pool.close()
    user_env = {**os.environ, BUSY_POLL_ENV: "0.0005"}
    kept = make_pool(size=(os.cpu_count() or 1) + 1, env=user_env)
    assert kept.spec.env is not None and kept.spec.env[BUSY_POLL_ENV] == "0.0005"


@pytest.mark.interop
def test_a_worker_that_does_not_say_how_it_runs(make_pool: MakePool) -> None:
    pytest.importorskip("epsilon.juice")
    child = [sys.executable, str(ROOT / "tests" / "peers" / "epsilon_child.py")]
    pool = make_pool(child, size=1)
    wait_until(lambda: pool.stats()["size"] == 1)
    # The reference peer negotiates without the extra field: nothing is assumed of it.
    assert pool.stats()["workers"][0]["one_at_a_time"] is None


ORPHAN_SCRIPT = """
import sys, time
sys.path.insert(0, {root!r})
from juicectl import ProcessPool
from tests.pool.workers import Pid
pool = ProcessPool.start({worker!r}, size=2)
pids = sorted({{pool.call(Pid).get(timeout=20)["pid"] for _ in range(50)}})
while len(pids) < 2:
    pids = sorted(set(pids) | {{pool.call(Pid).get(timeout=20)["pid"]}})
print(" ".join(map(str, pids)), flush=True)
time.sleep(60)
"""


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False


def test_no_worker_outlives_a_parent_killed_with_sigkill() -> None:
    script = ORPHAN_SCRIPT.format(root=str(ROOT), worker=WORKER)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        line = parent.stdout.readline()
        pids = [int(pid) for pid in line.split()]
        assert len(pids) == 2 and all(alive(pid) for pid in pids)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        deadline = time.monotonic() + 10
        while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not any(alive(pid) for pid in pids)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(timeout=10)
