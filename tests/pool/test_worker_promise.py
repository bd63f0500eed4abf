"""What the juicectl child runtime promises a pool: it says how many requests it runs at once,
and a one-at-a-time worker writes each answer before it starts the next request, so at most
one request is ever started and unanswered."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from juicectl.juice import Negotiate, request_bytes
from tests.child.conftest import Served, serving  # noqa: F401 - the fixture
from tests.workers.runtime import Block, Echo, TestWorker

Serving = Callable[..., Served]

pytestmark = pytest.mark.timeout(30)


def test_negotiate_says_one_at_a_time(serving: Serving) -> None:  # noqa: F811
    served = serving(TestWorker())
    served.peer.request(Negotiate, "a", versions=[1])
    assert served.peer.read_answer("a") == {"version": "1", "concurrency": "1"}


def test_negotiate_says_the_concurrency(serving: Serving) -> None:  # noqa: F811
    served = serving(TestWorker(), concurrency=3)
    served.peer.request(Negotiate, "a", versions=[1])
    assert served.peer.read_answer("a") == {"version": "1", "concurrency": "3"}


def test_each_answer_is_written_before_the_next_request_starts(serving: Serving) -> None:  # noqa: F811
    worker = TestWorker()
    served = serving(worker, concurrency=1)
    # Both requests arrive in one chunk: the echo's answer must be out while Block runs.
    served.peer.send(
        request_bytes(Echo, "1", Echo.make_arguments({"value": "first"}))
        + request_bytes(Block, "2", Block.make_arguments({}))
    )
    assert served.peer.read_answer("1", timeout=10) == {"value": "first"}
    worker.release.set()
    assert served.peer.read_answer("2", timeout=10) == {"released": "True"}


def test_a_bad_busy_poll_from_the_environment_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    from juicectl.child import run

    monkeypatch.setenv("JUICECTL_BUSY_POLL", "fast")
    with pytest.raises(ValueError, match="JUICECTL_BUSY_POLL='fast'"):
        run(TestWorker, exit_process=False)
