"""Fixtures of the remote tests: a real OpenSSH server on loopback (see ``harness.py``).

Where sshd is missing the ssh tests skip, with the reason in the summary; in CI (``CI=true``,
where ``.ci/run`` installs ``openssh-server``) a missing server fails them instead.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from juicectl import ProcessController
from tests.remote.harness import Harness, Sshd, unavailable
from tests.supervision.conftest import wait_for

#: Small stop steps: each escalation step takes a fraction of a second.
FAST: dict[str, Any] = {"startup_timeout": 20.0, "stop_timeout": 1.0, "kill_timeout": 1.0}
#: Bound on every wait for the remote side to be empty (a loaded machine is slow).
GONE_WITHIN = 20.0


@pytest.fixture(scope="session")
def harness() -> Iterator[Harness]:
    """The user, keys and readable code, once per run (skipped, or failed in CI, without
    sshd)."""
    reason = unavailable()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the ssh tests: {reason}")
        pytest.skip(reason)
    built = Harness.create()
    yield built
    built.close()


@pytest.fixture(scope="session")
def sshd(harness: Harness) -> Sshd:
    """One server for the whole run (host "a")."""
    return harness.sshd("a")


@pytest.fixture
def mark(harness: Harness) -> Iterator[str]:
    """This test's marker; at teardown nothing that carries it may still run remotely."""
    value = harness.new_mark()
    yield value
    try:
        wait_for(lambda: not harness.marked(value), GONE_WITHIN, "the remote side empty")
    finally:
        harness.kill_marked(value)


@pytest.fixture
def remote(
    harness: Harness, sshd: Sshd, mark: str
) -> Iterator[Callable[..., ProcessController]]:
    """Start controllers of the test worker on ``sshd`` (or ``port=``), closed at teardown."""
    started: list[ProcessController] = []

    def make(argv: list[str] | None = None, *, port: int | None = None,
             launcher: Any = None, **options: Any) -> ProcessController:
        launcher_options = options.pop("ssh", {})
        if launcher is None:
            launcher = harness.launcher(port or sshd.port, **launcher_options)
        options = {**FAST, "env": harness.worker_env(mark), **options}
        controller = ProcessController.start(
            argv or harness.worker_argv(), launcher=launcher, **options
        )
        started.append(controller)
        return controller

    yield make
    for controller in started:
        controller.close(timeout=30)


def remote_gone(harness: Harness, mark: str) -> None:
    """Wait (bounded) until nothing that carries ``mark`` runs on the remote side."""
    wait_for(lambda: not harness.marked(mark), GONE_WITHIN, "no remote process left")
