"""The worker the remote tests run on the "remote" side, and its commands (both sides import
this module; the remote side gets a copy, as ``remote_worker``).

Besides echoing, it tells where it runs (argv, cwd, environment, pid, process group), sleeps
without reading its input (a busy worker), and starts grandchildren that ignore SIGTERM: one
that stays in its process group, one that leaves it (a daemon: ``setsid()`` and a second
fork), so that a test can check that nothing is left.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from juicectl.child import JuiceChild
from juicectl.juice import Command, Float, Integer, String

_GRANDCHILD = (
    "import signal, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "signal.signal(signal.SIGHUP, signal.SIG_IGN)\n"
    "time.sleep(600)\n"
)
_DAEMON = (
    "import os, signal, sys, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "signal.signal(signal.SIGHUP, signal.SIG_IGN)\n"
    "os.setsid()\n"
    "if os.fork():\n"
    "    os._exit(0)\n"
    "time.sleep(600)\n"
)


class Echo(Command):
    """Answer with the value sent."""

    arguments = [("value", String())]
    response = [("value", String())]


class Where(Command):
    """Where the worker runs: its argv, cwd and environment (JSON), pid and process group."""

    response = [("argv", String()), ("cwd", String()), ("env", String()),
                ("pid", Integer()), ("pgid", Integer())]


class Sleep(Command):
    """Sleep without reading the input: a busy worker."""

    arguments = [("seconds", Float())]
    response = [("slept", Float())]


class Spawn(Command):
    """Start two grandchildren that ignore SIGTERM and SIGHUP, one in the worker's group and
    one that leaves it; answer when both run."""

    response = [("started", Integer())]


class Worker(JuiceChild):
    """Answers ``Echo``, ``Where``, ``Sleep`` and ``Spawn``."""

    @Echo.responder
    def echo(self, value: str) -> dict[str, str]:
        return {"value": value}

    @Where.responder
    def where(self) -> dict[str, object]:
        return {
            "argv": json.dumps(sys.argv),
            "cwd": os.getcwd(),
            "env": json.dumps(dict(os.environ)),
            "pid": os.getpid(),
            "pgid": os.getpgid(0),
        }

    @Sleep.responder
    def sleep(self, seconds: float) -> dict[str, float]:
        time.sleep(seconds)
        return {"slept": seconds}

    @Spawn.responder
    def spawn(self) -> dict[str, int]:
        for code in (_GRANDCHILD, _DAEMON):
            subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.3)  # both have set their signals and the daemon has left the group
        return {"started": 2}
