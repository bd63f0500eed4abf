"""How an application that embeds juicectl ends: Ctrl-C, ``stop_all()``, interpreter exit.

Each case runs a small application in a subprocess and reads its stdout, stderr and exit
status. The application starts a controller on the shipped echo worker, prints the child's
pid, makes a call, and then ends in one of the ways an application ends. The child is stopped
as ``stop_process()`` stops it (``Shutdown`` first: ``clean``), and is gone afterwards.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.presses import IN_PAUSE, wait_until_blocked_in
from tests.supervision.conftest import alive, wait_for

#: Where a thread waits on a lock (the main thread in a future's get(), between its slices).
IN_FUTEX = "futex"

START = '''
import signal, sys
import pykka
from juicectl import ProcessController
from juicectl.examples.echo import Echo

argv = [sys.executable, "-m", "juicectl.child", "juicectl.examples.echo:EchoWorker"]
ctl = ProcessController.start(argv, name="app")
print("pid", ctl.get_process().get(timeout=30).pid, flush=True)
print(ctl.call(Echo, value="hi", timeout=10)["value"], flush=True)
'''

PYKKA_APP = '''
class App(pykka.ThreadingActor):
    """The application's own actor: it closes the controller as it stops."""

    def __init__(self, controller):
        super().__init__()
        self.controller = controller

    def on_stop(self):
        result = self.controller.close()
        print("closed:", result.how, result.reason.stop_step, flush=True)

App.start(ctl)
try:
    print("waiting", flush=True)
    signal.pause()  # until Ctrl-C
except KeyboardInterrupt:
    print("interrupted", flush=True)
finally:
    pykka.ActorRegistry.stop_all()
'''

# Registered before juicectl is imported, so it runs after juicectl's own exit-time close
# (atexit runs its handlers last registered, first run).
REPORT_AT_EXIT = '''
import atexit
def report():
    last_exit = ctl.stats()["last_exit"]
    print("at exit:", last_exit["how"], last_exit["requested"], flush=True)
atexit.register(report)
'''


# Python 3.12 refuses to start a thread from an atexit handler; 3.11 and 3.13 allow it. Run
# last registered, first run, this makes any Python refuse as 3.12 does, before juicectl's own
# exit handlers run.
REFUSE_THREADS_AT_EXIT = '''
import threading
def refuse_threads():
    def start(self):
        raise RuntimeError("can't create new thread at interpreter shutdown")
    threading.Thread.start = start
