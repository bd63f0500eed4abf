"""Fixtures for the child runtime: a worker served in a thread over a pipe pair, and real
child processes started with ``python -m juicectl.child``. Both clean up after a failing test
too: pipes closed, threads joined, processes killed and reaped.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from juicectl.child import serve

from .peer import Peer

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Served:
    """A worker served by ``serve()`` in a thread; ``peer`` plays the parent."""

    worker: Any
    peer: Peer
    thread: threading.Thread
    errors: list[BaseException] = field(default_factory=list)

    def join(self, timeout: float = 10.0) -> None:
        """Wait for ``serve()`` to return; fail if it does not."""
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "serve() did not return"


@pytest.fixture
def serving() -> Iterator[Callable[..., Served]]:
    started: list[tuple[Served, list[int]]] = []

    def start(worker: Any, **kwargs: Any) -> Served:
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        errors: list[BaseException] = []

        def target() -> None:
            try:
                serve(worker, to_child_r, from_child_w, **kwargs)
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=target, name="serve", daemon=True)
        served = Served(worker, Peer(to_child_w, from_child_r), thread, errors)
        started.append((served, [to_child_r, from_child_r]))
        thread.start()
        return served

    yield start
    for served, fds in started:
        release = getattr(served.worker, "release_all", None)
        if release is not None:
            release()
        served.peer.close_input()
        served.thread.join(10)
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)


@dataclass
class Child:
    """A real child process; ``peer`` plays the parent over its stdin and stdout."""

    process: subprocess.Popen[bytes]
    peer: Peer
    stderr_path: Path

    def wait(self, timeout: float = 10.0) -> int:
        return self.process.wait(timeout)

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def close_input(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.peer.write_fd = None


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., Child]]:
    children: list[Child] = []

    def start(worker: str, *args: str) -> Child:
        stderr_path = tmp_path / f"stderr-{len(children)}.txt"
        with stderr_path.open("wb") as stderr:
            process = subprocess.Popen(
                [sys.executable, "-m", "juicectl.child", worker, *args],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                cwd=ROOT,
            )
        assert process.stdin is not None and process.stdout is not None
        child = Child(process, Peer(process.stdin.fileno(), process.stdout.fileno()), stderr_path)
        children.append(child)
        return child

    yield start
    for child in children:
        if child.process.poll() is None:
            child.process.kill()
        child.process.wait(10)
        for stream in (child.process.stdin, child.process.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
