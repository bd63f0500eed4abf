"""The remote shim, run here: it passes the worker's exit back, and ends the worker's whole
process group (grandchildren that left it included) when its stdin hangs up, its stdout
loses its reader, it is told to end, or its parent dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator

import pytest

from juicectl import ProcessController, ProcessLaunchError, ProcessUnavailable, prefix
from juicectl.launch import shim_source
from tests.remote.harness import MARK, ROOT, processes_marked
from tests.remote.worker import Sleep, Spawn, Where
from tests.supervision.conftest import alive, wait_for

GONE_WITHIN = 20.0
# A worker that ignores SIGTERM and starts two grandchildren that ignore it too: one in its
# group, one that leaves it (setsid, then a second fork).
STUBBORN = textwrap.dedent("""
    import os, signal, subprocess, sys, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # Each grandchild writes a byte once it ignores SIGTERM (the daemon: once it has left).
    ready_r, ready_w = os.pipe()
    code = ("import os, signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "{detach}os.write(int(sys.argv[1]), b'x'); time.sleep(600)")
    started = [
        subprocess.Popen([sys.executable, "-c", code.format(detach=detach), str(ready_w)],
                         pass_fds=[ready_w])
        for detach in ("", "os.setsid(); os.fork() and os._exit(0); ")
    ]
    os.close(ready_w)
    got = b""
    while len(got) < 2:
        got += os.read(ready_r, 2)
    started[1].wait()  # the daemon's first process: it may not have exited when it wrote
    print("ready", flush=True)
    time.sleep(600)
""")


@pytest.fixture
def mark() -> Iterator[str]:
    value = uuid.uuid4().hex
    yield value
    try:
        wait_for(lambda: not processes_marked(value), GONE_WITHIN, "no marked process left")
    finally:
        for pid in processes_marked(value):
            os.kill(pid, signal.SIGKILL)


def shim(*words: str, mark: str, grace: float = 0.3, **popen: object) -> subprocess.Popen[bytes]:
    """The shim, as the launchers send it, running ``words``."""
    env = {**os.environ, MARK: mark}
    return subprocess.Popen(
        [sys.executable, "-I", "-S", "-c", shim_source(), "-g", str(grace), "--", *words],
        env=env, **popen,  # type: ignore[call-overload]
    )


def stubborn(mark: str) -> subprocess.Popen[bytes]:
    process = shim(sys.executable, "-c", STUBBORN, mark=mark, stdin=subprocess.PIPE,
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None
    assert process.stdout.readline() == b"ready\n"
    assert len(processes_marked(mark)) == 4  # the shim, the worker, two grandchildren
    return process


def finish(process: subprocess.Popen[bytes]) -> tuple[int, str]:
    status = process.wait(timeout=GONE_WITHIN)
    assert process.stderr is not None
    text = process.stderr.read().decode()
    for stream in (process.stdin, process.stdout, process.stderr):
        if stream is not None:
            stream.close()
    return status, text


def test_the_exit_status_comes_back(mark: str) -> None:
    process = shim("sh", "-c", "exit 3", mark=mark, stderr=subprocess.PIPE)
    assert finish(process) == (3, "")


def test_a_signal_comes_back_as_128_plus_it_with_a_line(mark: str) -> None:
    process = shim("sh", "-c", "kill -9 $$", mark=mark, stderr=subprocess.PIPE)
    status, text = finish(process)
    assert status == 128 + 9
    assert "juicectl-shim: the worker (pid" in text and "killed by SIGKILL (signal 9)" in text


@pytest.mark.parametrize(
    ("words", "said"),
    [
        (["no-such-program-here"], "cannot run ['no-such-program-here']: No such file"),
        (["/tmp"], "Permission denied"),
    ],
)
def test_a_worker_that_cannot_start_is_status_127_and_says_why(
    mark: str, words: list[str], said: str
) -> None:
    status, text = finish(shim(*words, mark=mark, stderr=subprocess.PIPE))
    assert status == 127
    assert said in text


def test_stdin_hangup_ends_the_group_and_the_daemon(mark: str) -> None:
    process = stubborn(mark)
    assert process.stdin is not None
    process.stdin.close()
    status, text = finish(process)
    assert status == 128 + 9  # it ignored SIGTERM
    assert "with SIGKILL (signal 9): its input closed" in text
    assert processes_marked(mark) == []


def test_stdout_losing_its_reader_ends_the_group(mark: str) -> None:
    process = stubborn(mark)
    assert process.stdout is not None
    process.stdout.close()
    status, text = finish(process)
    assert status == 128 + 9
    assert "its output lost its reader" in text
    assert processes_marked(mark) == []


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_signal_to_the_shim_ends_the_group(mark: str, signum: int) -> None:
    process = stubborn(mark)
    process.send_signal(signum)
    status, text = finish(process)
    assert status == 128 + 9
    assert f"the shim got {signal.Signals(signum).name}" in text
    assert processes_marked(mark) == []


# A worker that moves into the process group of a child of its own: the group the shim made
# for it is left empty.
MOVES_GROUP = textwrap.dedent("""
    import os, subprocess, sys, time
    leader = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                              process_group=0)
    os.setpgid(0, leader.pid)
    print("ready", flush=True)
    time.sleep(600)
