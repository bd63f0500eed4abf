"""Ctrl-C in ``juicectl call`` and ``juicectl shell``: real SIGINTs sent to the program.

Each test runs ``python -m juicectl -v ...`` with pipes, follows its stderr line by line (the
``-v`` log says when the child is launched, with its pid, and relays what the worker prints),
sends SIGINT at a known moment, and reads what the program says and how it exits. Every wait
is bounded, and every process is killed at the end even if the test fails.
"""

from __future__ import annotations

import contextlib
import io
import os
import queue
import re
import signal
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from juicectl._cli._interrupts import (
    KILLING_MESSAGE,
    ON_PRESS,
    STOPPING_MESSAGE,
    Interrupts,
    State,
)

WAIT = 30.0
"""Seconds to wait for anything that should happen (a bound, never a speed test)."""

WORKER = '''
import os, subprocess, sys, time
from juicectl.child import JuiceChild
from juicectl.juice import Command, Float, String

class Echo(Command):
    arguments = [("value", String())]
    response = [("value", String())]

class Sleep(Command):
    arguments = [("seconds", Float())]
    response = [("slept", Float())]

class Worker(JuiceChild):
    concurrency = 2

    @Echo.responder
    def echo(self, value):
        return {"value": value}

    @Sleep.responder
    def sleep(self, seconds):
        print(f"sleeping {seconds}", flush=True)
        time.sleep(seconds)
        return {"slept": seconds}
'''

NEVER_READY = (
    "import subprocess, sys, time\n"
    "helper = subprocess.Popen(['sleep', '60'])\n"
    "print(f'grandchild {helper.pid}', file=sys.stderr, flush=True)\n"
    "time.sleep(60)\n"
)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[-1].split()[0] != "Z"
    return True


