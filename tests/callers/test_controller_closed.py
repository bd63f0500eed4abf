"""``ControllerClosed`` is permanent: a retry loop on ``ProcessUnavailable`` stops at once.

The docs' retry loops catch ``ProcessUnavailable`` (the transient failure) and try again. On a
closed controller that would spin forever if ``ControllerClosed`` were a ``ProcessUnavailable``:
here the loop runs once and the error reaches the caller.
"""

from __future__ import annotations

import sys
from typing import Any

import pytest

from juicectl import ControllerClosed, JuicectlError, ProcessController, ProcessUnavailable
from juicectl.testing import FakeController, ScriptedChild
from tests.workers.commands import Echo

WORKER = [sys.executable, "-m", "juicectl.child", "tests.workers.echo:EchoWorker"]


def shout(controller: Any, text: str, attempts: int, tries: list[int]) -> str:
    """The retry loop of docs/testing.md, counting its attempts."""
    for attempt in range(attempts):
        tries.append(attempt)
        try:
            answer: str = controller.call(Echo, value=text.upper(), timeout=5)["value"]
            return answer
        except ProcessUnavailable:
            if attempt == attempts - 1:
                raise
    raise AssertionError("not reached")


def test_controller_closed_is_not_transient() -> None:
    assert issubclass(ControllerClosed, JuicectlError)
    assert not issubclass(ControllerClosed, ProcessUnavailable)


def test_a_retry_loop_stops_at_once_on_a_closed_controller() -> None:
    ctl = ProcessController.start(WORKER, name="closed")
    assert shout(ctl, "hi", attempts=1000, tries=[]) == "HI"
    ctl.close()
    tries: list[int] = []
    with pytest.raises(ControllerClosed, match="closed"):
        shout(ctl, "again", attempts=1000, tries=tries)
    assert tries == [0]
    with pytest.raises(ControllerClosed):
        ctl.get_process().get(timeout=5)


def test_the_fake_controller_agrees() -> None:
    ctl = FakeController(ScriptedChild({Echo: lambda value: {"value": value}}))
    assert shout(ctl, "hi", attempts=1000, tries=[]) == "HI"
    ctl.close()
    tries: list[int] = []
    with pytest.raises(ControllerClosed):
        shout(ctl, "again", attempts=1000, tries=tries)
    assert tries == [0]


@pytest.mark.parametrize(
    ("timeout", "error", "message"),
    [(-1, ValueError, "timeout must be > 0 seconds or None, not -1"),
     (0, ValueError, "timeout must be > 0 seconds"),
     ("1", TypeError, "timeout must be a number of seconds or None, not '1'")],
)
def test_a_bad_close_timeout_is_named_and_the_controller_stays_open(
    timeout: object, error: type, message: str,
) -> None:
    controller = ProcessController.start(WORKER)
    try:
        assert controller.call(Echo, value="a", timeout=20) == {"value": "a"}
        with pytest.raises(error, match=message):
            controller.close(timeout=timeout)  # type: ignore[arg-type]
        assert controller.call(Echo, value="b", timeout=20) == {"value": "b"}
    finally:
        result = controller.close()
    assert result is not None and result.how == "clean"
