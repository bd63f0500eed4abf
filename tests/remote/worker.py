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

# A grandchild that ignores SIGTERM and SIGHUP, then writes a byte to the fd in its argv
# (``{detach}``: leave the group first, as a daemon does) and sleeps.
_GRANDCHILD = (
    "import os, signal, sys, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "signal.signal(signal.SIGHUP, signal.SIG_IGN)\n"
    "{detach}"
    "os.write(int(sys.argv[1]), b'x')\n"
    "time.sleep(600)\n"
)
_DETACH = "os.setsid()\nif os.fork():\n    os._exit(0)\n"


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
        ready_r, ready_w = os.pipe()
        started = [
            subprocess.Popen([sys.executable, "-c", _GRANDCHILD.format(detach=detach),
                              str(ready_w)], pass_fds=[ready_w], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for detach in ("", _DETACH)
        ]
        os.close(ready_w)
        got = b""
        while len(got) < 2:  # both have set their signals; the daemon has left the group
            chunk = os.read(ready_r, 2)
            if not chunk:
                break
            got += chunk
        os.close(ready_r)
        # The daemon's first process exits once it has forked, but may not have yet when the
        # daemon signals: reaped here, so that the answer finds the four processes alone.
        started[1].wait(timeout=30)
        return {"started": len(got)}
