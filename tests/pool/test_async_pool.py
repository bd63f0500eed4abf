"""The asyncio form of a pool: answers handed to the loop, a killed worker's requests too."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from juicectl import ProcessUnavailable
from juicectl.aio import AsyncProcessPool

from .conftest import QUICK, WORKER
from .workers import Echo, Pid, Slow

pytestmark = pytest.mark.timeout(60)


@pytest.mark.asyncio
async def test_gather_through_a_pool() -> None:
    async with AsyncProcessPool.start(WORKER, size=2, restart=QUICK) as pool:
        values = [str(i) for i in range(200)]
        answers = await asyncio.wait_for(
            asyncio.gather(*(pool.call(Echo, value=v) for v in values)), 30
        )
        assert [a["value"] for a in answers] == values
        stats = await pool.stats()
        assert stats["written"] == 200


@pytest.mark.asyncio
async def test_awaited_requests_survive_a_killed_worker() -> None:
    async with AsyncProcessPool.start(WORKER, size=2, restart=QUICK) as pool:
        pids = {(await pool.call(Pid))["pid"] for _ in range(20)}
        while len(pids) < 2:
            pids.add((await pool.call(Slow, seconds=0.05, n=0))["pid"])
        tasks = [asyncio.ensure_future(pool.call(Slow, seconds=0.2, n=i)) for i in range(8)]
        await asyncio.sleep(0.1)
        os.kill(min(pids), signal.SIGKILL)
        results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30)
        failed = [r for r in results if isinstance(r, ProcessUnavailable)]
        assert len(failed) <= 1
        assert len([r for r in results if isinstance(r, dict)]) == 8 - len(failed)


@pytest.mark.asyncio
async def test_a_bad_close_timeout_is_named_and_the_pool_stays_open() -> None:
    pool = AsyncProcessPool.start(WORKER, size=1, restart=QUICK)
    try:
        with pytest.raises(ValueError, match="timeout must be > 0 seconds or None, not -1"):
            await pool.close(timeout=-1)
        with pytest.raises(TypeError, match="timeout must be a number of seconds or None"):
            pool.pool.close(timeout="x")  # type: ignore[arg-type]
        assert await pool.call(Echo, value="still") == {"value": "still"}
    finally:
        await pool.close()
