"""Ctrl-C while the application's main thread waits on juicectl raises ``KeyboardInterrupt``.

CPython runs the SIGINT handler only on the main thread, between bytecodes; a signal that
lands just before a wait blocks in C, or on another thread, is otherwise handled only when the
wait ends (for ever, for a ``get()`` with no timeout). Each case makes that happen every time:
the application blocks SIGINT on its main thread (``pthread_sigmask``) after starting a thread
that does not. That thread waits until the main thread sits in one of juicectl's waits, then
sends the SIGINT to itself. The application must end with the traceback of a
``KeyboardInterrupt`` raised in that wait (and the exit status of one), and leave no child
(interpreter exit stops it). Every wait is bounded, and the application is killed at the end
even if the test fails.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from juicectl._main_thread import MAIN_THREAD_SLICE, acquire, on_main_thread, one_slice, poll_slice
from tests.supervision.conftest import alive, wait_for

WAIT = 45.0
"""Seconds any step may take (a bound, never a speed test)."""

PRELUDE = '''
import os, signal, sys, threading, time

waiting = threading.Event()  # set by the application just before its wait


def in_juicectl(frame):
    while frame is not None:
        if f"{os.sep}juicectl{os.sep}" in frame.f_code.co_filename:
            return True
        frame = frame.f_back
    return False


def interrupt_the_wait():
    # SIGINT to this thread once the main thread has sat in juicectl's code for a while.
    waiting.wait()
    main, inside = threading.main_thread().ident, 0
    while inside < 5:
        time.sleep(0.05)
        inside = inside + 1 if in_juicectl(sys._current_frames().get(main)) else 0
    signal.pthread_kill(threading.get_ident(), signal.SIGINT)


threading.Thread(target=interrupt_the_wait, daemon=True).start()
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})  # threads started later block it too
'''

ECHO_WORKER = (
    '[sys.executable, "-m", "juicectl.child", "juicectl.examples.echo:EchoWorker"]'
)

WAITS = {
    "a reply future, no timeout": '''
from juicectl._future import ReplyFuture
waiting.set()
ReplyFuture().get()  # the wait
''',
    "a reply future, a long timeout": '''
from juicectl._future import ReplyFuture
waiting.set()
ReplyFuture().get(timeout=3600)  # the wait
''',
    "a write to a full pipe": '''
from juicectl._pipe import write_all
read_end, write_end = os.pipe()
os.set_blocking(write_end, False)
waiting.set()
write_all(write_end, b"x" * (1 << 22))  # the wait
''',
    "an answer, read by the caller": f'''
from juicectl import ProcessController
from juicectl.examples.echo import Sleep
controller = ProcessController.start({ECHO_WORKER})
connection = controller.get_process().get(timeout=30)
print("child", connection.pid, flush=True)
waiting.set()
connection.call(Sleep, seconds=3600).get()  # the wait
''',
    "a write to a child that reads nothing": f'''
from juicectl import ProcessController
from juicectl.examples.echo import Echo, Sleep
controller = ProcessController.start({ECHO_WORKER})
connection = controller.get_process().get(timeout=30)
print("child", connection.pid, flush=True)
connection.call(Sleep, seconds=3600)  # one at a time: the child reads nothing meanwhile
waiting.set()
for _ in range(64):
    connection.call(Echo, value="x" * 60_000)  # the wait
''',
    "a closing controller": f'''
from juicectl import ProcessController
from juicectl.examples.echo import Sleep
controller = ProcessController.start({ECHO_WORKER}, stop_timeout=3600)
connection = controller.get_process().get(timeout=30)
print("child", connection.pid, flush=True)
connection.call(Sleep, seconds=3600)
waiting.set()
controller.close(timeout=3600)  # the wait
''',
    "a request the pool holds": f'''
from juicectl import ProcessPool
from juicectl.examples.echo import Sleep
pool = ProcessPool.start({ECHO_WORKER}, size=1, max_per_worker=1)
pool.call(Sleep, seconds=0).get(timeout=30)
print("child", pool.stats()["workers"][0]["pid"], flush=True)
pool.call(Sleep, seconds=3600)
held = pool.call(Sleep, seconds=3600)
waiting.set()
held.get()  # the wait
''',
}


@pytest.mark.parametrize("wait", list(WAITS))
def test_ctrl_c_raises_in_the_wait(tmp_path: Path, wait: str) -> None:
    app = tmp_path / "app.py"
    app.write_text(textwrap.dedent(PRELUDE) + textwrap.dedent(WAITS[wait]), "utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    process = subprocess.Popen(
        [sys.executable, str(app)], cwd=tmp_path, env=env, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        out, err = process.communicate(timeout=WAIT)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    traceback = err[err.index("Traceback"):] if "Traceback" in err else err
    assert "# the wait\n" in traceback and "\nKeyboardInterrupt\n" in traceback, err
    # Python ends an uncaught Ctrl-C by SIGINT, or (as here, the signal blocked) with 130.
    assert process.returncode in (-signal.SIGINT, 128 + signal.SIGINT), err
    children = [int(line.removeprefix("child ")) for line in out.splitlines()]  # all it prints
    for pid in children:
        wait_for(lambda pid=pid: not alive(pid), timeout=WAIT, what=f"child {pid} gone")


def test_the_main_thread_waits_in_slices() -> None:
    assert on_main_thread()
    assert one_slice(None) == MAIN_THREAD_SLICE
    assert one_slice(3600.0) == MAIN_THREAD_SLICE
    assert one_slice(MAIN_THREAD_SLICE / 2) == MAIN_THREAD_SLICE / 2
    assert poll_slice() == MAIN_THREAD_SLICE * 1000.0


def test_other_threads_wait_in_one_piece() -> None:
    seen: list[object] = []

    def look() -> None:
        seen.extend([on_main_thread(), one_slice(None), one_slice(3600.0), poll_slice()])

    thread = threading.Thread(target=look)
    thread.start()
    thread.join(timeout=WAIT)
    assert seen == [False, None, 3600.0, None]


def test_a_sliced_acquire_times_out_and_takes_a_lock_released_late() -> None:
    lock = threading.Lock()
    lock.acquire()
    assert not acquire(lock, 3 * MAIN_THREAD_SLICE)  # several slices, then the deadline
    releaser = threading.Timer(3 * MAIN_THREAD_SLICE, lock.release)
    releaser.start()
    try:
        assert acquire(lock, None)  # taken in a later slice
    finally:
        releaser.join(timeout=WAIT)
    lock.release()
    assert acquire(lock, 3600.0)
