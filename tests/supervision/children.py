"""Misbehaving children for the supervision tests, as command lines.

Most are one small Juice peer (``juice_child``) written with the codec alone, so that each
misbehaviour is a switch: it answers ``Negotiate`` (or not), ``Echo``, and ``Shutdown`` (or
ignores it), exits on end of input (or ignores it), and may ignore SIGTERM, spawn a
grandchild, or close its stdout once ready. The parent scripts at the end start a controller
in a process of their own, for the tests where the parent itself dies or exits.
"""

from __future__ import annotations

import sys
import textwrap
from typing import Literal

from tests.workers.scripts import python

_JUICE_CHILD = """
import os, signal, subprocess, sys, time
from juicectl.juice import Box, BoxParser, Request, answer_bytes, classify

if CONFIG["sigterm"] == "ignore":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)

if CONFIG["leave_group"] == "setsid":
    os.setsid()
elif CONFIG["leave_group"] == "setpgid":
    os.setpgid(0, 0)

if CONFIG["grandchild_pid_file"]:
    # Stays in this child's process group (or, as a daemon, starts a session of its own) and
    # holds its stdout and stderr open.
    grandchild = subprocess.Popen([
        sys.executable, "-c",
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)",
    ], stdin=subprocess.DEVNULL if CONFIG["daemon"] else None, start_new_session=CONFIG["daemon"])
    path = CONFIG["grandchild_pid_file"]
    with open(path + ".tmp", "w") as f:
        f.write(str(grandchild.pid))
    os.replace(path + ".tmp", path)

def idle():
    while True:
        time.sleep(1)

def say(text):
    # Never die of a broken stderr (the parent may be gone): a stubborn child stays up.
    try:
        sys.stderr.write(text + "\\n")
        sys.stderr.flush()
    except OSError:
        pass

parser = BoxParser()
while True:
    data = os.read(0, 65536)
    if not data:
        say("end of input")
        if CONFIG["eof"] == "ignore":
            idle()
        sys.exit(CONFIG["eof_status"])
    for box in parser.feed(data):
        message = classify(box)
        if not isinstance(message, Request) or message.tag is None:
            continue
        name = message.command.lower()
        if name == "negotiate":
            if CONFIG["negotiate"] == "ignore":
                continue
            os.write(1, answer_bytes(message.tag, Box(version="1")))
            if CONFIG["close_stdout"]:
                os.close(1)
                say("closed stdout, still running")
        elif name == "shutdown":
            say("got Shutdown")
            if CONFIG["shutdown"] == "answer":
                os.write(1, answer_bytes(message.tag, Box()))
                sys.exit(0)
        elif name == "echo":
            os.write(1, answer_bytes(message.tag, Box(value=message.box["value"])))
"""


def juice_child(
    *,
    negotiate: Literal["answer", "ignore"] = "answer",
    shutdown: Literal["answer", "ignore"] = "answer",
    eof: Literal["exit", "ignore"] = "exit",
    eof_status: int = 0,
    sigterm: Literal["default", "ignore"] = "default",
    grandchild_pid_file: str | None = None,
    close_stdout: bool = False,
    leave_group: Literal["setsid", "setpgid"] | None = None,
    daemon: bool = False,
) -> list[str]:
    """argv of a minimal Juice child with the given misbehaviours (see the module docs)."""
    config = {
        "negotiate": negotiate,
        "shutdown": shutdown,
        "eof": eof,
        "eof_status": eof_status,
        "sigterm": sigterm,
        "grandchild_pid_file": grandchild_pid_file,
        "close_stdout": close_stdout,
        "leave_group": leave_group,
        "daemon": daemon,
    }
    return python(f"CONFIG = {config!r}\n" + _JUICE_CHILD)


IGNORES_SHUTDOWN = juice_child(shutdown="ignore")
"""Reads its stdin but never answers ``Shutdown``; exits 0 at end of input."""

IGNORES_SHUTDOWN_EXITS_1_AT_EOF = juice_child(shutdown="ignore", eof_status=1)
"""Ignores ``Shutdown``; exits with status 1 at end of input."""

IGNORES_SHUTDOWN_AND_EOF = juice_child(shutdown="ignore", eof="ignore")
"""Ignores ``Shutdown`` and end of input: only a signal ends it (SIGTERM will do)."""

