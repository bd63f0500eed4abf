"""A real OpenSSH server on loopback, for the remote tests and the remote benchmarks.

``Harness.create()`` prepares everything once: a non-root test user (created when running as
root: ``juicectl-remote``, whose shell is ``/bin/sh``, which starts fast), generated host and
client keys in a temporary folder, and a copy of the ``juicectl`` package and of the test
worker (``tests/remote/worker.py``) that the test user can read (this checkout and its
virtual environment may not be: ``/root`` is closed to other users). ``harness.sshd()``
starts one ``sshd -D -e -f CONFIG`` on a free loopback port, with keepalive configured;
two of them are two hosts. ``Relay`` is a TCP relay on loopback that can stop forwarding,
which makes a partition that neither end sees as a closed connection.

The remote side's processes are found by a marker: every launch of a test puts
``JUICECTL_TEST_MARK=<unique>`` in the worker's environment, which its grandchildren
inherit; :meth:`Harness.marked` lists the test user's processes that carry it (in their
environment or their command line: the shim carries it on its command line).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

#: The test user created when the tests run as root.
TEST_USER = "juicectl-remote"
#: The host key alias every test host is known by (one known_hosts line for all ports).
HOST_ALIAS = "juicectl-test-host"
#: The environment variable that marks a test's remote processes.
MARK = "JUICECTL_TEST_MARK"
#: The server's keepalive: a client silent this long is dropped (interval, count).
CLIENT_ALIVE = (1, 2)


def sshd_program() -> str | None:
    """The OpenSSH server's path, if it is installed."""
    found = shutil.which("sshd")
    if found:
        return found
    return "/usr/sbin/sshd" if os.access("/usr/sbin/sshd", os.X_OK) else None


def unavailable() -> str | None:
    """Why the ssh tests cannot run here, or None if they can."""
    if sshd_program() is None:
        return "OpenSSH's server (sshd) is not installed (.ci/run installs openssh-server)"
    for program in ("ssh", "ssh-keygen"):
        if shutil.which(program) is None:
            return f"OpenSSH's {program} is not installed"
    if not os.path.exists("/bin/sh"):
        return "no /bin/sh for the test user's shell"
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _run(*argv: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"{argv!r} failed ({done.returncode}): {done.stderr.strip()}")


def ensure_user() -> pwd.struct_passwd:
    """The test user: ``juicectl-remote`` when running as root (created if missing, with a
    home of its own and ``/bin/sh`` as its shell), else the current user."""
    if os.geteuid() != 0:
        return pwd.getpwuid(os.getuid())
    home = f"/var/lib/{TEST_USER}"
    try:
        entry = pwd.getpwnam(TEST_USER)
    except KeyError:
        # '*': no password, and not a locked account (sshd refuses those without PAM).
        with contextlib.suppress(RuntimeError):  # another run may be creating it too
            _run("useradd", "--system", "--create-home", "--home-dir", home,
                 "--shell", "/bin/sh", "--password", "*", TEST_USER)
        entry = pwd.getpwnam(TEST_USER)
    if not os.path.isdir(entry.pw_dir):
        os.makedirs(entry.pw_dir, exist_ok=True)
        os.chown(entry.pw_dir, entry.pw_uid, entry.pw_gid)
    return entry


def _keygen(path: Path) -> str:
    _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "juicectl-test", "-f", str(path))
    return path.with_suffix(".pub").read_text().strip()


def processes_marked(mark: str, uid: int | None = None) -> list[int]:
    """The live processes (of ``uid``, if given) that carry ``mark`` in their environment or
    their command line."""
    needle = mark.encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if uid is not None and entry.stat().st_uid != uid:
                continue
            state = (entry / "stat").read_text().rsplit(")", 1)[-1].split()[0]
            if state == "Z":
                continue
            if needle in (entry / "environ").read_bytes() or needle in (
                entry / "cmdline"
            ).read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