""")


def test_a_worker_that_moved_to_another_group_still_gets_the_signals(mark: str) -> None:
    process = shim(sys.executable, "-c", MOVES_GROUP, mark=mark, stdin=subprocess.PIPE,
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None and process.stdin is not None
    assert process.stdout.readline() == b"ready\n"
    process.stdin.close()
    status, text = finish(process)
    assert status == 128 + signal.SIGTERM, text
    assert "with SIGTERM (signal 15): its input closed" in text
    assert processes_marked(mark) == []  # its child, re-parented to the shim, too


def test_a_shim_killed_outright_takes_its_worker_along(mark: str) -> None:
    # SIGKILL leaves the shim no time to end the group; the worker's parent-death signal
    # ends the worker (grandchildren would be left to the subreaper above, or to init).
    worker = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
              "print('ready', flush=True); time.sleep(600)")
    process = shim(sys.executable, "-c", worker, mark=mark, stdin=subprocess.PIPE,
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None
    assert process.stdout.readline() == b"ready\n"
    assert len(processes_marked(mark)) == 2  # the shim and the worker
    process.kill()
    assert finish(process)[0] == -signal.SIGKILL
    wait_for(lambda: not processes_marked(mark), GONE_WITHIN, "the worker gone")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux's")
def test_the_shim_starts_light_and_still_sets_the_parent_death_signal(mark: str) -> None:
    # The shim's start-up is on the path of every remote start: ctypes (3 to 5 ms), typing
    # and enum (5 to 10 ms) stay out of it, and prctl still reaches the kernel.
    read_signal = (
        "import ctypes; value = ctypes.c_int(); "
        "ctypes.CDLL(None).prctl(2, ctypes.byref(value), 0, 0, 0); print(value.value)"
    )
    env = {**os.environ, MARK: mark}
    env.pop("PYTHONPROFILEIMPORTTIME", None)
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-X", "importtime", "-c", shim_source(), "--",
         sys.executable, "-I", "-c", read_signal],
        env=env, capture_output=True, text=True, timeout=GONE_WITHIN,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(int(signal.SIGKILL))  # PR_GET_PDEATHSIG in the worker
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()
                if line.startswith("import time:")}
    assert "posix" in imported  # the report is there: the shim's own imports are listed
    assert not imported & {"ctypes", "typing", "enum", "signal"}


def test_the_death_of_its_parent_ends_the_group(mark: str) -> None:
    # The shim's stdin and stdout stay open (this test holds them): only its parent dies.
    parent_code = textwrap.dedent("""
        import subprocess, sys, time
        child = subprocess.Popen(sys.argv[1:], stdin=0, stdout=1)
        sys.stderr.write(f"{child.pid}\\n")
        sys.stderr.flush()
        time.sleep(600)
    """)
    parent = subprocess.Popen(
        [sys.executable, "-c", parent_code, sys.executable, "-I", "-S", "-c", shim_source(),
         "-g", "0.3", "--", sys.executable, "-c", STUBBORN],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, MARK: mark},
    )
    try:
        assert parent.stderr is not None and parent.stdout is not None
        shim_pid = int(parent.stderr.readline())
        assert parent.stdout.readline() == b"ready\n"
        parent.kill()
        parent.wait(timeout=10)
        wait_for(lambda: not alive(shim_pid), GONE_WITHIN, "the shim gone")
        wait_for(lambda: not processes_marked(mark), GONE_WITHIN, "its group gone")
    finally:
        parent.kill()
        parent.wait(timeout=10)
        for stream in (parent.stdin, parent.stdout, parent.stderr):
            if stream is not None:
                stream.close()


WORKER = [sys.executable, "-c", "from juicectl.child import run; "
          "from tests.remote.worker import Worker; run(Worker)"]


def start(mark: str, launcher: object, **options: object) -> ProcessController:
    return ProcessController.start(
        WORKER, launcher=launcher, cwd=str(ROOT),  # type: ignore[arg-type]
        env={**os.environ, MARK: mark}, stop_timeout=0.5, kill_timeout=1.0,
        **options,  # type: ignore[arg-type]
    )


def test_behind_a_prefix_that_detaches_a_busy_stop_ends_only_once_the_group_is_gone(
    mark: str,
) -> None:
    # setsid puts the shim out of reach of the controller's group signals: only the shim's
    # ending, started by closing its stdin, can end the worker and its grandchildren.
    with start(mark, prefix(["setsid", "--wait"])) as controller:
        connection = controller.get_process().get(timeout=20)
        where = connection.call(Where).get(timeout=10)
        assert where["pgid"] == where["pid"]  # the worker leads its own group
        connection.call(Spawn).get(timeout=10)
        busy = connection.call(Sleep, seconds=60)
        result = controller.stop_process().get(timeout=20)
        assert processes_marked(mark) == []
        assert result.how == "stdin_closed"
        assert "the shim ended it with SIGTERM" in result.reason.describe()
        with pytest.raises(ProcessUnavailable):
            busy.get(timeout=10)


def test_behind_a_prefix_a_missing_program_is_a_launch_error(mark: str) -> None:
    expected = (
        r"cannot launch \['no-such-worker'\]: on prefix env: juicectl-shim: cannot run "
        r"\['no-such-worker'\]: No such file or directory"
    )
    with (
        ProcessController.start(["no-such-worker"], launcher=prefix(["env"])) as controller,
        pytest.raises(ProcessLaunchError, match=expected),
    ):
        controller.get_process().get(timeout=20)


def test_a_worker_killed_from_outside_is_a_signal_juicectl_did_not_send(mark: str) -> None:
    with start(mark, prefix(["setsid", "--wait"])) as controller:
        connection = controller.get_process().get(timeout=20)
        worker = connection.call(Where).get(timeout=10)["pid"]
        os.kill(worker, signal.SIGKILL)
        wait_for(lambda: controller.stats()["last_exit"] is not None, GONE_WITHIN, "the exit")
        last = controller.stats()["last_exit"]
        assert last["signal"] == signal.SIGKILL and last["how"] == "signaled"
        assert "killed by SIGKILL, a signal juicectl did not send (on prefix setsid" in (
            last["description"]
        )


# An application that starts the test worker behind an exec prefix, gives it two
# grandchildren (one in its group, one that left it), says so, and waits to be killed.
PREFIXED_APP = textwrap.dedent("""
    import sys, time
    from juicectl import ProcessController, prefix
    from tests.remote.worker import Spawn
    controller = ProcessController.start(
        [sys.executable, "-m", "juicectl.child", "tests.remote.worker:Worker"],
        launcher=prefix(sys.argv[1:]), cwd=sys.path[0] or ".",
    )
    print(controller.call(Spawn, timeout=20)["started"], flush=True)
    time.sleep(600)
""")


@pytest.mark.parametrize("words", [["env", "X=1"], ["sh", "-c", '"$@"', "prefix"]],
                         ids=["execs", "waits"])
def test_behind_a_prefix_the_parent_sigkilled_leaves_no_grandchild(
    mark: str, words: list[str],
) -> None:
    # The parent-death guard kills its group at once; the shim, out of that group, sees its
    # parent die and ends the worker's group, the daemon that left it included.
    app = subprocess.Popen(
        [sys.executable, "-c", PREFIXED_APP, *words], cwd=ROOT, stdout=subprocess.PIPE,
        env={**os.environ, MARK: mark, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert app.stdout is not None
        assert app.stdout.readline() == b"2\n"
        assert len(processes_marked(mark)) >= 3  # the worker and its two grandchildren
        app.kill()
        app.wait(timeout=10)
        wait_for(lambda: not processes_marked(mark), GONE_WITHIN, "no marked process left")
    finally:
        app.kill()
        app.wait(timeout=10)
        if app.stdout is not None:
            app.stdout.close()
