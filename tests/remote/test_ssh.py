"""Workers on another host, through a real OpenSSH server on loopback: every promise of a
local child holds, and every failure of the link is a crash that names the host and ssh's
own words. After each test nothing that carries its marker runs on the remote side (the
``mark`` fixture waits for that, bounded)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from juicectl import (
    Connection,
    ControllerClosed,
    LaunchSpec,
    ProcessController,
    ProcessLaunchError,
    ProcessUnavailable,
    ReplyFuture,
    RestartPolicy,
)
from juicectl.launch import SshSession, spawn
from tests.remote.conftest import FAST, GONE_WITHIN, remote_gone
from tests.remote.harness import Harness, Relay, Sshd
from tests.remote.test_quoting import HOSTILE
from tests.remote.worker import Echo, Sleep, Spawn, Where
from tests.supervision.conftest import alive, wait_for

Remote = Callable[..., ProcessController]
TEMPORARY = RestartPolicy(mode="temporary")
BOTH = pytest.mark.parametrize("control_master", [True, False], ids=["master", "direct"])


def busy_with_grandchildren(
    controller: ProcessController, harness: Harness, mark: str
) -> tuple[Connection, Any]:
    """Get the worker, have it start two grandchildren, then a long request."""
    connection = controller.get_process().get(timeout=30)
    connection.call(Spawn).get(timeout=30)
    assert len(harness.marked(mark)) == 4  # the shim, the worker, two grandchildren
    return connection, connection.call(Sleep, seconds=600)


@BOTH
def test_calls_go_to_the_remote_worker_with_argv_cwd_and_env_as_given(
    remote: Remote, harness: Harness, mark: str, control_master: bool
) -> None:
    controller = remote(harness.worker_argv_with(*HOSTILE), cwd="/tmp",
                        env=harness.worker_env(mark, ODD="$x; 'y'\n"),
                        ssh={"control_master": control_master})
    assert controller.call(Echo, value="hi\r\n~.") == {"value": "hi\r\n~."}
    where = controller.call(Where)
    assert json.loads(where["argv"]) == ["-c", *HOSTILE]
    assert where["cwd"] == "/tmp"
    env = json.loads(where["env"])
    assert env["ODD"] == "$x; 'y'\n" and env["PYTHONPATH"] == str(harness.lib)
    assert where["pgid"] == where["pid"]  # the shim made it the leader of its own group


def test_without_the_shim_argv_cwd_and_env_arrive_too(
    remote: Remote, harness: Harness, mark: str
) -> None:
    controller = remote(harness.worker_argv_with(*HOSTILE), cwd="/tmp",
                        ssh={"shim": False})
    where = controller.call(Where)
    assert json.loads(where["argv"]) == ["-c", *HOSTILE]
    assert where["cwd"] == "/tmp"
    assert json.loads(where["env"])["JUICECTL_TEST_MARK"] == mark


def test_a_remote_worker_killed_is_restarted_over_the_same_connection(
    remote: Remote, harness: Harness, sshd: Sshd, mark: str
) -> None:
    controller = remote(restart=RestartPolicy(initial_delay=0.05, jitter=0.0))
    connection = controller.get_process().get(timeout=30)
    session = controller.launch_session
    assert isinstance(session, SshSession)
    master = session.master_pid
    connections = sshd.connections()
    worker = connection.call(Where).get(timeout=10)["pid"]
    waiting = connection.call(Sleep, seconds=600)
    os.kill(worker, signal.SIGKILL)
    with pytest.raises(ProcessUnavailable, match=(
        r"killed by SIGKILL, a signal juicectl did not send \(on ssh juicectl-remote@"
        if harness.user == "juicectl-remote" else r"killed by SIGKILL"
    )):
        waiting.get(timeout=GONE_WITHIN)
    wait_for(lambda: controller.stats()["restarts"] == 1 and controller.mode == "ready",
             GONE_WITHIN, "the restart")
    assert controller.call(Echo, value="again") == {"value": "again"}
    assert session.master_pid == master and sshd.connections() == connections


@BOTH
def test_the_local_ssh_client_killed_ends_the_remote_group(
    remote: Remote, harness: Harness, mark: str, control_master: bool
) -> None:
    controller = remote(restart=TEMPORARY, ssh={"control_master": control_master})
    connection, waiting = busy_with_grandchildren(controller, harness, mark)
    os.kill(connection.pid, signal.SIGKILL)
    with pytest.raises(ProcessUnavailable, match="killed by SIGKILL"):
        waiting.get(timeout=GONE_WITHIN)
    remote_gone(harness, mark)


def test_the_parent_killed_leaves_nothing_here_or_there(
    harness: Harness, sshd: Sshd, mark: str
) -> None:
    parent = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("parent.py")), str(sshd.port),
         str(harness.lib), mark, str(harness.root), harness.user],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )
    try:
        assert parent.stdout is not None
        words = parent.stdout.readline().split()
        client, master, directory = int(words[0]), int(words[1]), words[2].decode()
        assert len(harness.marked(mark)) == 4 and alive(client) and alive(master)
        assert os.path.exists(os.path.join(directory, "master"))
        parent.kill()
        parent.wait(timeout=10)
        wait_for(lambda: not alive(client) and not alive(master), GONE_WITHIN,
                 "the ssh client and master gone")
        # The master's guard removed what the parent's close would have: socket, log, folder.
        wait_for(lambda: not os.path.exists(directory), GONE_WITHIN, "the directory gone")
        remote_gone(harness, mark)
    finally:
        parent.kill()
        parent.wait(timeout=10)
        if parent.stdout is not None:
            parent.stdout.close()


@BOTH
def test_a_stop_while_busy_resolves_once_the_remote_group_is_gone(
    remote: Remote, harness: Harness, mark: str, control_master: bool
) -> None:
    controller = remote(ssh={"control_master": control_master})
    _, waiting = busy_with_grandchildren(controller, harness, mark)
    result = controller.stop_process().get(timeout=GONE_WITHIN)
    assert harness.marked(mark) == []  # at once: the stop waited for the remote side
    # Ended within the close-stdin step, before any local signal: the shim said so.
    assert result.how == "stdin_closed" and result.reason.stop_step == "close_stdin"
    assert "the shim ended it with SIGTERM" in result.reason.describe()
    with pytest.raises(ProcessUnavailable):
        waiting.get(timeout=10)


def test_a_stop_of_an_idle_worker_is_clean(remote: Remote, harness: Harness, mark: str) -> None:
    controller = remote()
    controller.get_process().get(timeout=30)
    result = controller.stop_process().get(timeout=GONE_WITHIN)
    assert result.how == "clean" and result.reason.exit_status == 0
    assert harness.marked(mark) == []


@BOTH
def test_end_of_input_ends_the_remote_group(
    harness: Harness, sshd: Sshd, mark: str, control_master: bool
) -> None:
    launcher = harness.launcher(sshd.port, control_master=control_master)
    # The shim gives a worker whose input ended 0.4 x kill_timeout to exit by itself: here
    # 2 s, so that a loaded machine's slow exit is still the worker's own.
    spec = LaunchSpec(harness.worker_argv(), env=harness.worker_env(mark), launcher=launcher,
                      **{**FAST, "kill_timeout": 5.0})
    session = launcher.open("end-of-input")
    child = spawn(session.invocation(spec))
    try:
        wait_for(lambda: len(harness.marked(mark)) == 2, GONE_WITHIN, "the shim and worker")
        assert child.popen.stdin is not None
        child.popen.stdin.close()
        assert child.popen.wait(timeout=GONE_WITHIN) == 0  # the worker ended at end of input
        assert harness.marked(mark) == []
    finally:
        child.release()
        child.popen.wait(timeout=10)
        for stream in (child.popen.stdout, child.popen.stderr):
            if stream is not None:
                stream.close()
        session.close()


@BOTH
def test_a_partition_is_a_crash_that_says_so_and_the_remote_side_ends(
    remote: Remote, harness: Harness, sshd: Sshd, mark: str, control_master: bool
) -> None:
    relay = Relay(sshd.port)
    try:
        controller = remote(port=relay.port, restart=TEMPORARY,
                            ssh={"control_master": control_master, "keepalive": (1, 2)})
        _, waiting = busy_with_grandchildren(controller, harness, mark)
        relay.pause()
        with pytest.raises(ProcessUnavailable, match=(
            r"exited with status 255 \(ssh juicectl-remote@127.0.0.1:\d+ ended: "
            r"Timeout, server 127.0.0.1 not responding.\)"
            if harness.user == "juicectl-remote" else "Timeout, server 127.0.0.1 not responding"
        )):
            waiting.get(timeout=GONE_WITHIN)
        remote_gone(harness, mark)  # the server's keepalive dropped it, the shim ended it
    finally:
        relay.close()


@BOTH
def test_a_host_that_refuses_is_a_launch_error_naming_it(
    remote: Remote, control_master: bool
) -> None:
    with socket_that_refuses() as port:
        controller = remote(port=port, restart=TEMPORARY,
                            ssh={"control_master": control_master})
        with pytest.raises(ProcessLaunchError, match=(
            rf"ssh \S+@127.0.0.1:{port} failed: ssh: connect to host 127.0.0.1 port {port}: "
            "Connection refused"
        )):
            controller.get_process().get(timeout=30)


@BOTH
def test_a_key_the_host_refuses_is_a_launch_error_naming_it(
    remote: Remote, harness: Harness, control_master: bool
) -> None:
    controller = remote(restart=TEMPORARY, ssh={"control_master": control_master,
                                                "identity": str(harness.stranger_key)})
    with pytest.raises(ProcessLaunchError, match=r"failed: \S+@127.0.0.1: Permission denied"):
        controller.get_process().get(timeout=30)


def test_a_host_key_that_does_not_match_is_a_launch_error(remote: Remote) -> None:
    controller = remote(restart=TEMPORARY, ssh={"known_hosts": os.devnull})
    with pytest.raises(ProcessLaunchError, match="Host key verification failed"):
        controller.get_process().get(timeout=30)


@BOTH
def test_a_missing_remote_python_is_a_launch_error_naming_it(
    remote: Remote, control_master: bool
) -> None:
    controller = remote(restart=TEMPORARY, ssh={"control_master": control_master,
                                                "python": "python3-not-installed"})
    with pytest.raises(ProcessLaunchError, match=(
        r"on ssh \S+: sh: 1: exec: python3-not-installed: not found \(is "
        r"'python3-not-installed' a Python 3 there\? the shim runs with it\)"
    )):
        controller.get_process().get(timeout=30)


def test_a_missing_remote_program_is_a_launch_error_naming_it(remote: Remote) -> None:
    controller = remote(["no-such-worker", "x"], restart=TEMPORARY)
    with pytest.raises(ProcessLaunchError, match=(
        r"cannot launch \['no-such-worker', 'x'\]: on ssh \S+: juicectl-shim: cannot run "
        r"\['no-such-worker', 'x'\]: No such file or directory"
    )):
        controller.get_process().get(timeout=30)


def test_a_launch_failure_is_restarted_under_the_policy(remote: Remote) -> None:
    with socket_that_refuses() as port:
        controller = remote(port=port, restart=RestartPolicy(
            mode="transient", initial_delay=0.01, jitter=0.0, max_restarts=2))
        with pytest.raises(ProcessLaunchError):
            controller.get_process().get(timeout=30)
        wait_for(lambda: controller.stats()["gave_up"], GONE_WITHIN, "the policy gave up")
        assert controller.stats()["restarts"] == 2


def connected_master(remote: Remote) -> tuple[ProcessController, int]:
    """A controller with its child ready, and the pid of its ssh connection master."""
    controller = remote()
    controller.get_process().get(timeout=30)
    session = controller.launch_session
    assert isinstance(session, SshSession)
    master = session.master_pid
    assert master is not None
    return controller, master


def test_close_stops_the_master_and_removes_its_directory(remote: Remote, sshd: Sshd) -> None:
    controller, master = connected_master(remote)
    directory = Path(f"/proc/{master}/cmdline").read_bytes().split(b"ControlPath=")[1]
    directory = directory.split(b"\0")[0].strip(b'"').rsplit(b"/", 1)[0]
    assert os.path.isdir(directory)
    controller.close(timeout=30)
    assert not alive(master) and not os.path.exists(directory)
    assert controller.launch_session is None


def test_two_hosts_fail_apart(
    harness: Harness, remote: Remote, mark: str
) -> None:
    first, second = harness.sshd("b"), harness.sshd("c")
    try:
        one = remote(port=first.port, restart=TEMPORARY)
        two = remote(port=second.port, restart=TEMPORARY)
        assert one.call(Echo, value="b") == {"value": "b"}
        waiting = two.get_process().get(timeout=30).call(Sleep, seconds=600)
        second.stop()  # host c goes away: its sshd and every connection it served
        with pytest.raises(ProcessUnavailable, match="exited with status 255"):
            waiting.get(timeout=GONE_WITHIN)
        assert one.call(Echo, value="still") == {"value": "still"}
    finally:
        first.stop()
        second.stop()


class socket_that_refuses:
    """A loopback port where nothing listens (bound, never listening: no one else gets it)."""

    def __enter__(self) -> int:
        import socket

        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        return int(self._socket.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        self._socket.close()


class socket_that_never_answers:
    """A loopback port that accepts connections and never says a word: an ssh client there
    waits for the server's greeting until its own timeout."""

    def __enter__(self) -> int:
        import socket

        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(16)
        return int(self._socket.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        self._socket.close()


def master_connecting(
    remote: Remote, port: int
) -> tuple[ProcessController, ReplyFuture[Any], SshSession]:
    """A controller whose first start waits for a master that connects to ``port`` (a day
    at most), once the master runs: the controller, its getter, its session."""
    controller = remote(port=port, restart=TEMPORARY, startup_timeout=86400.0)
    waiting = controller.get_process()
    session = controller.launch_session
    assert isinstance(session, SshSession)
    wait_for(lambda: session.master_pid is not None, GONE_WITHIN, "the master connecting")
    return controller, waiting, session


def test_close_while_the_master_connects_gives_up_the_connect_at_once(remote: Remote) -> None:
    with socket_that_never_answers() as port:
        controller, waiting, _ = master_connecting(remote, port)
        result = controller.close(timeout=60)
        assert result is not None and result.how == "launch_failed"
        # The master's wait gives up (closing), or the process actor drops the launch on the
        # close's StopChild first: either way at once, naming the host.
        assert re.search(r"ssh .*: (the controller is closing|stopped before it was launched)",
                         str(result.reason.launch_error))
        with pytest.raises(ControllerClosed):
            waiting.get(timeout=GONE_WITHIN)


def test_stop_all_while_the_master_connects_gives_up_the_connect_at_once(
    remote: Remote,
) -> None:
    import threading

    import pykka

    # stop_all() stops the process actor first: it must hear the stop while the master
    # connects (a day here), and the master must be stopped with its controller.
    with socket_that_never_answers() as port:
        controller, waiting, session = master_connecting(remote, port)
        master = session.master_pid
        assert master is not None
        stopper = threading.Thread(target=pykka.ActorRegistry.stop_all, daemon=True)
        stopper.start()
        stopper.join(60)
        assert not stopper.is_alive(), "stop_all() waited for the master to connect"
        with pytest.raises(ControllerClosed):
            waiting.get(timeout=GONE_WITHIN)
        wait_for(lambda: not alive(master), GONE_WITHIN, "the master stopped")
        wait_for(lambda: controller.launch_session is None, GONE_WITHIN, "the session released")


def test_a_relative_identity_works_with_the_connection_master(
    remote: Remote, harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The master runs in /: a path relative to the application's directory must not reach it.
    relative = Path(os.path.relpath(harness.client_key, tmp_path))
    monkeypatch.chdir(tmp_path)
    controller = remote(ssh={"identity": str(relative)})
    assert controller.call(Echo, value="hi") == {"value": "hi"}


def test_stop_all_releases_the_connection_master(remote: Remote) -> None:
    import pykka

    controller, master = connected_master(remote)
    pykka.ActorRegistry.stop_all()
    wait_for(lambda: not alive(master), GONE_WITHIN, "the master stopped")
    wait_for(lambda: controller.launch_session is None, GONE_WITHIN, "the session released")


def test_key_files_and_a_temporary_folder_with_spaces_and_percents_work(
    remote: Callable[..., ProcessController], harness: Harness, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # ssh splits an -o value at spaces, expands % tokens (%d is the home directory), and
    # reads -i before it expands them: each path must reach it as it is.
    folder = tmp_path / "my keys%d"
    folder.mkdir()
    key, known = folder / "client key", folder / "known hosts"
    key.write_bytes(harness.client_key.read_bytes())
    key.chmod(0o600)
    known.write_bytes(harness.known_hosts.read_bytes())
    # Short, under /tmp: a control socket's path has a length limit.
    temporary = tempfile.mkdtemp(prefix="j %h ", dir="/tmp")
    monkeypatch.setattr(tempfile, "tempdir", temporary)
    try:
        controller = remote(ssh={"identity": str(key), "known_hosts": str(known)})
        assert controller.call(Echo, value="hi", timeout=20) == {"value": "hi"}
        assert controller.launch_session.control_directory.startswith(temporary + "/")
        controller.close(timeout=30)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
