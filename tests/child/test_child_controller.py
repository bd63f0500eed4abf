"""Our workers as real children of a ProcessController: the two halves of juicectl together."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from juicectl import ProcessController, RestartPolicy
from juicectl.juice import UnhandledRemoteJuiceError
from tests.workers.runtime import AskParent, Block, Crash, Double, Echo, Fail, Noisy, Release

from .conftest import ROOT

WORKER = "tests.workers.runtime:TestWorker"

MakeController = Callable[..., ProcessController]


@pytest.fixture
def make_controller() -> Iterator[MakeController]:
    started: list[ProcessController] = []

    def make(worker: str, *args: str, **options: Any) -> ProcessController:
        options = {
            "cwd": str(ROOT),
            "restart": RestartPolicy(mode="temporary"),
            "startup_timeout": 10.0,
            "stop_timeout": 2.0,
            "kill_timeout": 1.0,
            **options,
        }
        argv = [sys.executable, "-m", "juicectl.child", worker, *args]
        controller = ProcessController.start(argv, **options)
        started.append(controller)
        return controller

    yield make
    for controller in started:
        controller.close(timeout=15)


def last_exit(ctl: ProcessController, timeout: float = 10.0) -> dict[str, Any]:
    """Wait for the controller to record the child's exit; return it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        exit_info = ctl.stats()["last_exit"]
        if exit_info is not None:
            return dict(exit_info)
        time.sleep(0.02)
    raise AssertionError("the child did not exit")


def test_stray_output_leaves_the_stream_intact(make_controller: MakeController) -> None:
    ctl = make_controller("tests.child.noisy_worker:NoisyWorker")
    conn = ctl.get_process().get(timeout=10)
    for i in range(3):
        assert conn.call(Noisy, value=f"call {i}").get(timeout=10) == {"value": f"call {i}"}
    result = ctl.stop_process().get(timeout=10)
    assert result.how == "clean"
    assert result.reason is not None and result.reason.exit_status == 0


def test_stop_sends_shutdown_and_the_child_exits_zero(make_controller: MakeController) -> None:
    ctl = make_controller(WORKER)
    conn = ctl.get_process().get(timeout=10)
    assert conn.call(Echo, value="x\r\ny ✓").get(timeout=10) == {"value": "x\r\ny ✓"}
    result = ctl.stop_process().get(timeout=10)
    assert result.how == "clean"
    assert result.reason is not None and result.reason.exit_status == 0


def test_a_declared_error_keeps_the_worker_serving(make_controller: MakeController) -> None:
    ctl = make_controller(WORKER)
    conn = ctl.get_process().get(timeout=10)
    with pytest.raises(ValueError, match="declared"):
        conn.call(Fail, message="declared").get(timeout=10)
    assert conn.call(Echo, value="alive").get(timeout=10) == {"value": "alive"}
    assert ctl.stats()["last_exit"] is None


def test_an_unhandled_error_ends_the_worker(make_controller: MakeController) -> None:
    ctl = make_controller(WORKER)
    conn = ctl.get_process().get(timeout=10)
    with pytest.raises(UnhandledRemoteJuiceError):
        conn.call(Crash).get(timeout=10)
    exit_info = last_exit(ctl)
    assert exit_info["exit_status"] == 0
    assert exit_info["requested"] is False


def test_concurrency_answers_a_fast_command_while_a_slow_one_runs(
    make_controller: MakeController,
) -> None:
    ctl = make_controller(WORKER, "--concurrency", "2")
    conn = ctl.get_process().get(timeout=10)
    slow = conn.call(Block)
    assert conn.call(Echo, value="fast").get(timeout=10) == {"value": "fast"}
    assert not slow.done()
    conn.call(Release).get(timeout=10)
    assert slow.get(timeout=10) == {"released": True}


class ParentResponder:
    """Answers the child's calls to its parent."""

    @Double.responder
    def double(self, value: int) -> dict[str, int]:
        if value < 0:
            raise ValueError("no negatives")
        return {"value": value * 2}


@pytest.mark.parametrize("args", [(), ("--concurrency", "3")])
def test_the_worker_calls_its_parent(
    make_controller: MakeController, args: tuple[str, ...]
) -> None:
    ctl = make_controller(WORKER, *args, responder=ParentResponder())
    conn = ctl.get_process().get(timeout=10)
    assert conn.call(AskParent, value=21).get(timeout=10) == {"value": 42}
    with pytest.raises(ValueError, match="no negatives"):
        conn.call(AskParent, value=-1).get(timeout=10)
    assert conn.call(Echo, value="after").get(timeout=10) == {"value": "after"}
