"""The runtime as a real child: ``python -m juicectl.child tests.workers.runtime:...``, driven with
raw codec bytes over its stdin and stdout (no controller needed)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from juicectl.juice import (
    UNHANDLED_CODE,
    UNHANDLED_DESCRIPTION,
    Answer,
    Box,
    ErrorAnswer,
    Negotiate,
    Request,
    Shutdown,
    classify,
)
from tests.workers.runtime import (
    AskParent,
    Block,
    Crash,
    Double,
    Echo,
    Exit,
    Fail,
    Modules,
    Noisy,
    Release,
)

from .conftest import ROOT, Child

Spawn = Callable[..., Child]

WORKER = "tests.workers.runtime:TestWorker"


@pytest.mark.parametrize("args", [(), ("--busy-poll", "0"), ("--busy-poll", "0.01")])
def test_echo_and_negotiate(spawn: Spawn, args: tuple[str, ...]) -> None:
    child = spawn(WORKER, *args)
    child.peer.request(Negotiate, "1", versions=[1])
    child.peer.request(Echo, "2", value="a\r\nb ✓")
    # The juicectl runtime says how many requests it runs at once, beside the version.
    assert child.peer.read_answer("1") == {"version": "1", "concurrency": "1"}
    assert child.peer.read_answer("2") == {"value": "a\r\nb ✓"}


def test_shutdown_answers_then_exits_zero(spawn: Spawn) -> None:
    child = spawn(WORKER)
    child.peer.request(Shutdown, "s")
    assert child.peer.read_to_eof() == [{"_answer": "s"}]
    assert child.wait() == 0


def test_end_of_stdin_exits_zero_after_answering(spawn: Spawn) -> None:
    child = spawn(WORKER)
    child.peer.request(Echo, "1", value="last words")
    child.close_input()
    assert child.peer.read_to_eof() == [{"value": "last words", "_answer": "1"}]
    assert child.wait() == 0


def test_a_declared_error_keeps_the_child_serving(spawn: Spawn) -> None:
    child = spawn(WORKER)
    child.peer.request(Fail, "1", message="nope")
    child.peer.request(Echo, "2", value="alive")
    assert child.peer.read() == ErrorAnswer("1", "BAD_VALUE", "nope")
    assert child.peer.read_answer("2") == {"value": "alive"}
    assert child.process.poll() is None


def test_an_unhandled_error_answers_then_exits_zero(spawn: Spawn) -> None:
    child = spawn(WORKER)
    child.peer.request(Crash, "fe")
    assert [classify(box) for box in child.peer.read_to_eof()] == [
        ErrorAnswer("fe", UNHANDLED_CODE, UNHANDLED_DESCRIPTION)
    ]
    assert child.wait() == 0
    # Logged through a stderr handler in logging's basic format: logging, imported only for
    # the runtime's first log line, is set up as it was when it was imported at the start.
    logged = child.stderr()
    assert "ERROR:juicectl.child:juice_handler_failed: Crash (the connection closes)" in logged
    assert "RuntimeError: this handler is broken" in logged


def test_an_unknown_command_answers_unhandled_then_exits_zero(spawn: Spawn) -> None:
    child = spawn(WORKER)
    child.peer.send(b"-Command: Nope\r\n-Ask: fd\r\n\r\n")
    assert child.peer.read_to_eof() == [
        {"_error": "fd", "_error_code": "UNHANDLED", "_error_description": UNHANDLED_DESCRIPTION}
    ]
    assert child.wait() == 0


def test_bad_bytes_exit_one(spawn: Spawn) -> None:
    child = spawn(WORKER)
    child.peer.send(b"this is not juice\r\n\r\n")
    assert child.peer.read_to_eof() == []
    assert child.wait() == 1
    assert "juice_protocol_error" in child.stderr()


def test_stray_output_at_import_and_in_handlers_goes_to_stderr(spawn: Spawn) -> None:
    child = spawn("tests.child.noisy_worker:NoisyWorker")
    child.peer.request(Noisy, "1", value="first")
    child.peer.request(Echo, "2", value="unknown here")  # ends it: proves the stream is clean
    assert child.peer.read_answer("1") == {"value": "first"}
    message = child.peer.read()
    assert isinstance(message, ErrorAnswer) and message.code == UNHANDLED_CODE
    assert child.peer.read_to_eof() == []
    assert child.wait() == 0
    stderr = child.stderr()
    for when in ("import", "init", "handler first"):
        for route in ("print", "sys.stdout", "sys.__stdout__", "fd 1", "logging", "subprocess"):
            assert f"noise: {route} at {when}" in stderr, (route, when, stderr)
        # structlog, left unconfigured by the worker: its default renderer quotes spaces.
        assert f"at={when!r}" in stderr or f"at={when}" in stderr
        assert f"noise: stdin gives '' at {when}" in stderr


def test_concurrency_answers_a_fast_command_while_a_slow_one_runs(spawn: Spawn) -> None:
    child = spawn(WORKER, "--concurrency", "2")
    child.peer.request(Block, "1")
    child.peer.request(Echo, "2", value="fast")
    assert child.peer.read_answer("2") == {"value": "fast"}
    child.peer.request(Release, "3")
    assert {child.peer.read().tag, child.peer.read().tag} == {"1", "3"}
    child.peer.request(Shutdown, "4")
    assert child.peer.read_to_eof() == [{"_answer": "4"}]
    assert child.wait() == 0


@pytest.mark.parametrize("args", [(), ("--concurrency", "4")])
def test_the_child_calls_its_parent(spawn: Spawn, args: tuple[str, ...]) -> None:
    child = spawn(WORKER, *args)
    child.peer.request(AskParent, "1", value=5)
    ask = child.peer.read()
    assert isinstance(ask, Request) and ask.command == "Double" and ask.tag is not None
    child.peer.answer(Double, ask.tag, value=10)
    assert child.peer.read() == Answer("1", Box({"value": "10"}))


@pytest.mark.parametrize(
    "args",
    [(), ("--concurrency", "2"), ("--busy-poll", "0"), ("--concurrency", "1", "--busy-poll", "0")],
)
def test_the_child_starts_without_heavy_imports(spawn: Spawn, args: tuple[str, ...]) -> None:
    # Not pykka or structlog (the parent's), and not what the start of every worker used to
    # pay for: dataclasses (with inspect), logging and concurrent.futures (until the runtime
    # logs or the worker calls its parent), argparse (with shutil) for a plain command line.
    child = spawn(WORKER, *args)
    child.peer.request(Modules, "1")
    assert child.peer.read_answer("1") == {"names": ""}
    child.peer.request(Shutdown, "2")
    assert child.peer.read_to_eof() == [{"_answer": "2"}]
    assert child.wait() == 0


def test_importing_juicectl_child_stays_light() -> None:
    # pathlib: about 5 ms of every worker's start, for the Path argument alone (imported when
    # one is received).
    code = (
        "import sys, juicectl.child, juicectl.juice; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'pykka', 'structlog', "
        "'pathlib'}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["tests.workers.runtime"], "expected package.module:WorkerClass"),
        (["tests.workers.runtime:TestWorker", "--concurrency", "0"], "between 1 and 1024"),
        (["tests.workers.runtime:TestWorker", "--concurrency", "100000"], "between 1 and 1024"),
        (["tests.workers.runtime:NoSuchWorker"], "tests.workers.runtime has no 'NoSuchWorker'"),
        (["tests.workers.runtime:TestWorker.Nope"], "has no 'TestWorker.Nope'"),
        (["tests.workers.no_such_module:W"], "no module named 'tests.workers.no_such_module'"),
        (["no_such_package.module:W"], "no module named 'no_such_package'"),
        ([".runtime:TestWorker"], "must be named in full"),
        (["tests.workers.scripts:python"], "is not a class"),  # a function: served as nothing
        (
            ["tests.workers.runtime:TestWorker", "--busy-poll", "-1"],
            "--busy-poll must be between 0 and 0.01 seconds, not -1.0",
        ),
        (["tests.workers.runtime:TestWorker", "--busy-poll", "0.5"], "between 0 and 0.01"),
        (["tests.workers.runtime:TestWorker", "--busy-poll", "nan"], "between 0 and 0.01"),
        (["tests.workers.runtime:TestWorker", "--busy-poll", "soon"], "invalid float value"),
        (["tests.workers.runtime:Echo.arguments"], "is not a class"),
    ],
)
def test_a_bad_command_line_exits_two(args: list[str], message: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "juicectl.child", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 2
    assert message in out.stderr
    assert "Traceback" not in out.stderr  # one line: a mistake of the command line
    assert out.stdout == ""  # usage and errors never reach the protocol stream


def test_a_bad_busy_poll_in_the_environment_exits_two() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "juicectl.child", "tests.workers.runtime:TestWorker"],
        cwd=ROOT, capture_output=True, text=True, timeout=30,
        env={**os.environ, "JUICECTL_BUSY_POLL": "abc"}, stdin=subprocess.DEVNULL,
    )
    assert out.returncode == 2
    assert "JUICECTL_BUSY_POLL='abc'" in out.stderr and "Traceback" not in out.stderr


def test_a_module_whose_own_import_fails_exits_one_with_its_traceback(tmp_path: Path) -> None:
    # Its ImportError is the module's, not a mistake of the command line.
    (tmp_path / "broken_worker.py").write_text("import no_such_dependency_here\n")
    out = subprocess.run(
        [sys.executable, "-m", "juicectl.child", "broken_worker:Worker"],
        cwd=tmp_path, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
    )
    assert out.returncode == 1
    assert "Traceback" in out.stderr and "no_such_dependency_here" in out.stderr


def test_sys_exit_in_a_handler_exits_with_its_status(spawn: Spawn) -> None:
    child = spawn("tests.workers.runtime:ExitWorker")
    child.peer.request(Exit, "1")
    assert child.peer.read_to_eof() == []
    assert child.wait() == 3


def test_sys_exit_in_a_handler_thread_ends_the_conversation(spawn: Spawn) -> None:
    child = spawn("tests.workers.runtime:ExitWorker", "--concurrency", "2")
    child.peer.request(Exit, "1")
    assert [classify(box) for box in child.peer.read_to_eof()] == [
        ErrorAnswer("1", UNHANDLED_CODE, UNHANDLED_DESCRIPTION)
    ]
    assert child.wait() == 0
