"""juicectl.aio's waits: a call waiting for a free slot holds no thread and, cancelled, sends
nothing; a pool's held request is taken back on cancel; a call's timeout bounds the request,
not the start; bad arguments fail before any child is launched."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from juicectl import ProcessController, ProcessUnavailable, TooManyRequests, aio
from juicectl.aio import AsyncProcessController, AsyncProcessPool
from juicectl.exceptions import ArgumentError
from juicectl.testing import ControllerFactory
from tests.aio.workers import AioWorker, TimeoutEcho, WaitFor
from tests.workers.commands import Echo

pytestmark = pytest.mark.timeout(90)

WORKER_ARGV = ["-m", "juicectl.child", "tests.aio.workers:AioWorker"]


async def _slot_taken(
    factory: ControllerFactory, tmp_path: Path, max_in_flight: int = 1
) -> tuple[AsyncProcessController, Path, asyncio.Task[dict[str, object]]]:
    """A controller, and a task whose request takes one of its slots until the returned
    file exists."""
    ctl = AsyncProcessController(factory(AioWorker, max_in_flight=max_in_flight))
    flag = tmp_path / "flag"
    task = asyncio.create_task(ctl.call(WaitFor, path=str(flag)))
    await _until(lambda: ctl.controller.stats()["in_flight"] == 1, "the slot taken")
    return ctl, flag, task


async def _until(predicate: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"never happened: {what}")
        await asyncio.sleep(0.01)


@pytest.mark.asyncio
async def test_calls_waiting_for_a_slot_hold_no_thread_and_leave_the_loop_its_executor(
    juicectl_controller: ControllerFactory, tmp_path: Path
) -> None:
    # 40 waiters: more than the default executor's threads, which a thread per waiter would
    # have filled, leaving stats() and close() no thread to run on.
    ctl, flag, blocker = await _slot_taken(juicectl_controller, tmp_path)
    waiting = [asyncio.create_task(ctl.call(Echo, value=str(n))) for n in range(40)]
    await asyncio.sleep(0.2)
    assert not any(task.done() for task in waiting)
    stats = await asyncio.wait_for(ctl.stats(), 10)
    assert stats["in_flight"] == 1
    flag.write_text("go")
    answers = await asyncio.wait_for(asyncio.gather(*waiting), 30)
    assert [answer["value"] for answer in answers] == [str(n) for n in range(40)]
    await blocker


@pytest.mark.asyncio
async def test_a_call_cancelled_while_it_waits_for_a_slot_is_never_sent(
    juicectl_controller: ControllerFactory, tmp_path: Path
) -> None:
    ctl, flag, blocker = await _slot_taken(juicectl_controller, tmp_path)
    waiter = asyncio.create_task(ctl.call(Echo, value="never"))
    await asyncio.sleep(0.1)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    flag.write_text("go")
    await blocker
    assert await ctl.call(Echo, value="after") == {"value": "after"}
    assert (await ctl.stats())["sent"] == 3  # Negotiate, WaitFor and "after": not "never"


@pytest.mark.asyncio
async def test_a_slot_wait_past_the_timeout_is_too_many_requests(
    juicectl_controller: ControllerFactory, tmp_path: Path
) -> None:
    ctl, flag, blocker = await _slot_taken(juicectl_controller, tmp_path)
    with pytest.raises(TooManyRequests, match=r"no free slot within 0\.2s .* Echo not sent"):
        await ctl.call(Echo, value="late", timeout=0.2)
    flag.write_text("go")
    await blocker


@pytest.mark.asyncio
async def test_a_call_timeout_bounds_the_request_not_the_start(
    juicectl_controller: ControllerFactory,
) -> None:
    # The child takes longer than 0.05 s to start; the answer still comes.
    ctl = AsyncProcessController(juicectl_controller(AioWorker))
    assert await ctl.call(Echo, value="cold", timeout=0.05) == {"value": "cold"}


def test_the_blocking_call_timeout_bounds_the_request_not_the_start(
    juicectl_controller: ControllerFactory,
) -> None:
    ctl = juicectl_controller(AioWorker)
    assert ctl.call(Echo, value="cold", timeout=0.05) == {"value": "cold"}


@pytest.mark.asyncio
async def test_a_child_that_never_gets_ready_fails_the_call_with_why(tmp_path: Path) -> None:
    never = [sys.executable, "-c", "import time; time.sleep(60)"]
    async with AsyncProcessController.start(never, startup_timeout=0.5, stop_timeout=0.2,
                                            kill_timeout=0.5) as ctl:
        with pytest.raises(ProcessUnavailable, match=r"not ready within 0\.5s"):
            await ctl.call(Echo, value="x")


@pytest.mark.asyncio
@pytest.mark.parametrize("form", ["async", "blocking"])
async def test_bad_arguments_fail_before_any_child_is_launched(
    juicectl_controller: ControllerFactory, form: str
) -> None:
    ctl = juicectl_controller(AioWorker)
    with pytest.raises(ArgumentError, match="'value': expected str, got int"):
        if form == "async":
            await AsyncProcessController(ctl).call(Echo, value=1)
        else:
            ctl.call(Echo, value=1)
    with pytest.raises(ValueError, match="timeout must be > 0 seconds or None, not -1"):
        if form == "async":
            await AsyncProcessController(ctl).call(Echo, value="x", timeout=-1)
        else:
            ctl.call(Echo, value="x", timeout=-1)
    assert ctl.stats()["generation"] == 0  # nothing was launched
    assert ctl.mode == "stopped"


@pytest.mark.asyncio
async def test_an_argument_named_timeout_goes_through_the_mapping_forms(
    juicectl_controller: ControllerFactory,
) -> None:
    ctl = AsyncProcessController(juicectl_controller(AioWorker))
    assert await ctl.call_with(TimeoutEcho, {"timeout": 5}, timeout=10) == {"timeout": 5}
    connection = await ctl.get_process(timeout=15)
    assert await aio.call_with(connection, TimeoutEcho, {"timeout": 6}) == {"timeout": 6}


@pytest.mark.asyncio
async def test_a_pool_call_cancelled_while_the_pool_holds_it_is_never_sent(
    tmp_path: Path,
) -> None:
    argv = [sys.executable, *WORKER_ARGV]
    flag = tmp_path / "flag"
    async with AsyncProcessPool.start(argv, size=1, max_per_worker=1, name="held") as pool:
        await pool.call(Echo, value="warm")
        blocker = asyncio.create_task(pool.call(WaitFor, path=str(flag)))
        await _until(lambda: pool.pool.stats()["workers"][0]["in_flight"] == 1, "busy")
        held = asyncio.create_task(pool.call(Echo, value="never"))
        await _until(lambda: pool.pool.stats()["queued"] == 1, "the request held")
        held.cancel()
        with pytest.raises(asyncio.CancelledError):
            await held
        assert (await pool.stats())["queued"] == 0
        flag.write_text("go")
        await blocker
        assert await pool.call(Echo, value="after") == {"value": "after"}
        assert (await pool.stats())["written"] == 3  # warm, WaitFor, after: not "never"


def test_an_async_pool_wraps_only_a_pool() -> None:
    for value in (None, 1, "pool", ProcessController):
        with pytest.raises(TypeError, match="pool must be a ProcessPool, not"):
            AsyncProcessPool(value)  # type: ignore[arg-type]


# A one-at-a-time child reads no input while a handler runs, so 1,500 requests of about
# 130 bytes fill its input pipe (64 KiB) behind one that waits for a file only the loop
# creates: a write that waited for room on the loop's thread would wait for ever.
FLOOD = 1500


@pytest.mark.asyncio
async def test_a_full_input_pipe_never_blocks_the_loop(
    juicectl_controller: ControllerFactory, tmp_path: Path
) -> None:
    ctl, flag, blocker = await _slot_taken(juicectl_controller, tmp_path, FLOOD + 10)
    calls = [asyncio.create_task(ctl.call(Echo, value=f"{n:0100}")) for n in range(FLOOD)]
    await _until(lambda: ctl.controller.stats()["in_flight"] == FLOOD + 1, "every request out")
    flag.write_text("go")
    answers = await asyncio.wait_for(asyncio.gather(*calls), 60)
    assert [answer["value"] for answer in answers] == [f"{n:0100}" for n in range(FLOOD)]
    await blocker


@pytest.mark.asyncio
async def test_a_full_input_pipe_never_blocks_the_loop_through_a_pool(tmp_path: Path) -> None:
    argv = [sys.executable, *WORKER_ARGV]
    flag = tmp_path / "flag"
    async with AsyncProcessPool.start(argv, size=1, max_per_worker=FLOOD + 10,
                                      max_in_flight=FLOOD + 10, name="flood") as pool:
        await pool.call(Echo, value="warm")
        blocker = asyncio.create_task(pool.call(WaitFor, path=str(flag)))
        await _until(lambda: pool.pool.stats()["workers"][0]["in_flight"] == 1, "busy")
        calls = [asyncio.create_task(pool.call(Echo, value=f"{n:0100}")) for n in range(FLOOD)]
        await _until(lambda: pool.pool.stats()["workers"][0]["in_flight"] == FLOOD + 1,
                     "every request out")
        flag.write_text("go")
        answers = await asyncio.wait_for(asyncio.gather(*calls), 60)
        assert [answer["value"] for answer in answers] == [f"{n:0100}" for n in range(FLOOD)]
        await blocker
