"""Controllers on real children: every controller a test starts is closed afterwards."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from juicectl import ProcessController, RestartPolicy
from tests.conftest import ROOT

# Small bounds keep the suite quick; the escalation itself is what is tested.
FAST = {"startup_timeout": 10.0, "stop_timeout": 2.0, "kill_timeout": 1.0}


@pytest.fixture
def make_controller() -> Iterator[Callable[..., ProcessController]]:
    """Start controllers (in the repository's root, small timeouts); all closed at teardown."""
    started: list[ProcessController] = []

    def make(argv: list[str], **options: Any) -> ProcessController:
        options = {**FAST, "cwd": str(ROOT), **options}
        options.setdefault("restart", RestartPolicy(mode="temporary"))
        controller = ProcessController.start(argv, **options)
        started.append(controller)
        return controller

    yield make
    for controller in started:
        controller.close(timeout=15)