atexit.register(refuse_threads)
'''


def start_app(tmp_path: Path, source: str) -> tuple[subprocess.Popen[str], int]:
    """Run ``source`` as ``app.py``; return it, once it has printed its child's pid and the
    answer, with that pid."""
    app = tmp_path / "app.py"
    app.write_text(textwrap.dedent(source), "utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    process = subprocess.Popen(
        [sys.executable, str(app)], cwd=tmp_path, env=env, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert process.stdout is not None
    first = process.stdout.readline()
    if not first.startswith("pid "):
        process.kill()
        raise AssertionError(f"the app did not start: {first!r} {process.communicate()}")
    assert process.stdout.readline() == "hi\n"
    return process, int(first.split()[1])


def finish(process: subprocess.Popen[str]) -> tuple[str, str]:
    try:
        return process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_ctrl_c_in_a_pykka_application_stops_the_child_cleanly(tmp_path: Path) -> None:
    process, pid = start_app(tmp_path, START + PYKKA_APP)
    assert process.stdout is not None and process.stdout.readline() == "waiting\n"
    wait_until_blocked_in(process.pid, IN_PAUSE)
    process.send_signal(signal.SIGINT)
    stdout, stderr = finish(process)
    assert stdout == "interrupted\nclosed: clean shutdown\n"
    assert stderr == ""
    assert process.returncode == 0
    wait_for(lambda: not alive(pid), what=f"child {pid} gone")


@pytest.mark.parametrize("threads", ["", REFUSE_THREADS_AT_EXIT], ids=["threads", "no-threads"])
def test_interpreter_exit_without_close_stops_the_child_cleanly(
    tmp_path: Path, threads: str
) -> None:
    # Without a helper thread, the Shutdown that one writes is written by the process actor.
    process, pid = start_app(tmp_path, REPORT_AT_EXIT + START + threads)
    stdout, stderr = finish(process)
    assert stdout == "at exit: clean True\n"
    assert stderr == ""
    assert process.returncode == 0
    wait_for(lambda: not alive(pid), what=f"child {pid} gone")


def test_unhandled_ctrl_c_still_stops_the_child_at_exit(tmp_path: Path) -> None:
    source = REPORT_AT_EXIT + START + "print('waiting', flush=True)\nsignal.pause()\n"
    process, pid = start_app(tmp_path, source)
    assert process.stdout is not None and process.stdout.readline() == "waiting\n"
    wait_until_blocked_in(process.pid, IN_PAUSE)
    process.send_signal(signal.SIGINT)
    stdout, stderr = finish(process)
    assert stdout == "at exit: clean True\n"
    assert stderr.startswith("Traceback (most recent call last):")
    assert stderr.rstrip().endswith("KeyboardInterrupt")
    # Python ends an unhandled KeyboardInterrupt by dying of SIGINT, as the shell expects.
    assert process.returncode == -signal.SIGINT
    wait_for(lambda: not alive(pid), what=f"child {pid} gone")

# Registered before juicectl is imported, so it runs after juicectl's exit-time close: are
# the children in ``pids`` gone (or zombies nobody reaped yet)?
REPORT_GONE_AT_EXIT = '''
import atexit, gc, os, sys, time
def report():
    gone = [pid for pid in pids if not os.path.exists(f"/proc/{pid}")
            or open(f"/proc/{pid}/stat").read().split()[2] == "Z"]
    print("at exit: children gone", sorted(gone) == sorted(pids), flush=True)
atexit.register(report)
'''

POOL_AT_EXIT = REPORT_GONE_AT_EXIT + '''
from juicectl import ProcessPool
from juicectl.examples.echo import Echo
argv = [sys.executable, "-m", "juicectl.child", "juicectl.examples.echo:EchoWorker"]
pool = ProcessPool.start(argv, size=2, name="app")
deadline = time.monotonic() + 30
while pool.stats()["size"] < 2 and time.monotonic() < deadline:
    time.sleep(0.01)
pids = [w["pid"] for w in pool.stats()["workers"]]
print("pid", pids[0], flush=True)
print(pool.call(Echo, value="hi").get(timeout=10)["value"], flush=True)
'''


@pytest.mark.parametrize("threads", ["", REFUSE_THREADS_AT_EXIT], ids=["threads", "no-threads"])
def test_interpreter_exit_stops_an_open_pools_workers(tmp_path: Path, threads: str) -> None:
    # Without a thread each, the pool closes its workers one at a time, on its own thread.
    process, _ = start_app(tmp_path, POOL_AT_EXIT + threads)
    stdout, stderr = finish(process)
    assert stdout == "at exit: children gone True\n"
    assert stderr == ""
    assert process.returncode == 0


DROPPED = REPORT_GONE_AT_EXIT + '''
from juicectl import ProcessController, ProcessPool
from juicectl.examples.echo import Echo
argv = [sys.executable, "-m", "juicectl.child", "juicectl.examples.echo:EchoWorker"]

def use_a_controller():
    ctl = ProcessController.start(argv, name="dropped")
    pid = ctl.get_process().get(timeout=30).pid
    assert ctl.call(Echo, value="hi", timeout=10)["value"] == "hi"
    return [pid]

def use_a_pool():
    pool = ProcessPool.start(argv, size=2, name="dropped")
    deadline = time.monotonic() + 30
    while pool.stats()["size"] < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert pool.call(Echo, value="hi").get(timeout=10)["value"] == "hi"
    return [w["pid"] for w in pool.stats()["workers"]]

