"""``start_daemon``: a helper thread, or None when Python will not start one; the actor
threads ``close()`` joins."""

from __future__ import annotations

import threading

import pytest

from juicectl._threads import join_actor_threads, note_actor_thread, start_daemon


def test_it_runs_the_target_on_a_daemon_thread_of_that_name() -> None:
    ran = threading.Event()
    seen: list[tuple[str, bool, tuple[int, str]]] = []

    def target(*args: object) -> None:
        thread = threading.current_thread()
        seen.append((thread.name, thread.daemon, args))  # type: ignore[arg-type]
        ran.set()

    thread = start_daemon(target, "juicectl-test-helper", 1, "two")
    assert isinstance(thread, threading.Thread)
    assert ran.wait(10)
    thread.join(10)
    assert seen == [("juicectl-test-helper", True, (1, "two"))]


def test_a_refused_thread_is_none_and_runs_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't create new thread at interpreter shutdown")

    monkeypatch.setattr(threading.Thread, "start", refuse)
    ran: list[object] = []
    assert start_daemon(ran.append, "juicectl-test-helper", "x") is None
    assert ran == []


def test_an_actors_noted_thread_is_joined() -> None:
    release = threading.Event()
    ended: list[str] = []

    def actor_loop() -> None:
        note_actor_thread("urn:test:joined")
        release.wait(10)
        ended.append("ended")

    thread = start_daemon(actor_loop, "juicectl-test-actor")
    assert thread is not None
    threading.Timer(0.05, release.set).start()
    join_actor_threads(("urn:test:joined", "urn:test:never-noted"), 10)
    assert ended == ["ended"] and not thread.is_alive()


def test_joining_its_own_thread_returns_at_once() -> None:
    note_actor_thread("urn:test:self")
    join_actor_threads(("urn:test:self",), 10)  # Thread.join would raise here
