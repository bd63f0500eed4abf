"""juicectl.aio on real children: answers arrive without blocking the loop, and cancelling
the awaiting task leaves the connection, the controller and the loop in good order."""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pykka
import pytest

from juicectl import aio
from juicectl.aio import AsyncProcessController
from juicectl.exceptions import ArgumentError, RequestTimeout
from juicectl.testing import ControllerFactory
from tests.aio.workers import AioWorker, WaitFor
from tests.workers.commands import Echo, Fail, Oops, Sleep

pytestmark = pytest.mark.asyncio


@pytest.fixture
def loop_errors() -> Iterator[list[dict[str, Any]]]:
    """What the running loop's exception handler received (e.g. "Future exception was never
    retrieved"); the test sets the handler on its loop with ``watch_loop``."""
    yield []


def watch_loop(errors: list[dict[str, Any]]) -> None:
    asyncio.get_running_loop().set_exception_handler(lambda _loop, context: errors.append(context))


async def settle_garbage() -> None:
    """Let pending callbacks run and collect dropped futures, so that asyncio reports any
    exception that nobody retrieved."""
    for _ in range(3):
        await asyncio.sleep(0.01)
        gc.collect()


async def eventually(predicate: Any, what: str, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"never happened: {what}")
        await asyncio.sleep(0.01)


async def test_get_process_call_and_stop(juicectl_controller: ControllerFactory) -> None:
    ctl = juicectl_controller(AioWorker)
    connection = await aio.get_process(ctl, timeout=15)
    assert await aio.call(connection, Echo, value="hi") == {"value": "hi"}
    assert ctl.mode == "ready"
    result = await aio.stop_process(ctl, timeout=15)
    assert result.how == "clean"
    assert ctl.mode == "stopped"


async def test_the_loop_keeps_running_while_a_request_is_out(
    juicectl_controller: ControllerFactory,
) -> None:
    ctl = juicectl_controller(AioWorker)
    connection = await aio.get_process(ctl, timeout=15)
    ticks = 0
    stop = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0.01)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    before = ticks
    await aio.call(connection, Sleep, seconds=0.3)
    during = ticks - before
    stop.set()
    await task
    # A blocked loop would have let the ticker run at most once while the child slept.
    assert during >= 2


async def test_the_answer_can_depend_on_the_loop(
    juicectl_controller: ControllerFactory, tmp_path: Path
) -> None:
    # The child answers only once a file exists, and only a task on this loop creates it:
    # if awaiting blocked the loop this would never finish.
    ctl = juicectl_controller(AioWorker)
    connection = await aio.get_process(ctl, timeout=15)
    flag = tmp_path / "flag"

    async def create_flag() -> None:
        await asyncio.sleep(0.05)
        flag.write_text("go")

    creator = asyncio.create_task(create_flag())
    answer = await asyncio.wait_for(aio.call(connection, WaitFor, path=str(flag)), 30)
    await creator
    assert answer["waited"] >= 0


async def test_errors_arrive_as_exceptions(juicectl_controller: ControllerFactory) -> None:
    ctl = juicectl_controller(AioWorker)
    connection = await aio.get_process(ctl, timeout=15)
    with pytest.raises(Oops):
        await aio.call(connection, Fail)
    with pytest.raises(RequestTimeout):
        await aio.call(connection, Sleep, seconds=0.5, timeout=0.05)
    with pytest.raises(ArgumentError):
        await aio.call(connection, Echo, nonsense="x")
    assert await aio.call(connection, Echo, value="still here") == {"value": "still here"}


async def test_cancelling_a_call_drops_its_answer(
    juicectl_controller: ControllerFactory, loop_errors: list[dict[str, Any]]
) -> None:
    watch_loop(loop_errors)
    ctl = juicectl_controller(AioWorker)
    connection = await aio.get_process(ctl, timeout=15)
    answered = connection.stats()["answered"]
    task = asyncio.create_task(aio.call(connection, Sleep, seconds=0.3))
    await eventually(lambda: connection.in_flight == 1, "the request went out")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The request itself goes on: the child answers, and the answer is dropped.
    await eventually(lambda: connection.stats()["answered"] == answered + 1, "the answer came")
    assert await aio.call(connection, Echo, value="after") == {"value": "after"}
    await settle_garbage()
    assert loop_errors == []


