"""The real peer: Divmod epsilon 0.8.0 on Twisted, as the parent, drives our child.

``epsilon_parent.py`` runs in its own process (it owns a Twisted reactor) and reports each
step as a JSON line; this test checks the lines.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from .conftest import ROOT

pytest.importorskip("epsilon.juice")

pytestmark = pytest.mark.interop


@pytest.fixture(scope="module")
def steps() -> dict[str, dict[str, Any]]:
    script = ROOT / "tests" / "child" / "epsilon_parent.py"
    out = subprocess.run(
        [sys.executable, str(script)], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    lines = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    by_step = {line["step"]: line for line in lines}
    assert "failed" not in by_step, by_step["failed"]["error"] + out.stderr[-3000:]
    assert out.returncode == 0, out.stderr[-3000:]
    return by_step


def test_negotiate(steps: dict[str, dict[str, Any]]) -> None:
    assert steps["negotiate"]["version"] == 1


def test_values_with_crlf_and_unicode_round_trip(steps: dict[str, dict[str, Any]]) -> None:
    assert steps["echo"]["received"] == steps["echo"]["sent"]
    assert "a\r\nb" in steps["echo"]["sent"]


def test_200_pipelined_calls(steps: dict[str, dict[str, Any]]) -> None:
    assert steps["pipelined"] == {"step": "pipelined", "count": 200, "in_order": True}


def test_a_declared_error_reaches_the_reference_as_its_class(
    steps: dict[str, dict[str, Any]],
) -> None:
    assert steps["declared_error"]["type"] == "ValueError"
    assert steps["declared_error"]["description"] == "declared\r\nfailure"
    assert steps["after_error"]["value"] == "still serving"


def test_the_child_calls_the_reference_parent(steps: dict[str, dict[str, Any]]) -> None:
    assert steps["child_called_parent"]["value"] == 42


def test_shutdown_answers_then_the_child_exits_zero(steps: dict[str, dict[str, Any]]) -> None:
    assert steps["shutdown"]["answer"] == {}
    assert steps["exit"]["code"] == 0


def test_an_unknown_command_is_unhandled_then_the_child_exits_zero(
    steps: dict[str, dict[str, Any]],
) -> None:
    assert steps["unknown_command"] == {
        "step": "unknown_command",
        "type": "UnhandledRemoteJuiceError",
        "code": "UNHANDLED",
        "description": "Unhandled Remote System Exception ",
    }
    assert steps["exit_after_unhandled"]["code"] == 0