class Program:
    """A running ``juicectl`` with its stdout and stderr read line by line on threads.

    Its stdin is a pipe, or with ``terminal=True`` a pseudo-terminal (echo off), which makes
    the shell interactive.
    """

    def __init__(self, args: list[str], cwd: Path, *, terminal: bool = False) -> None:
        self.terminal: int | None = None
        stdin: int = subprocess.PIPE
        env = dict(os.environ, JUICECTL_HISTORY=str(cwd / "history"))
        if terminal:
            self.terminal, stdin = os.openpty()
            attributes = termios.tcgetattr(stdin)
            attributes[3] &= ~termios.ECHO
            termios.tcsetattr(stdin, termios.TCSANOW, attributes)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "juicectl", *args], cwd=cwd, stdin=stdin,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1, env=env,
        )
        if terminal:
            os.close(stdin)
        self.stdout: queue.Queue[str] = queue.Queue()
        self.stderr: queue.Queue[str] = queue.Queue()
        self.seen: dict[str, list[str]] = {"stdout": [], "stderr": []}
        for name, stream, lines in (("stdout", self.process.stdout, self.stdout),
                                    ("stderr", self.process.stderr, self.stderr)):
            threading.Thread(target=self._pump, args=(stream, lines), daemon=True,
                             name=f"juicectl-{name}").start()
        self.pids: list[int] = []
        """The children it launched (from its ``launched`` log lines)."""

    @staticmethod
    def _pump(stream: io.TextIOBase | None, lines: queue.Queue[str]) -> None:
        # Whole lines, and the shell's prompt as a line of its own: it ends in no newline.
        assert stream is not None
        rest = b""
        while chunk := os.read(stream.fileno(), 4096):
            *whole, rest = (rest + chunk).split(b"\n")
            for line in whole:
                lines.put(line.decode())
            if rest.endswith(PROMPT.encode()):
                lines.put(rest.decode())
                rest = b""
        if rest:
            lines.put(rest.decode())

    def expect(self, pattern: str, stream: str = "stderr", wait: float = WAIT) -> re.Match[str]:
        """The next line of ``stream`` that matches ``pattern`` (lines before it are kept)."""
        lines = self.stdout if stream == "stdout" else self.stderr
        deadline = time.monotonic() + wait
        while True:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(
                    f"no {stream} line matching {pattern!r}; seen: {self.seen[stream]}"
                ) from None
            self.seen[stream].append(line)
            launched = re.search(r"\blaunched\b.*\bpid=(\d+)", line)
            if launched:
                self.pids.append(int(launched.group(1)))
            match = re.search(pattern, line)
            if match:
                return match

    def send(self, line: str) -> None:
        if self.terminal is not None:
            os.write(self.terminal, (line + "\n").encode())
            return
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def end_input(self) -> None:
        if self.terminal is not None:
            os.write(self.terminal, b"\x04")  # Ctrl-D
            return
        assert self.process.stdin is not None
        self.process.stdin.close()

    def interrupt(self) -> None:
        self.process.send_signal(signal.SIGINT)

    def interrupt_at_the_prompt(self) -> None:
        """Ctrl-C at the shell's prompt, until it starts a fresh line.

        A press that lands between the prompt's write and the read that follows is handled
        only when that read returns (CPython runs handlers between bytecodes), so it is
        pressed again: the next press ends the read, and the handler runs once for both.
        """
        for _ in range(int(WAIT)):
            self.interrupt()
            with contextlib.suppress(AssertionError):
                self.expect(r"^$", "stdout", wait=1.0)
                return
        raise AssertionError(f"no fresh prompt; seen: {self.seen['stdout']}")

    def stop_then_kill(self) -> None:
        """Ctrl-C: the stop is announced; Ctrl-C again: the kill; then the exit, 130."""
        self.interrupt()
        self.expect(re.escape(STOPPING_MESSAGE) + "$")  # at once, on a line of its own
        self.interrupt()
        self.expect(re.escape(KILLING_MESSAGE) + "$")
        assert self.exit_status() == 130

    def exit_status(self) -> int:
        return self.process.wait(timeout=WAIT)

    def rest(self, stream: str = "stderr") -> list[str]:
        """Every line of ``stream`` not read yet (once the program has exited)."""
        self.exit_status()
        lines = self.stdout if stream == "stdout" else self.stderr
        deadline = time.monotonic() + WAIT
        rest = []
        while time.monotonic() < deadline:
            try:
                rest.append(lines.get(timeout=0.2))
            except queue.Empty:
                break
        self.seen[stream] += rest
        return rest

    def kill(self) -> None:
        for pid in self.pids:
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            self.process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=WAIT)
        if self.terminal is not None:
            os.close(self.terminal)
            self.terminal = None


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "slow_worker.py").write_text(WORKER, "utf-8")
    return tmp_path


@pytest.fixture
def program(project: Path) -> Iterator[Program]:
    started: list[Program] = []

    def start(*args: str, terminal: bool = False) -> Program:
        started.append(Program(list(args), project, terminal=terminal))
        return started[-1]

    yield start  # type: ignore[misc]
    for running in started:
        running.kill()


CHILD = [sys.executable, "-m", "juicectl.child", "slow_worker:Worker"]
PROMPT = "juicectl> "


def test_call_first_ctrl_c_stops_the_child_cleanly(program: type[Program]) -> None:
    cli = program("call", "-v", "--", *CHILD, "Sleep", "seconds=1")
    cli.expect(r"child_stderr.*sleeping 1")
    cli.interrupt()
    cli.expect(re.escape(STOPPING_MESSAGE) + "$")   # at once, on a line of its own
    assert cli.exit_status() == 130
    rest = cli.rest()
    assert any("stop_step" in line and "step=shutdown" in line for line in rest)
    assert KILLING_MESSAGE not in rest
    assert cli.rest("stdout") == []                 # no answer printed
    [pid] = cli.pids
    assert not alive(pid)


def test_call_second_ctrl_c_kills_the_child_and_exits(program: type[Program]) -> None:
    cli = program("call", "-v", "--", *CHILD, "Sleep", "seconds=60")
    cli.expect(r"child_stderr.*sleeping 60")
    [pid] = cli.pids
    cli.stop_then_kill()
    assert not alive(pid)


