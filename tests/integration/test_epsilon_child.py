"""The controller drives the reference peer (an epsilon 0.8.0 / Twisted child) over stdio."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import pytest

from juicectl import ProcessController, ProcessUnavailable
from juicectl.juice import Command, RemoteJuiceError
from tests.conftest import ROOT
from tests.workers.commands import Echo

pytest.importorskip("epsilon.juice")
pytestmark = pytest.mark.interop

EPSILON_CHILD = [sys.executable, str(ROOT / "tests" / "peers" / "epsilon_child.py")]


class Nope(Command):
    """A command the reference child does not know."""


def test_start_calls_unknown_command_and_stop(
    make_controller: Callable[..., ProcessController],
) -> None:
    ctl = make_controller(EPSILON_CHILD, startup_timeout=20)
    conn = ctl.get_process().get(timeout=20)
    assert ctl.mode == "ready"
    for value in ["hi", "a\r\nb", "unicode \u00e9\u2603", ""]:
        assert conn.call(Echo, value=value).get(timeout=10) == {"value": value}
    futures = [conn.call(Echo, value=str(i)) for i in range(200)]
    assert [f.get(timeout=20)["value"] for f in futures] == [str(i) for i in range(200)]

    # The reference answers an unknown command with UNHANDLED, then quits.
    with pytest.raises(RemoteJuiceError) as info:
        conn.call(Nope).get(timeout=10)
    assert info.value.code == "UNHANDLED"
    deadline = time.monotonic() + 20
    while ctl.mode != "stopped" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert ctl.mode == "stopped"
    with pytest.raises(ProcessUnavailable):
        conn.call(Echo, value="gone").get(timeout=10)

    # A later get_process() gives a new child.
    new = ctl.get_process().get(timeout=20)
    assert new.pid != conn.pid
    assert new.call(Echo, value="again").get(timeout=10) == {"value": "again"}
    result = ctl.stop_process().get(timeout=20)
    assert result.how == "clean"
    assert result.reason is not None and result.reason.exit_status == 0
