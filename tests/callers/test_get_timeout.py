"""A request's ``get(timeout=...)``: a bad timeout is named and changes nothing; one that
runs out says the timeout the caller gave, wherever the wait was spent (reading its own
answer, or held by a pool)."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pykka
import pytest

from juicectl import ProcessController, ProcessPool
from tests.workers.commands import Echo, Sleep

WORKER = [sys.executable, "-m", "juicectl.child", "tests.workers.echo:EchoWorker"]

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def controller() -> Iterator[ProcessController]:
    with ProcessController.start(WORKER, name="get-timeout") as controller:
        yield controller


def test_a_timeout_that_runs_out_names_the_callers_timeout(
    controller: ProcessController,
) -> None:
    connection = controller.get_process().get(timeout=20)
    slow = connection.call(Sleep, seconds=1.0)
    with pytest.raises(pykka.Timeout, match=r"^0\.2 seconds$"):
        slow.get(timeout=0.2)  # this caller read for 0.2 s; 0.0 was left
    assert slow.get(timeout=20) == {"slept": 1.0}


@pytest.mark.parametrize(("timeout", "error"), [("x", TypeError), (-1, ValueError)])
def test_a_bad_timeout_leaves_the_reading_to_the_next_caller(
    controller: ProcessController, timeout: object, error: type,
) -> None:
    connection = controller.get_process().get(timeout=20)
    future = connection.call(Sleep, seconds=0.2)
    with pytest.raises(error, match="timeout must be"):
        future.get(timeout=timeout)  # type: ignore[arg-type]
    # Nothing was taken: this caller, and then another, read their answers.
    assert future.get(timeout=20) == {"slept": 0.2}
    assert connection.call(Echo, value="next").get(timeout=20) == {"value": "next"}


def test_a_pool_request_held_and_timed_out_names_the_callers_timeout() -> None:
    with ProcessPool.start(WORKER, size=1, max_per_worker=1, name="get-timeout") as pool:
        busy = pool.call(Sleep, seconds=1.0)
        held = pool.call(Echo, value="held")  # the one worker is full: the pool holds it
        with pytest.raises(pykka.Timeout, match=r"^0\.2 seconds$"):
            held.get(timeout=0.2)
        with pytest.raises(TypeError, match="timeout must be a number of seconds"):
            held.get(timeout="x")  # type: ignore[arg-type]
        assert busy.get(timeout=20) == {"slept": 1.0}
        assert held.get(timeout=20) == {"value": "held"}
