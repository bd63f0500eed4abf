"""``start_daemon``: a helper thread, or False when Python will not start one."""

from __future__ import annotations

import threading

import pytest

from juicectl._threads import start_daemon


def test_it_runs_the_target_on_a_daemon_thread_of_that_name() -> None:
    ran = threading.Event()
    seen: list[tuple[str, bool, tuple[int, str]]] = []

    def target(*args: object) -> None:
        thread = threading.current_thread()
        seen.append((thread.name, thread.daemon, args))  # type: ignore[arg-type]
        ran.set()

    assert start_daemon(target, "juicectl-test-helper", 1, "two") is True
    assert ran.wait(10)
    assert seen == [("juicectl-test-helper", True, (1, "two"))]


def test_a_refused_thread_is_false_and_runs_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't create new thread at interpreter shutdown")

    monkeypatch.setattr(threading.Thread, "start", refuse)
    ran: list[object] = []
    assert start_daemon(ran.append, "juicectl-test-helper", "x") is False
    assert ran == []