async def test_cancelling_a_call_that_then_fails_logs_nothing(
    juicectl_controller: ControllerFactory, loop_errors: list[dict[str, Any]]
) -> None:
    watch_loop(loop_errors)
    ctl = juicectl_controller(AioWorker)
    connection = await aio.get_process(ctl, timeout=15)
    failed = connection.stats()["failed"]
    task = asyncio.create_task(aio.call(connection, Sleep, seconds=1.0, timeout=0.2))
    await eventually(lambda: connection.in_flight == 1, "the request went out")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await eventually(lambda: connection.stats()["failed"] == failed + 1, "the request timed out")
    await settle_garbage()
    assert loop_errors == []


async def test_cancelling_get_process_leaves_the_controller_working(
    juicectl_controller: ControllerFactory, loop_errors: list[dict[str, Any]]
) -> None:
    watch_loop(loop_errors)
    ctl = juicectl_controller(AioWorker)
    task = asyncio.create_task(aio.get_process(ctl))
    await eventually(lambda: ctl.mode != "stopped", "the launch began")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    connection = await aio.get_process(ctl, timeout=15)
    assert await aio.call(connection, Echo, value="x") == {"value": "x"}
    await settle_garbage()
    assert loop_errors == []


async def test_every_cancelled_caller_ends_even_as_its_wait_completes(
    juicectl_controller: ControllerFactory,
) -> None:
    # Callers in a loop, each of them waiting with a timeout (AsyncProcessController.call
    # waits for the connection so) and catching Exception, as callers do; then every one is
    # cancelled. A cancellation that comes as the wait completes must not be dropped: the
    # task would go on calling for ever (asyncio.wait_for on Python 3.11 drops it).
    ctl = AsyncProcessController(juicectl_controller(AioWorker))
    await ctl.get_process(timeout=15)

    async def caller(n: int) -> None:
        while True:
            try:
                await ctl.call(Echo, value=str(n))
            except Exception:
                await asyncio.sleep(0.001)

    for _ in range(5):
        tasks = [asyncio.create_task(caller(n)) for n in range(64)]
        await asyncio.sleep(0.1)
        for task in tasks:
            task.cancel()
        _, running = await asyncio.wait(tasks, timeout=5)
        for task in running:
            task.cancel()  # so that the test itself can end
        assert not running, f"{len(running)} of 64 cancelled callers ran on"


async def test_get_process_timeout(juicectl_controller: ControllerFactory) -> None:
    # A "child" that never answers the readiness probe (and ends when its input closes).
    ctl = juicectl_controller(
        [sys.executable, "-c", "import sys; sys.stdin.buffer.read()"],
        startup_timeout=1.0,
        stop_timeout=0.5,
        kill_timeout=0.5,
    )
    with pytest.raises(TimeoutError):
        await aio.get_process(ctl, timeout=0.2)
    assert ctl.mode == "starting"


async def test_async_controller(juicectl_controller: ControllerFactory) -> None:
    async with AsyncProcessController(juicectl_controller(AioWorker)) as ctl:
        assert await ctl.mode() == "stopped"
        assert await ctl.call(Echo, value="hi") == {"value": "hi"}
        assert await ctl.mode() == "ready"
        assert (await ctl.stats())["generation"] == 1
        assert (await ctl.stop_process()).how == "clean"
        assert await ctl.call(Echo, value="again") == {"value": "again"}
    assert await ctl.mode() == "stopped"
    assert ctl.controller.stats().get("closed") is True


async def test_wrap_future_of_other_kinds() -> None:
    plain: pykka.ThreadingFuture[int] = pykka.ThreadingFuture()
    threading.Timer(0.05, plain.set, args=(42,)).start()
    assert await aio.wrap_future(plain) == 42

    failing: pykka.ThreadingFuture[int] = pykka.ThreadingFuture()
    error = ValueError("no")
    threading.Timer(0.05, failing.set_exception, args=((ValueError, error, None),)).start()
    with pytest.raises(ValueError, match="no"):
        await aio.wrap_future(failing)

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        assert await aio.wrap_future(pool.submit(lambda: "done")) == "done"


async def test_wrap_future_already_settled() -> None:
    from juicectl._future import ReplyFuture

    future: ReplyFuture[str] = ReplyFuture()
    future.try_set("ready")
    assert await aio.wrap_future(future) == "ready"


async def test_wrap_a_mapped_future(juicectl_controller: ControllerFactory) -> None:
    # map() makes a future whose value is computed in get(): it never runs callbacks.
    ctl = juicectl_controller(AioWorker)
    pid = await asyncio.wait_for(aio.wrap_future(ctl.get_process().map(lambda c: c.pid)), 30)
    assert pid == ctl.stats()["pid"]