class Sshd:
    """One OpenSSH server on a loopback port (``-D -e``: in the foreground, logging to a
    file). Its process is a child of the test process, stopped by :meth:`stop`."""

    def __init__(self, harness: Harness, name: str, client_alive: tuple[int, int]) -> None:
        self.harness = harness
        self.name = name
        self.port = _free_port()
        self.config = harness.root / f"sshd-{name}.conf"
        self.log_path = harness.root / f"sshd-{name}.log"
        interval, count = client_alive
        self.config.write_text("\n".join([
            f"Port {self.port}",
            "ListenAddress 127.0.0.1",
            f"HostKey {harness.host_key}",
            "PidFile none",
            f"AuthorizedKeysFile {harness.authorized_keys}",
            "AuthenticationMethods publickey",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "StrictModes no",
            f"AllowUsers {harness.user}",
            f"ClientAliveInterval {interval}",
            f"ClientAliveCountMax {count}",
            "MaxSessions 200",
            "MaxStartups 100",
            "LoginGraceTime 20",
            "UseDNS no",
            "PrintMotd no",
            "PrintLastLog no",
            "X11Forwarding no",
            "AllowTcpForwarding no",
            "LogLevel INFO",
            "",
        ]))
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 15.0) -> Sshd:
        """Start the server and wait (bounded) until it accepts connections."""
        program = sshd_program()
        assert program is not None
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # its privilege separation
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [program, "-D", "-e", "-f", str(self.config)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"sshd {self.name} exited: {self.log()[-2000:]}")
            with socket.socket() as probe:
                probe.settimeout(1)
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"sshd {self.name} did not listen within {timeout}s")
            time.sleep(0.02)

    def log(self) -> str:
        """What the server logged so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _connection_pids(self) -> list[int]:
        if self.process is None:
            return []
        me = str(self.process.pid)
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[-1].split()
            except OSError:
                continue
            if fields[1] == me and fields[0] != "Z":
                pids.append(int(entry.name))
        return pids

    def connections(self) -> int:
        """The connections it serves now (one child process of the listener each)."""
        return len(self._connection_pids())

    def stop(self) -> None:
        """Stop the server and end every connection it serves (the host goes away: a
        listener stopped alone leaves its connections running)."""
        for pid in self._connection_pids():
            with contextlib.suppress(OSError):
                os.kill(pid, 15)
        process, self.process = self.process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


class Relay:
    """A TCP relay on loopback to ``target_port``, on a thread of its own. ``pause()`` stops
    forwarding (both connections stay open, so that only keepalive can tell), ``close()``
    closes everything."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._forwarding = threading.Event()
        self._forwarding.set()
        self._closing = threading.Event()
        self._peers: dict[socket.socket, socket.socket] = {}
        self._thread = threading.Thread(target=self._run, name="relay", daemon=True)
        self._thread.start()

    def pause(self) -> None:
        """Stop forwarding: what either end sends stays in the relay's socket buffers."""
        self._forwarding.clear()

    def close(self) -> None:
        """Close the listener and every connection; wait for the thread."""
        self._closing.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        selector = selectors.DefaultSelector()
        selector.register(self._listener, selectors.EVENT_READ)
        try:
            while not self._closing.is_set():
                if not self._forwarding.is_set():
                    time.sleep(0.05)
                    continue
                for key, _ in selector.select(timeout=0.05):
                    sock: Any = key.fileobj
                    if sock is self._listener:
                        client, _ = self._listener.accept()
                        server = socket.create_connection(("127.0.0.1", self.target_port))
                        self._peers[client], self._peers[server] = server, client
                        selector.register(client, selectors.EVENT_READ)
                        selector.register(server, selectors.EVENT_READ)
                        continue
                    if not self._forwarding.is_set():
                        break  # paused meanwhile: this data stays unread
                    try:
                        data = sock.recv(65536)
                    except OSError:
                        data = b""
                    peer = self._peers.get(sock)
                    if not data or peer is None:
                        for end in (sock, peer):
                            if end is not None and end in self._peers:
                                selector.unregister(end)
                                self._peers.pop(end, None)
                                end.close()
                        continue
                    with contextlib.suppress(OSError):
                        peer.sendall(data)
        finally:
            for sock in list(self._peers):
                sock.close()
            self._listener.close()
            selector.close()