pids = use_a_controller() if sys.argv[1:] == ["controller"] else use_a_pool()
gc.collect()  # the handle is gone; its actors and children are not
print("pid", pids[0], flush=True)
print("hi", flush=True)
'''


@pytest.mark.parametrize("what", ["controller", "pool"])
def test_interpreter_exit_stops_a_dropped_handles_children(tmp_path: Path, what: str) -> None:
    # An application that let go of its handle without close() (as ``async def main()`` does
    # with a local) still has its actors and children: exit stops them as any others.
    app = tmp_path / "app.py"
    app.write_text(DROPPED, "utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    done = subprocess.run([sys.executable, str(app), what], cwd=tmp_path, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert done.stdout.splitlines()[-1] == "at exit: children gone True", done
    assert done.stderr == ""
    assert done.returncode == 0


# A worker with one command that keeps it busy (the end of each worker's source below).
BUSY_WORKER = '''
from juicectl.child import JuiceChild
from juicectl.juice import Command, Float

class Busy(Command):
    arguments = [("seconds", Float())]

class Worker(JuiceChild):
    @Busy.responder
    def busy(self, seconds):
        time.sleep(seconds)
        return {}
'''


# A worker whose SIGTERM is a rendezvous: it notes its pid in a shared file, then waits
# (bounded, a little less than the stop's next step) until every child has noted its own,
# says how many it saw, and exits. Children stopped one after another would each see only
# the pids before them.
RENDEZVOUS_WORKER = '''
import os, signal, sys, time

SEEN = os.environ["RENDEZVOUS"]
EVERYONE = int(os.environ["RENDEZVOUS_OF"])

def rendezvous(signum, frame):
    with open(SEEN, "a") as seen:
        seen.write(f"{os.getpid()}\\n")
    deadline = time.monotonic() + 3.5
    while time.monotonic() < deadline:
        with open(SEEN) as seen:
            count = len(seen.read().split())
        if count >= EVERYONE:
            break
        time.sleep(0.02)
    with open(SEEN + ".saw", "a") as saw:
        saw.write(f"{count}\\n")
    os._exit(0)

signal.signal(signal.SIGTERM, rendezvous)
''' + BUSY_WORKER

# Three busy children, left open at exit (the pools' workers among them, with a controller of
# the application's own). Shutdown waits behind the busy request and end of input is not
# read, so SIGTERM comes after stop_timeout + kill_timeout.
LEFT_BUSY = '''
import os, sys, time
from juicectl import ProcessController, ProcessPool
from rendezvous_worker import Busy
argv = [sys.executable, "-m", "juicectl.child", "rendezvous_worker:Worker"]
bounds = {"stop_timeout": 0.1, "kill_timeout": 4.0}
if sys.argv[1] == "controllers":
    for number in range(3):
        ctl = ProcessController.start(argv, name=f"busy{number}", **bounds)
        ctl.get_process().get(timeout=30).call(Busy, seconds=600)
else:
    for number in range(2):
        pool = ProcessPool.start(argv, size=1, name=f"busy{number}", **bounds)
        pool.call(Busy, seconds=600)
    ctl = ProcessController.start(argv, name="alone", **bounds)
    ctl.get_process().get(timeout=30).call(Busy, seconds=600)
time.sleep(0.5)  # the calls written
if sys.argv[2] == "stop_all":
    import pykka
    pykka.ActorRegistry.stop_all()
    print("stopped", flush=True)
print("leaving", flush=True)
'''


@pytest.mark.parametrize("ending", ["exit", "stop_all"])
@pytest.mark.parametrize("kind", ["controllers", "pools"])
def test_exit_and_stop_all_stop_every_busy_child_at_once(
    tmp_path: Path, kind: str, ending: str
) -> None:
    # stop_all() stops one actor at a time, each waiting for its child: the first process
    # actor it stops tells every controller to close, so the children stop in parallel.
    (tmp_path / "rendezvous_worker.py").write_text(RENDEZVOUS_WORKER)
    app = tmp_path / "app.py"
    app.write_text(LEFT_BUSY)
    seen = tmp_path / "seen"
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "RENDEZVOUS": str(seen),
           "RENDEZVOUS_OF": "3"}
    done = subprocess.run([sys.executable, str(app), kind, ending], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ("stopped\nleaving\n" if ending == "stop_all" else "leaving\n")
    pids = [int(pid) for pid in seen.read_text().split()]
    assert len(pids) == 3
    # Each child got its SIGTERM while the others were still there to get theirs.
    assert (tmp_path / "seen.saw").read_text().split() == ["3", "3", "3"]
    for pid in pids:
        wait_for(lambda pid=pid: not alive(pid), what=f"child {pid} gone")


HANGS_BEFORE_READY = '''
import os, signal, sys, time
from pathlib import Path
from juicectl import ProcessController

