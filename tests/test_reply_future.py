"""ReplyFuture keeps pykka's future contract on its lighter machinery."""

from __future__ import annotations

import queue
import threading

import pykka
import pytest

from juicectl._future import ReplyFuture, has_get_hook
from tests.main_thread import Interrupted, interrupted_in


def test_value_is_returned_every_time() -> None:
    future: ReplyFuture[int] = ReplyFuture()
    assert not future.done()
    assert future.try_set(3)
    assert future.done()
    assert future.get() == 3
    assert future.get(timeout=0) == 3


def test_get_times_out_with_pykka_timeout() -> None:
    future: ReplyFuture[int] = ReplyFuture()
    with pytest.raises(pykka.Timeout):
        future.get(timeout=0)
    with pytest.raises(pykka.Timeout):
        future.get(timeout=0.01)
    future.try_set(1)
    assert future.get(timeout=0) == 1


def test_first_outcome_wins() -> None:
    future: ReplyFuture[int] = ReplyFuture()
    assert future.try_set_exception(ValueError("first"))
    assert not future.try_set(2)
    assert not future.try_set_exception(KeyError("second"))
    with pytest.raises(queue.Full):
        future.set(2)
    with pytest.raises(ValueError, match="first"):
        future.get()
    assert isinstance(future.exception(), ValueError)


def test_exception_traceback_does_not_grow_with_every_get() -> None:
    future: ReplyFuture[int] = ReplyFuture()
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        future.set_exception()
    depths = []
    for _ in range(3):
        with pytest.raises(RuntimeError) as info:
            future.get()
        depths.append(len(info.traceback))
    assert depths[0] == depths[1] == depths[2]


def test_waiters_on_other_threads_are_all_released() -> None:
    future: ReplyFuture[str] = ReplyFuture()
    results: list[str] = []
    waiters = [threading.Thread(target=lambda: results.append(future.get(timeout=10)))
               for _ in range(4)]
    for waiter in waiters:
        waiter.start()
    future.try_set("done")
    for waiter in waiters:
        waiter.join(10)
    assert results == ["done"] * 4


def test_callbacks_run_once_settled_or_at_once() -> None:
    future: ReplyFuture[int] = ReplyFuture()
    seen: list[int] = []
    future.add_done_callback(lambda f: seen.append(f.get()))
    assert seen == []
    future.try_set(5)
    future.add_done_callback(lambda f: seen.append(f.get() + 1))
    assert seen == [5, 6]


def test_pykka_combinators_use_get_hooks() -> None:
    first: ReplyFuture[int] = ReplyFuture()
    second: ReplyFuture[int] = ReplyFuture()
    doubled = first.map(lambda value: value * 2)
    joined = first.join(second)
    first.try_set(2)
    second.try_set(3)
    assert doubled.get(timeout=1) == 4
    assert joined.get(timeout=1) == [2, 3]
    assert pykka.get_all([first, second], timeout=1) == [2, 3]
    with pytest.raises(queue.Full):
        doubled.set(1)


def test_a_callback_that_raises_is_logged_and_the_others_still_run() -> None:
    from structlog.testing import capture_logs

    future: ReplyFuture[int] = ReplyFuture()
    seen: list[int] = []

    def broken(_: ReplyFuture[int]) -> None:
        raise RuntimeError("callback bug")

    future.add_done_callback(broken)
    future.add_done_callback(lambda f: seen.append(f.get()))
    with capture_logs() as logs:
        assert future.try_set(7)
    assert seen == [7]
    assert [entry["event"] for entry in logs] == ["future_callback_failed"]


def test_a_reply_future_is_a_pykka_future_set_up_by_its_base() -> None:
    future: ReplyFuture[int] = ReplyFuture()
    assert isinstance(future, pykka.Future)
    # pykka.Future.__init__ ran: its own record of a get hook exists, and is empty.
    assert future._get_hook is None
    assert not future.has_get_hook()


def test_has_get_hook_tells_futures_that_compute_their_value_in_get() -> None:
    ours: ReplyFuture[int] = ReplyFuture()
    theirs: pykka.ThreadingFuture[int] = pykka.ThreadingFuture()
    assert not has_get_hook(ours)
    assert not has_get_hook(theirs)
    # For a pykka future, has_get_hook reads pykka's private Future._get_hook: checked here
    # against the installed pykka, so that a pykka that renames it fails this test.
    assert has_get_hook(ours.map(lambda value: value))
    assert has_get_hook(theirs.map(lambda value: value))
    assert has_get_hook(theirs.join(theirs))


def test_a_get_hook_runs_once_through_pykkas_own_get() -> None:
    first: ReplyFuture[int] = ReplyFuture()
    calls: list[int] = []

    def double(value: int) -> int:
        calls.append(value)
        return value * 2

    doubled = first.map(double)
    assert isinstance(doubled, ReplyFuture) and doubled.has_get_hook()
    with pytest.raises(pykka.Timeout):
        doubled.get(timeout=0)
    first.try_set(21)
    assert doubled.get(timeout=1) == 42
    assert doubled.get(timeout=1) == 42
    assert calls == [21]  # pykka.Future.get keeps the hook's result
    assert not doubled.done()  # a hooked future is never settled itself
    with pytest.raises(queue.Full):
        doubled.try_set_exception(RuntimeError("never"))


def test_a_settled_future_takes_no_get_hook() -> None:
    future: ReplyFuture[int] = ReplyFuture()
    future.try_set(1)
    with pytest.raises(queue.Full):
        future.set_get_hook(lambda timeout: 2)
    assert not future.has_get_hook()
    assert future.get(timeout=0) == 1


@pytest.mark.parametrize("timeout", [None, 3600.0])
def test_ctrl_c_raises_in_a_get_on_the_main_thread(timeout: float | None) -> None:
    future: ReplyFuture[int] = ReplyFuture()
    with pytest.raises(Interrupted), interrupted_in("acquire", lambda: future.set(1)) as seen:
        future.get(timeout=timeout)
    assert seen.raised_before_release
    future.try_set(2)
    assert future.get(timeout=0) == 2


@pytest.mark.parametrize(
    ("timeout", "error", "message"),
    [("1", TypeError, "timeout must be a number of seconds or None, not '1'"),
     (True, TypeError, "timeout must be a number of seconds or None, not True"),
     (-1, ValueError, "timeout must be a finite number of seconds, 0 or more, not -1"),
     (float("inf"), ValueError, "not inf"),
     (float("nan"), ValueError, "not nan")],
)
def test_a_bad_get_timeout_is_named(timeout: object, error: type, message: str) -> None:
    future: ReplyFuture[int] = ReplyFuture()
    with pytest.raises(error, match=message):
        future.get(timeout=timeout)  # type: ignore[arg-type]
    future.try_set(1)
    with pytest.raises(error, match=message):
        future.get(timeout=timeout)  # type: ignore[arg-type]
    assert future.get(timeout=0) == 1