class Harness:
    """Everything the remote tests share: the user, the keys, the readable copy of the code.

    Build it with :meth:`create`; :meth:`close` stops the servers it started and removes the
    folder.
    """

    def __init__(self, root: Path, user: pwd.struct_passwd) -> None:
        self.root = root
        self.user = user.pw_name
        self.uid = user.pw_uid
        self.home = user.pw_dir
        self.host_key = root / "host_ed25519"
        self.client_key = root / "client_ed25519"
        self.stranger_key = root / "stranger_ed25519"  # not authorized
        self.authorized_keys = root / "authorized_keys"
        self.known_hosts = root / "known_hosts"
        self.lib = root / "lib"
        self.servers: list[Sshd] = []

    @classmethod
    def create(cls) -> Harness:
        """Create the user (as root), the keys and the readable copy of the code."""
        user = ensure_user()
        root = Path(tempfile.mkdtemp(prefix="juicectl-sshd-"))
        root.chmod(0o755)  # the test user reads the worker's code and its own keys here
        harness = cls(root, user)
        host = _keygen(harness.host_key)
        client = _keygen(harness.client_key)
        _keygen(harness.stranger_key)
        harness.authorized_keys.write_text(client + "\n")
        harness.known_hosts.write_text(f"{HOST_ALIAS} {host}\n")
        for path in (harness.authorized_keys, harness.known_hosts):
            path.chmod(0o644)
        shutil.copytree(ROOT / "juicectl", harness.lib / "juicectl",
                        ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(ROOT / "tests" / "remote" / "worker.py", harness.lib / "remote_worker.py")
        # The test user cannot write bytecode beside the copy: compile it here, as an
        # installed package is, or every remote start compiles the codec again.
        for python in {sys.executable, "/usr/bin/python3"}:
            if os.access(python, os.X_OK):
                subprocess.run([python, "-m", "compileall", "-q", str(harness.lib)],
                               capture_output=True, timeout=120, check=False)
        for directory, _, files in os.walk(harness.lib):
            os.chmod(directory, 0o755)
            for name in files:
                os.chmod(os.path.join(directory, name), 0o644)
        return harness

    def sshd(self, name: str = "a", client_alive: tuple[int, int] = CLIENT_ALIVE) -> Sshd:
        """Start one more server (a host of its own)."""
        server = Sshd(self, name, client_alive).start()
        self.servers.append(server)
        return server

    def launcher(self, port: int, **options: Any) -> Any:
        """An ``ssh()`` launcher for the test user on ``127.0.0.1:port``, with the test keys
        and no ssh configuration of this machine's."""
        from juicectl import ssh

        extra = {"HostKeyAlias": HOST_ALIAS, **options.pop("options", {})}
        options.setdefault("identity", str(self.client_key))
        options.setdefault("known_hosts", str(self.known_hosts))
        options.setdefault("config", os.devnull)
        return ssh("127.0.0.1", user=self.user, port=port, options=extra, **options)

    def worker_env(self, mark: str, **more: str) -> dict[str, str]:
        """The remote worker's whole environment: the copy of the code on its path, the
        marker, and the login's PATH."""
        return {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "PYTHONPATH": str(self.lib),
            "HOME": self.home,
            MARK: mark,
            **more,
        }

    @staticmethod
    def worker_argv(*options: str) -> list[str]:
        """The test worker, served by the juicectl child runtime with the remote Python."""
        return ["python3", "-m", "juicectl.child", "remote_worker:Worker", *options]

    @staticmethod
    def worker_argv_with(*arguments: str) -> list[str]:
        """The test worker run by ``python3 -c``, with ``arguments`` after it (they end up in
        its ``sys.argv``, which ``Where`` answers)."""
        return ["python3", "-c", "from juicectl.child import run; "
                "from remote_worker import Worker; run(Worker)", *arguments]

    @staticmethod
    def new_mark() -> str:
        """A marker no other test uses."""
        return uuid.uuid4().hex

    def marked(self, mark: str) -> list[int]:
        """The test user's live processes that carry ``mark`` (environment or argv)."""
        return processes_marked(mark, self.uid)

    def kill_marked(self, mark: str) -> None:
        """SIGKILL whatever carries ``mark`` (the cleanup after a failed test)."""
        for pid in self.marked(mark):
            with contextlib.suppress(OSError):
                os.kill(pid, 9)

    def close(self) -> None:
        """Stop every server and remove the folder."""
        for server in self.servers:
            server.stop()
        self.servers.clear()
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def harness_running() -> Iterator[Harness]:
    """A harness for a script (the benchmarks), closed at the end."""
    reason = unavailable()
    if reason is not None:
        sys.exit(f"the remote benchmarks need an ssh server: {reason}")
    harness = Harness.create()
    try:
        yield harness
    finally:
        harness.close()
