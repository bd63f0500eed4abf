"""A process factory must hand back its process actor: anything else fails the start at once,
as a factory that raises does (nobody would ever report that child otherwise)."""

from __future__ import annotations

from typing import Any

import pykka
import pytest

from juicectl import ProcessController, RestartPolicy
from juicectl.exceptions import ProcessUnavailable
from juicectl.policy import LaunchSpec

WAIT = 10.0


def returns(value: Any) -> Any:
    def factory(controller: pykka.ActorRef[Any], generation: int, spec: LaunchSpec) -> Any:
        return value

    return factory


@pytest.mark.parametrize(
    ("value", "named"), [(None, "None"), ("ref", "'ref'")], ids=["None", "a str"]
)
def test_a_factory_that_returns_no_actor_ref_fails_the_start(value: Any, named: str) -> None:
    ctl = ProcessController.start(
        ["fake-worker"], process_factory=returns(value), restart=RestartPolicy(mode="temporary")
    )
    try:
        with pytest.raises(
            ProcessUnavailable,
            match=rf"cannot launch \['fake-worker'\]: process_factory returned {named}, "
            "not an ActorRef",
        ):
            ctl.get_process().get(timeout=WAIT)
        assert ctl.mode == "stopped"
        assert ctl.stats()["last_exit"]["how"] == "launch_failed"
    finally:
        # A close that had to wait for a process actor that never existed would return None.
        assert ctl.close(timeout=WAIT) is not None