pid_file = Path("child.pid")
child = [sys.executable, "-c",
         "import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(600)",
         str(pid_file)]
# A start that would take ten minutes: the application must not wait for it to end.
ctl = ProcessController.start(child, name="app", startup_timeout=600.0, kill_timeout=0.5)
getter = ctl.get_process()
while not pid_file.exists():
    time.sleep(0.01)
print("starting", flush=True)
if sys.argv[1] == "close":
    print("closed:", ctl.close().how, flush=True)
elif sys.argv[1] == "ctrl_c":
    try:
        print("waiting", flush=True)
        getter.get(timeout=600)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
print("leaving", flush=True)
'''


@pytest.mark.parametrize("ending", ["exit", "close", "ctrl_c"])
def test_an_application_ends_at_once_while_its_child_is_still_starting(
    tmp_path: Path, ending: str
) -> None:
    app = tmp_path / "app.py"
    app.write_text(HANGS_BEFORE_READY, "utf-8")
    # Unbuffered: the lines read here must not take what communicate() reads after.
    process = subprocess.Popen(
        [sys.executable, str(app), ending], cwd=tmp_path, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0,
    )
    assert process.stdout is not None
    assert process.stdout.readline() == b"starting\n"
    pid = int((tmp_path / "child.pid").read_text())
    if ending == "ctrl_c":
        assert process.stdout.readline() == b"waiting\n"
        wait_until_blocked_in(process.pid, IN_FUTEX)  # in get(), between its slices
        process.send_signal(signal.SIGINT)
    try:
        out, err = process.communicate(timeout=60)  # against the start's 600 s
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    stdout, stderr = out.decode(), err.decode()
    expected = {"exit": "leaving\n", "close": "closed: terminated\nleaving\n",
                "ctrl_c": "interrupted\nleaving\n"}[ending]
    assert stdout == expected, stderr
    assert process.returncode == 0, stderr
    wait_for(lambda: not alive(pid), what=f"child {pid} gone")


# A worker that notes the SIGTERM of the stop's escalation before it dies of it, and a call
# that keeps it busy: its Shutdown waits behind the call, so only SIGTERM ends it.
NOTES_SIGTERM = '''
import os, signal, time

def note(signum, frame):
    with open(os.environ["SIGTERM_FILE"], "a") as notes:
        notes.write("SIGTERM\\n")
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)

signal.signal(signal.SIGTERM, note)
''' + BUSY_WORKER

# As REPORT_AT_EXIT, for a controller whose actors may have stopped before its child did
# (stop_all(): then how the child ended reaches no one).
REPORT_IF_KNOWN_AT_EXIT = '''
import atexit
def report():
    last_exit = ctl.stats().get("last_exit")  # a pool's has none
    print("at exit:", *((last_exit["how"], last_exit["requested"]) if last_exit else ["-"]),
          flush=True)
atexit.register(report)
'''

BUSY_APP = REPORT_IF_KNOWN_AT_EXIT + '''
import signal, sys
import pykka
from juicectl import ProcessController
from notes_sigterm import Busy
argv = [sys.executable, "-m", "juicectl.child", "notes_sigterm:Worker"]
bounds = {"stop_timeout": float(sys.argv[2]), "kill_timeout": 5.0}
if sys.argv[1] == "pool_interrupted_close":
    from juicectl import ProcessPool
    ctl = ProcessPool.start(argv, size=1, name="app", **bounds)
    ctl.call(Busy, seconds=0).get(timeout=30)
    print("pid", ctl.stats()["workers"][0]["pid"], flush=True)
    ctl.call(Busy, seconds=600)
