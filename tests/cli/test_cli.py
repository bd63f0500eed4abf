"""The juicectl command line: call and shell on real children, and its one-line errors."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from juicectl import __version__
from juicectl._cli import UsageError, main, parse_request, split_call_words, to_json
from juicectl.juice import is_raw
from tests.conftest import ROOT
from tests.supervision.conftest import alive
from tests.workers.commands import Echo, Sleep

WORKER = [sys.executable, "-m", "juicectl.child", "tests.workers.echo:EchoWorker"]


def juicectl(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m juicectl ARGS`` in the repository's root (where the workers import)."""
    return subprocess.run(
        [sys.executable, "-m", "juicectl", *args],
        cwd=ROOT,
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


# --- parsing, in process -------------------------------------------------------------------


def test_split_call_words() -> None:
    assert split_call_words(["python", "-m", "w", "Echo", "value=hi", "n=1"]) == (
        ["python", "-m", "w"], ["Echo", "value=hi", "n=1"],
    )
    assert split_call_words(["w", "Ping"]) == (["w"], ["Ping"])
    for bad in (["value=hi"], ["Echo", "value=hi"], []):
        with pytest.raises(UsageError):
            split_call_words(bad)


def test_parse_request_typed_and_raw() -> None:
    commands: dict[str, Any] = {"echo": Echo, "sleep": Sleep}
    assert parse_request(["sleep", "seconds=0.5"], commands) == (Sleep, {"seconds": 0.5})
    command, arguments = parse_request(["Other", "a=1", "b=x=y"], commands)
    assert is_raw(command) and command.command_name == "Other"
    assert arguments == {"a": "1", "b": "x=y"}
    with pytest.raises(UsageError, match="not a float"):
        parse_request(["Sleep", "seconds=soon"], commands)
    with pytest.raises(UsageError, match="no argument"):
        parse_request(["Echo", "valu=x"], commands)
    with pytest.raises(UsageError, match="key=value"):
        parse_request(["Echo", "value"], commands)


def test_to_json() -> None:
    from pathlib import Path

    assert to_json({"p": Path("/a b"), "b": b"\x00\xff", "t": "é"}) == (
        '{"p": "/a b", "b": "AP8=", "t": "é"}'
    )


def test_to_json_writes_floats_json_has_no_number_for_as_strings() -> None:
    answer = {"mean": float("nan"), "up": float("inf"), "down": [float("-inf"), 1.5]}
    text = to_json(answer)
    assert text == '{"mean": "NaN", "up": "Infinity", "down": ["-Infinity", 1.5]}'
    assert json.loads(text, parse_constant=lambda name: pytest.fail(f"not JSON: {name}"))


# --- call, on real children --------------------------------------------------------------


def test_call_prints_the_answer_as_json() -> None:
    result = juicectl("call", "--", *WORKER, "Echo", "value=hi there")
    assert result.returncode == 0, result.stderr
    assert result.stdout == '{"value": "hi there"}\n'
    assert result.stderr == ""


def test_call_with_declared_commands_converts_types() -> None:
    typed = juicectl("call", "--commands", "tests.workers.commands", "--", *WORKER,
                     "Sleep", "seconds=0.01")
    assert typed.returncode == 0, typed.stderr
    assert typed.stdout == '{"slept": 0.01}\n'
    raw = juicectl("call", "--", *WORKER, "Sleep", "seconds=0.01")
    assert raw.stdout == '{"slept": "0.01"}\n'


def test_call_errors_are_one_line() -> None:
    declared = juicectl("call", "--commands", "tests.workers.commands:Fail", "--", *WORKER,
                        "Fail")
    assert declared.returncode == 1
    assert one_line_error(declared) == "juicectl: Fail failed: Oops: as declared"

    unknown = juicectl("call", "--", *WORKER, "Nope", "a=b")
    assert unknown.returncode == 1
    assert "Nope failed: UNHANDLED" in one_line_error(unknown)

    missing = juicectl("call", "--", "/no/such/program", "Echo")
    assert missing.returncode == 1
    assert one_line_error(missing) == (
        "juicectl: cannot launch ['/no/such/program']: No such file or directory"
    )

    dying = juicectl("call", "--", sys.executable, "-c",
                     "import sys; print('cannot start', file=sys.stderr); sys.exit(3)", "Echo")
    assert dying.returncode == 1
    line = one_line_error(dying)
    assert "exited with status 3" in line and "cannot start" in line

    slow = juicectl("call", "--timeout", "0.3", "--", *WORKER, "Sleep", "seconds=1")
    assert slow.returncode == 1
    assert "no answer within 0.3" in one_line_error(slow)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["call", "--", "Echo"], "no child command"),
        (["call"], "no command given"),
        (["call", "--commands", "no_such_module_here", "--", "x", "Echo"], "--commands"),
        (["call", "--commands", "tests.workers.commands", "--", "x", "Sleep", "seconds=x"],
         "not a float"),
        (["call", "--timeout", "0", "--", "x", "Echo"], "--timeout"),
        (["shell", "--startup-timeout", "-1", "--", "x"], "--startup-timeout"),
        (["frobnicate"], "invalid choice"),
        (["demo", "--documents", "1"], "--documents"),
        # Refused at the door: nothing is launched, and the message names the option.
        (["call", "--startup-timeout", "nan", "--", "x", "Echo"], "argument --startup-timeout"),
        (["call", "--startup-timeout", "inf", "--", "x", "Echo"], "argument --startup-timeout"),
        (["call", "--startup-timeout", "1e308", "--", "x", "Echo"], "at most 86400 seconds"),
        (["call", "--timeout", "nan", "--", "x", "Echo"], "argument --timeout"),
        (["shell", "--timeout", "inf", "--", "x"], "argument --timeout"),
        (["call", "--commands", "..bad", "--", "x", "Echo"], "--commands ..bad: "),
        (["call", "--", "x", "", "value=x"], "a command name must be a non-empty str"),
        (["demo", "--documents", "100000000000000000000"], "--documents: must be from 2 to"),
        (["call", "--bogus"], "(see juicectl call --help)"),
    ],
)
def test_usage_errors_exit_2(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(args) == 2
    captured = capsys.readouterr()
    line = one_line_error(subprocess.CompletedProcess(args, 2, captured.out, captured.err))
    assert line.startswith("juicectl: error:") and message in line


def test_a_commands_module_that_fails_to_import_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "broken_commands_module.py").write_text("raise RuntimeError('half done')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["call", "--commands", "broken_commands_module", "--", "x", "Echo"]) == 2
    captured = capsys.readouterr()
    assert one_line_error(subprocess.CompletedProcess([], 2, captured.out, captured.err)) == (
        "juicectl: error: --commands broken_commands_module: importing it raised "
        "RuntimeError: half done"
    )


def test_version() -> None:
    result = juicectl("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"juicectl {__version__}"


# --- shell, driven through stdin (not a terminal) ---------------------------------------


def test_shell_reads_commands_from_stdin() -> None:
    script = "\n".join([
        'Echo value="hello world"',
        "# a comment, and an empty line",
        "",
        ":mode",
        ":stop",
        ":mode",
        "Echo value=again",
        ":quit",
        "Echo value=never-sent",
    ]) + "\n"
    result = juicectl("shell", "--", *WORKER, stdin=script)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        '{"value": "hello world"}',
        "ready",
        "stopped: clean",
        "stopped",
        '{"value": "again"}',
    ]


def test_shell_reports_errors_and_goes_on() -> None:
    script = "Nope\nEcho\n:bogus\nEcho value='unterminated\nEcho value=ok\n"
    result = juicectl("shell", "--commands", "tests.workers.commands", "--", *WORKER,
                      stdin=script)
    assert result.returncode == 1  # some commands failed
    # Errors on stderr, one line each; stdout carries the answers alone.
    errors = result.stderr.splitlines()
    assert len(errors) == 4, result.stderr
    assert errors[0].startswith("error: Nope failed: UNHANDLED")
    assert errors[1] == "error: Echo needs value=... (it takes: value)"
    assert errors[2].startswith("error: unknown shell command")
    assert errors[3].startswith("error: No closing quotation")
    # UNHANDLED ended the first child's conversation: a new child answers.
    assert result.stdout == '{"value": "ok"}\n'



def test_shell_ends_at_end_of_input_and_cannot_start_without_a_child() -> None:
    assert juicectl("shell", "--", *WORKER, stdin="").returncode == 0
    missing = juicectl("shell", "--", "/no/such/program", stdin="Echo\n")
    assert missing.returncode == 1
    assert "cannot launch" in one_line_error(missing)


# --- hints for common slips ------------------------------------------------------------------


def test_a_bare_argument_after_the_command_gets_a_hint() -> None:
    # "Echo value": value is taken for the command, and Echo for the child's last word.
    raw = juicectl("call", "--", *WORKER, "Echo", "value")
    assert raw.returncode == 1
    assert one_line_error(raw).endswith(
        "(if Echo is the command, its arguments are key=value: Echo value=...)"
    )
    typed = juicectl("call", "--commands", "tests.workers.commands", "--", *WORKER,
                     "Echo", "value")
    assert typed.returncode == 2
    assert one_line_error(typed) == (
        "juicectl: error: if Echo is the command, its arguments are key=value: Echo value=..."
    )
    with pytest.raises(UsageError, match=r"got 'value' \(write value=VALUE\)"):
        parse_request(["Echo", "value"], {})


def test_a_missing_separator_gets_a_hint() -> None:
    result = juicectl("shell", "-u", *WORKER)
    assert result.returncode == 2
    assert "unrecognized arguments: -u; if they are the child's, put the child's command " \
        "after --" in one_line_error(result)


def test_arguments_a_command_lacks_or_needs_are_named() -> None:
    commands: dict[str, Any] = {"echo": Echo, "sleep": Sleep}
    with pytest.raises(UsageError, match=r"^Echo has no argument 'valeu' \(it takes: value\)$"):
        parse_request(["Echo", "valeu=x"], commands)
    with pytest.raises(UsageError, match=r"^Sleep needs seconds=\.\.\. \(it takes: seconds\)$"):
        parse_request(["Sleep"], commands)


def test_an_unhandled_answer_says_what_the_worker_said() -> None:
    misspelled = juicectl("call", "--", *WORKER, "Echo", "valeu=hi")
    assert misspelled.returncode == 1
    assert one_line_error(misspelled) == (
        "juicectl: Echo failed: UNHANDLED: Unhandled Remote System Exception (the worker's "
        "error: ArgumentError: Echo arguments: missing required 'value')"
    )
    unknown = juicectl("call", "--", *WORKER, "Nope")
    assert "(the worker's error: LookupError: no responder for command 'Nope')" in (
        one_line_error(unknown)
    )


def test_the_shipped_example_commands_can_be_named() -> None:
    result = juicectl("call", "--commands", "juicectl.examples.echo", "--", sys.executable,
                      "-m", "juicectl.child", "juicectl.examples.echo:EchoWorker",
                      "Sleep", "seconds=0.01")
    assert result.returncode == 0, result.stderr
    assert isinstance(json.loads(result.stdout)["slept"], float)  # typed: not text


# --- stdout closed or full ---------------------------------------------------------------------

PID_WORKER = """
import os
from juicectl.examples.echo import EchoWorker
with open(os.environ["PID_FILE"], "w") as pid_file:
    pid_file.write(str(os.getpid()))
"""


@pytest.mark.parametrize("action", ["call", "shell"])
def test_a_closed_stdout_ends_quietly_with_141_and_the_child_stopped(
    action: str, tmp_path: Path
) -> None:
    (tmp_path / "pid_worker.py").write_text(PID_WORKER, "utf-8")
    pid_file = tmp_path / "pid"
    child = [sys.executable, "-m", "juicectl.child", "pid_worker:EchoWorker"]
    args = [*child, "Echo", "value=x"] if action == "call" else child
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the answer is written: `| true`
    try:
        result = subprocess.run(
            [sys.executable, "-m", "juicectl", action, "--", *args], cwd=tmp_path,
            input="Echo value=x\nEcho value=y\n", stdout=write_end, stderr=subprocess.PIPE,
            text=True, timeout=120, env={**os.environ, "PID_FILE": str(pid_file)},
        )
    finally:
        os.close(write_end)
    assert (result.returncode, result.stderr) == (141, "")
    assert not alive(int(pid_file.read_text()))   # stopped (and reaped) before the exit


@pytest.mark.parametrize("action", ["call", "shell"])
def test_started_with_stdin_or_stdout_closed(action: str) -> None:
    # `<&-` / `>&-`: Python makes sys.stdin or sys.stdout None. A closed stdin is no input;
    # a closed stdout is an error said on stderr, never an answer printed nowhere.
    args = [*WORKER, "Echo", "value=x"] if action == "call" else WORKER
    command = shlex.join([sys.executable, "-m", "juicectl", action, "--", *args])
    if action == "shell":
        no_input = subprocess.run(["sh", "-c", f"exec {command} <&-"], cwd=ROOT,
                                  capture_output=True, text=True, timeout=120)
        assert (no_input.returncode, no_input.stdout, no_input.stderr) == (0, "", "")
    no_output = subprocess.run(["sh", "-c", f"exec {command} >&-"], cwd=ROOT,
                               input="Echo value=x\n", stderr=subprocess.PIPE, text=True,
                               timeout=120)
    assert no_output.returncode == 1
    assert no_output.stderr == "juicectl: cannot write to stdout: stdout is closed\n"


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize("action", ["call", "shell"])
def test_a_stdout_that_cannot_be_written_is_one_line(action: str) -> None:
    args = [*WORKER, "Echo", "value=x"] if action == "call" else WORKER
    with open("/dev/full", "w") as full:
        result = subprocess.run(
            [sys.executable, "-m", "juicectl", action, "--", *args], cwd=ROOT,
            input="Echo value=x\n", stdout=full, stderr=subprocess.PIPE, text=True,
            timeout=120,
        )
    assert result.returncode == 1
    assert result.stderr == "juicectl: cannot write to stdout: No space left on device\n"