@pytest.mark.parametrize("action", ["call", "shell"])
def test_one_ctrl_c_ends_a_child_still_starting_with_its_group(
    program: type[Program], action: str
) -> None:
    # Not ready, the child has nothing to answer: the first press ends it, without waiting
    # out the start (a day here, far past the bound of exit_status()).
    words = ["Echo"] if action == "call" else []
    cli = program(action, "-v", "--startup-timeout", "86400", "--", sys.executable, "-c",
                  NEVER_READY, *words)
    grandchild = int(cli.expect(r"child_stderr.*grandchild (\d+)").group(1))
    [pid] = cli.pids
    cli.interrupt()
    cli.expect(re.escape(STOPPING_MESSAGE) + "$")
    assert cli.exit_status() == 130
    assert KILLING_MESSAGE not in cli.rest()
    deadline = time.monotonic() + WAIT
    while (alive(pid) or alive(grandchild)) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not alive(pid) and not alive(grandchild)


def test_a_second_ctrl_c_kills_a_child_that_ignores_the_stop_of_its_start(
    program: type[Program],
) -> None:
    stubborn = "import signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n" + NEVER_READY
    cli = program("call", "-v", "--startup-timeout", "86400", "--", sys.executable, "-c",
                  stubborn, "Echo")
    cli.expect(r"child_stderr.*grandchild (\d+)")
    [pid] = cli.pids
    cli.stop_then_kill()
    assert not alive(pid)


def test_shell_on_a_terminal_ctrl_c_cancels_the_command_and_the_shell_goes_on(
    program: type[Program],
) -> None:
    cli = program("shell", "-v", "--", *CHILD, terminal=True)  # type: ignore[call-arg]
    cli.expect(r"\bready\b")
    [pid] = cli.pids
    cli.send("Sleep seconds=2")
    cli.expect(r"child_stderr.*sleeping 2")
    cli.interrupt()
    cancelled = cli.expect(r"^cancelled: ")       # on stderr: stdout carries answers only
    assert "answer is dropped" in cancelled.string
    cli.send("Echo value=after")                   # the same child answers
    cli.expect(r'^\{"value": "after"\}$', "stdout")
    cli.expect(f"^{PROMPT}$", "stdout")             # then waits at the prompt
    cli.interrupt_at_the_prompt()                   # there: a fresh line, a fresh prompt
    cli.expect(f"^{PROMPT}$", "stdout")
    cli.send("Echo value=still")
    cli.expect(r'^\{"value": "still"\}$', "stdout")
    cli.end_input()                                 # Ctrl-D leaves
    assert cli.exit_status() == 1                   # one command did not succeed
    assert cli.pids == [pid]
    assert not alive(pid)
    assert STOPPING_MESSAGE not in cli.rest()


def test_shell_on_a_terminal_ctrl_c_while_it_stops_the_child_then_kills_it(
    program: type[Program],
) -> None:
    cli = program("shell", "-v", "--", *CHILD, terminal=True)  # type: ignore[call-arg]
    cli.expect(r"\bready\b")
    cli.send("Sleep seconds=60")
    cli.expect(r"child_stderr.*sleeping 60")
    cli.interrupt()
    cli.expect(r"^cancelled: ")
    cli.end_input()                   # the shell stops the child: Shutdown waits for the Sleep
    cli.expect(r"stop_step.*step=shutdown")
    cli.stop_then_kill()
    [pid] = cli.pids
    assert not alive(pid)


def test_piped_shell_waiting_for_its_next_line_stops_on_ctrl_c(program: type[Program]) -> None:
    cli = program("shell", "-v", "--", *CHILD)
    cli.send("Echo value=x")
    cli.expect(r'^\{"value": "x"\}$', "stdout")   # then it waits for a line that never comes
    cli.interrupt()
    cli.expect(re.escape(STOPPING_MESSAGE) + "$")
    assert cli.exit_status() == 130
    rest = cli.rest()
    assert any("stop_step" in line and "step=shutdown" in line for line in rest)
    assert KILLING_MESSAGE not in rest
    [pid] = cli.pids
    assert not alive(pid)