IGNORES_SIGTERM = juice_child(shutdown="ignore", eof="ignore", sigterm="ignore")
"""Ignores ``Shutdown``, end of input and SIGTERM: only SIGKILL ends it."""

LEAVES_ITS_SESSION = juice_child(
    shutdown="ignore", eof="ignore", sigterm="ignore", leave_group="setsid"
)
"""Starts a session of its own (out of its group's signals) and ignores everything but
SIGKILL."""

LEAVES_ITS_GROUP = juice_child(shutdown="ignore", eof="ignore", leave_group="setpgid")
"""Leads a process group of its own (out of its group's signals) and ignores ``Shutdown`` and
end of input: SIGTERM ends it."""

NEVER_READY = juice_child(negotiate="ignore")
"""Never answers ``Negotiate``; exits 0 at end of input."""

CLOSES_STDOUT = juice_child(close_stdout=True, eof="ignore")
"""Answers ``Negotiate``, then closes its stdout and keeps running (even past end of input)."""


def with_grandchild(pid_file: str) -> list[str]:
    """A well-behaved child that spawns a grandchild (which ignores SIGTERM and holds the
    child's stdout and stderr) and writes the grandchild's pid to ``pid_file``."""
    return juice_child(grandchild_pid_file=pid_file)


def with_daemon(pid_file: str) -> list[str]:
    """As ``with_grandchild``, but the grandchild starts a session of its own: out of reach
    of the stop, it holds the child's stdout and stderr open after the child has gone."""
    return juice_child(grandchild_pid_file=pid_file, daemon=True)


CRASH_LOUDLY = python(
    """
    for i in range(200):
        sys.stderr.write(f"noise line {i} " + "x" * 60 + "\\n")
    sys.stderr.write("RuntimeError: cannot open the database\\n")
    sys.exit(7)
    """
)
"""Writes 200 lines (about 14 KiB) to stderr, then exits with status 7 before any answer."""


def parent_script(
    child_argv: list[str], *, then: Literal["sleep", "exit"], hook: bool = False
) -> list[str]:
    """argv of a parent process that starts a controller for ``child_argv`` (stop and kill
    timeouts 0.2 s), gets the child ready and prints ``PID <child pid>`` on stdout. Then it
    sleeps (``then="sleep"``: the test kills it) or reaches the end of the script without
    calling ``close()`` (``then="exit"``). ``hook`` adds an ``on_process_startup`` hook, whose
    actor must not keep the interpreter alive either."""
    source = textwrap.dedent(
        f"""
        import sys, time
        import structlog
        # Logs go to stderr: this script's stdout carries the child's pid to the test.
        structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
        from juicectl import ProcessController
        ctl = ProcessController.start(
            {child_argv!r},
            stop_timeout=0.2,
            kill_timeout=0.2,
            on_process_startup=(lambda: None) if {hook!r} else None,
        )
        connection = ctl.get_process().get(timeout=30)
        print("PID", connection.pid, flush=True)
        if {then!r} == "sleep":
            time.sleep(600)
        """
    )
    return [sys.executable, "-c", source]


def dying_parent_script(child_argv: list[str], *, after_spawns: int) -> list[str]:
    """argv of a parent that starts a controller for ``child_argv`` and SIGKILLs itself in
    the middle of the launch: right after its ``after_spawns``-th ``subprocess.Popen``
    returned (1: the parent-death guard only; 2: the guard and the child). It prints
    ``SPAWNED <pid>`` on stdout for each process it started, before it dies."""
    source = textwrap.dedent(
        f"""
        import os, signal, subprocess, sys
        import structlog
        structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
        spawned = []

        class DiesMidLaunch(subprocess.Popen):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                spawned.append(self.pid)
                print("SPAWNED", self.pid, flush=True)
                if len(spawned) == {after_spawns!r}:
                    os.kill(os.getpid(), signal.SIGKILL)

        subprocess.Popen = DiesMidLaunch
        from juicectl import ProcessController
        ctl = ProcessController.start({child_argv!r})
        ctl.get_process().get(timeout=30)
        print("NOT KILLED", flush=True)
        """
    )
    return [sys.executable, "-c", source]