else:
    ctl = ProcessController.start(argv, name="app", **bounds)
    connection = ctl.get_process().get(timeout=30)
    print("pid", connection.pid, flush=True)
    connection.call(Busy, seconds=600)
if sys.argv[1] == "stop_all_no_block":
    pykka.ActorRegistry.stop_all(block=False)
else:
    try:
        print("closing", flush=True)
        ctl.close()
    except KeyboardInterrupt:
        print("interrupted", flush=True)
    if sys.argv[1] == "close_again":
        print("closed again:", ctl.close().how, flush=True)
print("leaving", flush=True)
'''


@pytest.mark.parametrize(
    "ending", ["interrupted_close", "close_again", "stop_all_no_block", "pool_interrupted_close"]
)
def test_a_stop_cut_short_by_the_application_still_ends_with_the_whole_escalation(
    tmp_path: Path, ending: str
) -> None:
    # A close() that Ctrl-C interrupts, or a stop_all() that does not wait, has begun the
    # child's stop: the exit (or the next close()) waits for it to end, so the busy child gets
    # its SIGTERM and is not left to the parent-death guard's SIGKILL. Ctrl-C hurries the
    # stop: SIGTERM at once, where the polite steps would have waited an hour (stop_timeout).
    (tmp_path / "notes_sigterm.py").write_text(NOTES_SIGTERM)
    (tmp_path / "app.py").write_text(BUSY_APP)
    notes = tmp_path / "sigterm"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("PYTHON")},
           "PYTHONPATH": str(tmp_path), "SIGTERM_FILE": str(notes)}
    stop_timeout = "0.2" if ending == "stop_all_no_block" else "3600"
    process = subprocess.Popen(
        [sys.executable, str(tmp_path / "app.py"), ending, stop_timeout], cwd=tmp_path, env=env,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith(b"pid "), (first, process.communicate(timeout=60))
        pid = int(first.split()[1])
        if ending != "stop_all_no_block":
            assert process.stdout.readline() == b"closing\n"
            wait_until_blocked_in(process.pid, IN_FUTEX)  # close() waits for the stop
            process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    expected = {
        "interrupted_close": "interrupted\nleaving\nat exit: terminated True\n",
        "close_again": "interrupted\nclosed again: terminated\nleaving\nat exit: terminated True\n",
        "stop_all_no_block": "leaving\nat exit: -\n",
        "pool_interrupted_close": "interrupted\nleaving\nat exit: -\n",
    }[ending]
    assert out.decode() == expected, err.decode()
    assert process.returncode == 0, err.decode()
    assert notes.read_text() == "SIGTERM\n"
    wait_for(lambda: not alive(pid), what=f"child {pid} gone")


FORKS = '''
import os, sys
from juicectl import ProcessController
from juicectl.examples.echo import Echo
argv = [sys.executable, "-m", "juicectl.child", "juicectl.examples.echo:EchoWorker"]
ctl = ProcessController.start(argv, name="app")
print(ctl.call(Echo, value="before", timeout=30)["value"], flush=True)
forked = os.fork()
if forked == 0:
    sys.exit(0)  # the controller, its actors and its child are the parent's, not this one's
_, status = os.waitpid(forked, 0)
print("forked process exited", os.waitstatus_to_exitcode(status), flush=True)
print(ctl.call(Echo, value="after", timeout=30)["value"], flush=True)
'''


def test_a_process_forked_from_the_application_exits_without_closing_its_parents(
    tmp_path: Path,
) -> None:
    # A fork (a pre-fork server, a daemonizing helper) copies the exit-time close's list of
    # handles, but none of the actors' threads: closing them there would wait its whole
    # bound for threads that do not exist and log close_timed_out. The parent's controller
    # goes on serving.
    (tmp_path / "app.py").write_text(FORKS)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    done = subprocess.run([sys.executable, str(tmp_path / "app.py")], cwd=tmp_path, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=90)
    assert done.stdout == "before\nforked process exited 0\nafter\n", done.stderr
    assert done.stderr == ""
    assert done.returncode == 0
