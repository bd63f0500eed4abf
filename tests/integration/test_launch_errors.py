"""Errors that name the cause: bad options fail at ``start()``, anything that goes wrong at
the launch is a ``ProcessLaunchError`` naming the command and the cwd and fails the waiters at
once, and a child that writes stray bytes to its stdout is told so."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from juicectl import ProcessController, ProcessLaunchError, ProcessUnavailable, RestartPolicy
from juicectl.actors import ProcessActor
from juicectl.launch import Invocation, LocalLauncher
from juicectl.policy import LaunchSpec
from tests.conftest import ROOT
from tests.workers.scripts import worker

MakeController = Callable[..., ProcessController]

# Far longer than any wait below: a waiter that fails within its bounded wait did not wait
# for the startup deadline.
SLOW_START = 60.0


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"env": {"A": 1}}, TypeError, "env['A'] must be a str, not int 1"),
        ({"env": {1: "x"}}, TypeError, "env keys must be str: 1 is int"),
        ({"env": {"A=B": "x"}}, ValueError, "env key 'A=B' is not a variable name"),
        ({"env": {"A": "x\0y"}}, ValueError, "env['A'] contains a NUL character"),
        ({"cwd": "/no/such/directory"}, ValueError,
         "the working directory (cwd) '/no/such/directory' does not exist"),
        ({"cwd": __file__}, ValueError, f"the working directory (cwd) {__file__!r} is not a"),
    ],
    ids=["env-value", "env-key", "env-equals", "env-nul", "cwd-missing", "cwd-file"],
)
def test_bad_launch_options_fail_at_start(
    options: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as info:
        ProcessController.start(worker(), **options)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"env": "PATH=/bin"}, "env must be a mapping of str to str (or None to inherit), not str"),
        ({"env": [("A", "b")]}, "env must be a mapping of str to str (or None to inherit), not "
                                "list"),
        ({"cwd": 3}, "cwd must be a str (a directory) or None to inherit, not int 3"),
    ],
    ids=["env-str", "env-pairs", "cwd-int"],
)
def test_a_launch_spec_refuses_what_is_not_an_environment_or_a_directory(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(TypeError) as info:
        LaunchSpec(argv=["x"], **options)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("argv", "error", "message"),
    [
        ("python3 -m worker", ValueError, "argv must be a non-empty list of strings"),
        ([], ValueError, "argv must be a non-empty list of strings"),
        (["python3", 3], TypeError, "argv[1] is int 3"),
        (["python3", "a\0b"], ValueError, "argv[1] contains a NUL character"),
        (["", "x"], ValueError, "argv[0], the program, is empty"),
    ],
    ids=["str", "empty", "int", "nul", "no-program"],
)
def test_bad_argv_fails_at_start(argv: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error) as info:
        ProcessController.start(argv)
    assert message in str(info.value)


def test_a_path_cwd_is_taken_as_its_str(tmp_path: Path) -> None:
    assert LaunchSpec(argv=["x"], cwd=tmp_path).cwd == str(tmp_path)  # type: ignore[arg-type]


def test_a_cwd_gone_by_launch_time_is_named_as_the_cwd(
    make_controller: MakeController, tmp_path: Path
) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()
    ctl = make_controller(worker(), cwd=str(workdir), startup_timeout=SLOW_START)
    workdir.rmdir()  # after start(): the launch is lazy, at the first get_process()
    with pytest.raises(ProcessLaunchError) as info:
        ctl.get_process().get(timeout=10)
    assert f"the working directory (cwd) {str(workdir)!r} does not exist" in str(info.value)
    assert "No such file or directory" not in str(info.value)
    assert info.value.argv == tuple(worker())
    assert ctl.mode == "stopped"


def test_a_program_missing_from_path_says_where_it_was_looked_for(
    make_controller: MakeController,
) -> None:
    ctl = make_controller(["juicectl-no-such-worker"], env={"PATH": "/nonexistent"})
    with pytest.raises(ProcessLaunchError) as info:
        ctl.get_process().get(timeout=10)
    assert str(info.value) == (
        "cannot launch ['juicectl-no-such-worker']: No such file or directory: "
        f"'juicectl-no-such-worker' is not on PATH (/nonexistent) (cwd {str(ROOT)!r})"
    )


class _BadEnvLauncher(LocalLauncher):
    """Hands ``subprocess`` an environment it refuses (as an unchecked launcher could)."""

    def invocation(self, spec: LaunchSpec) -> Invocation:
        good = super().invocation(spec)
        return Invocation(argv=good.argv, env={"A": 1}, cwd=good.cwd,  # type: ignore[dict-item]
                          command=good.command)


class _BrokenLauncher:
    def __init__(self, waits: bool = False) -> None:
        self.waits = waits  # True: asked on a launch thread of its own

    def invocation(self, spec: LaunchSpec) -> Invocation:
        raise RuntimeError("the launcher broke")

    def __repr__(self) -> str:
        return "<broken launcher>"


class _WrongLauncher(_BrokenLauncher):
    def invocation(self, spec: LaunchSpec) -> Invocation:
        return "echo hi"  # type: ignore[return-value]


@pytest.mark.parametrize(
    ("launcher", "cause"),
    [
        (_BadEnvLauncher(), "TypeError: expected str, bytes or os.PathLike object, not int"),
        (_BrokenLauncher(), "RuntimeError: the launcher broke"),
        (_BrokenLauncher(waits=True), "RuntimeError: the launcher broke"),
        (_WrongLauncher(), "TypeError: the launcher <broken launcher> returned 'echo hi', "
                           "not an Invocation"),
        (_WrongLauncher(waits=True), "TypeError: the launcher <broken launcher> returned "
                                     "'echo hi', not an Invocation"),
    ],
    ids=["popen-type-error", "launcher-raises", "waiting-launcher-raises",
         "launcher-returns-no-invocation", "waiting-launcher-returns-no-invocation"],
)
def test_any_exception_at_launch_is_a_launch_error_that_fails_the_waiters_at_once(
    launcher: Any, cause: str
) -> None:
    ctl = ProcessController.start(
        worker(),
        cwd=str(ROOT),
        startup_timeout=SLOW_START,
        restart=RestartPolicy(mode="temporary"),
        process_factory=ProcessActor.factory("bad-launch", launcher=launcher),
    )
    try:
        waiters = [ctl.get_process() for _ in range(3)]
        for waiter in waiters:
            with pytest.raises(ProcessLaunchError) as info:
                waiter.get(timeout=10)
            assert str(info.value) == (
                f"cannot launch {worker()!r}: {cause} (cwd {str(ROOT)!r})"
            )
        assert ctl.mode == "stopped"
    finally:
        result = ctl.close(timeout=10)
    assert result is not None and result.how == "not_running"


def noisy_worker(tmp_path: Path, prints: str) -> list[str]:
    """A worker script that prints at import, before ``run()`` protects its stdout."""
    script = tmp_path / "noisy_worker.py"
    script.write_text(textwrap.dedent(f"""
        {prints}
        from juicectl.child import JuiceChild, run
        run(JuiceChild)
    """))
    return [sys.executable, str(script)]


def test_a_worker_that_prints_at_import_is_told_its_stdout_belongs_to_the_protocol(
    make_controller: MakeController, tmp_path: Path
) -> None:
    ctl = make_controller(noisy_worker(tmp_path, "print('Loading model weights...')"))
    with pytest.raises(ProcessUnavailable) as info:
        ctl.get_process().get(timeout=15)
    message = str(info.value)
    assert "wrote to its stdout before the protocol started" in message
    assert "loading model weights..." in message  # the first bytes, as the wire parsed them
    assert "python -m juicectl.child" in message
    assert "protect_stdio()" in message
    assert "missing required 'version'" not in message


def test_an_argument_list_too_long_to_run_is_cut_in_the_message(
    make_controller: MakeController,
) -> None:
    ctl = make_controller([sys.executable, "-c", "pass", "x" * 3_000_000])
    with capture_logs() as logs, pytest.raises(ProcessLaunchError) as info:
        ctl.get_process().get(timeout=15)
    message = str(info.value)
    assert len(message) < 1200, len(message)
    assert "4 arguments" in message and "characters in all" in message
    assert "Argument list too long" in message
    [failed] = [entry for entry in logs if entry["event"] == "launch_failed"]
    assert len(repr(failed)) < 3000


def test_a_negotiate_version_that_is_not_a_number_is_named_as_such(
    make_controller: MakeController, tmp_path: Path
) -> None:
    script = tmp_path / "bad_version.py"
    script.write_text(textwrap.dedent("""
        import os, sys
        data = b""
        while b"\\r\\n\\r\\n" not in data:
            data += os.read(0, 4096)
        tag = data.split(b"-Ask: ", 1)[1].split(b"\\r\\n", 1)[0]
        os.write(1, b"-Answer: " + tag + b"\\r\\nVersion: abc\\r\\n\\r\\n")
        while os.read(0, 4096):
            pass
    """))
    ctl = make_controller([sys.executable, str(script)])
    with pytest.raises(ProcessUnavailable) as info:
        ctl.get_process().get(timeout=15)
    message = str(info.value)
    assert "a version that is not a whole number: 'abc'" in message
    assert "before the protocol started" not in message


def test_stray_bytes_that_break_the_protocol_at_startup_are_shown(
    make_controller: MakeController, tmp_path: Path
) -> None:
    argv = noisy_worker(tmp_path, "import sys; sys.stdout.write('Starting up\\r\\n')")
    ctl = make_controller(argv)
    with pytest.raises(ProcessUnavailable) as info:
        ctl.get_process().get(timeout=15)
    message = str(info.value)
    assert "wrote to its stdout what is not Juice before it was ready" in message
    assert "b'Starting up\\r\\n" in message
    assert "python -m juicectl.child" in message and "protect_stdio()" in message