def test_piped_shell_first_ctrl_c_stops_a_command_second_kills(program: type[Program]) -> None:
    cli = program("shell", "-v", "--", *CHILD)
    cli.send("Sleep seconds=60")
    cli.expect(r"child_stderr.*sleeping 60")
    cli.stop_then_kill()              # no one at a prompt to go back to: nothing is cancelled
    assert not any(line.startswith("cancelled: ") for line in cli.seen["stderr"] + cli.rest())
    [pid] = cli.pids
    assert not alive(pid)


# --- the table and the message, in process ---------------------------------------------------


def test_every_state_has_a_press() -> None:
    assert set(ON_PRESS) == set(State)
    assert ON_PRESS[State.STOPPING][0] is State.KILLED


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("stream", "start"), [(Terminal(), "\n"), (io.StringIO(), "")])
def test_the_message_starts_a_line_of_its_own_on_a_terminal(
    stream: io.StringIO, start: str
) -> None:
    interrupts = Interrupts(stderr=stream)
    interrupts.closing()
    interrupts.on_sigint(signal.SIGINT, None)
    assert stream.getvalue() == f"{start}{STOPPING_MESSAGE}\n"
    assert interrupts.state is State.STOPPING


def test_the_message_goes_past_the_streams_buffer_in_one_write() -> None:
    # The handler may interrupt this thread inside a write to the same buffer: it must not
    # write through it (a reentrant write raises), and its line must come out whole.
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)              # nothing there: fail, never hang
    with open(write_end, "w", buffering=1 << 16) as stream, open(read_end, "rb") as reader:
        stream.write("half a log li")               # in the buffer, not written yet
        interrupts = Interrupts(stderr=stream)
        interrupts.closing()
        interrupts.on_sigint(signal.SIGINT, None)
        assert os.read(reader.fileno(), 4096) == f"{STOPPING_MESSAGE}\n".encode()
        stream.write("ne\n")
        stream.flush()
        assert os.read(reader.fileno(), 4096) == b"half a log line\n"


def test_a_press_outside_a_wait_is_raised_when_the_next_wait_begins() -> None:
    interrupts = Interrupts(stderr=io.StringIO())
    with interrupts.shell():
        interrupts.on_sigint(signal.SIGINT, None)      # not waiting: remembered
        with pytest.raises(KeyboardInterrupt), interrupts.wait():
            pass
        with interrupts.wait():                        # once only
            pass
        with pytest.raises(KeyboardInterrupt), interrupts.wait():
            interrupts.on_sigint(signal.SIGINT, None)  # waiting: at once
    assert interrupts.state is State.WORKING


def test_a_press_at_the_prompt_interrupts_it_and_one_from_before_is_forgotten() -> None:
    interrupts = Interrupts(stderr=io.StringIO())
    with interrupts.shell():
        interrupts.on_sigint(signal.SIGINT, None)      # after the last command: remembered...
        with pytest.raises(KeyboardInterrupt), interrupts.prompt():
            interrupts.on_sigint(signal.SIGINT, None)  # ...forgotten; this one interrupts
        with interrupts.wait():                        # the next command is not cancelled
            pass
    assert interrupts.state is State.WORKING


# --- before the command line has loaded --------------------------------------------------------

STALLED_IMPORT = '''
import runpy, sys, time

class Stall:
    """Holds the import of the command line until Ctrl-C comes (a slow disk would)."""

    def find_spec(self, name, path=None, target=None):
        if name == "juicectl._cli":
            print("importing", file=sys.stderr, flush=True)
            time.sleep(60)
        return None

sys.meta_path.insert(0, Stall())
sys.argv = ["juicectl", "--version"]
runpy.run_module("juicectl", run_name="__main__", alter_sys=True)
'''


def test_ctrl_c_while_the_command_line_loads_says_interrupted(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", STALLED_IMPORT], cwd=tmp_path, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert process.stderr is not None
        assert process.stderr.readline() == "importing\n"
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=WAIT)
    finally:
        process.kill()
        process.wait(timeout=WAIT)
    assert (process.returncode, out, err) == (130, "", "juicectl: interrupted\n")
