"""The ssh launcher: the worker runs on another machine, through OpenSSH's client.

``ssh(host, ...)`` is a value (a frozen dataclass): it says how to reach the host, nothing
runs until a controller launches through it. What it execs for a ``LaunchSpec``::

    ssh -T -e none -o BatchMode=yes -o LogLevel=INFO -o ServerAliveInterval=5
        -o ServerAliveCountMax=3 [-o ControlMaster=no -o ControlPath="DIR/master"]
        [-l USER] [-p PORT] [-o IdentityFile="IDENTITY" -o IdentitiesOnly=yes]
        [-o UserKnownHostsFile="FILE" -o StrictHostKeyChecking=yes] [-F CONFIG]
        [-o NAME=VALUE]...
        -- HOST 'exec python3 -I -S -c '"'"'<the shim>'"'"' -g 0.8 -- worker args...'

Why each piece:

* No shell on this side: ``ssh`` is exec'd with a list. The far side runs the last argument
  through the remote user's login shell, so it is one command line, every word quoted once
  (:func:`juicectl.launch._remote.quote_command_line`).
* ``-T`` (no terminal: a terminal turns ``\\n`` into ``\\r\\n`` and ``\\x03`` into a signal),
  ``-e none`` (no escape character: ``~.`` at the start of a line must stay two bytes), and
  ``BatchMode`` (never a prompt: a launch fails instead of waiting for a password).
* Keepalive on by default (``ServerAliveInterval`` x ``ServerAliveCountMax``): without it a
  partition goes unnoticed for hours (TCP's keepalive); with it ssh exits with 255, the
  controller sees a crash and the restart policy applies.
* The remote shim (:mod:`juicectl.launch._shim`) ends the remote worker's process group when
  the session ends, however it ends; without it a busy worker outlives a killed ssh client.
* **One connection per controller** (``control_master=True``): the first launch starts a
  connection master (``ssh -M -N``) whose control socket lives in a private temporary
  directory the controller owns; every launch, the restarts included, runs as a session of
  that connection, which saves the TCP and key exchange (about 220 ms to 12 ms here). The
  master runs under a parent-death guard like a child, is started again if it died (a
  partition ends it), and is stopped, and the directory removed, at the controller's
  ``close()``.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from juicectl._log import get_logger
from juicectl.exceptions import ProcessLaunchError
from juicectl.launch._guard import ParentDeathGuard
from juicectl.launch._invocation import Invocation
from juicectl.launch._local import find_program
from juicectl.launch._remote import (
    RemoteExitReader,
    check_flag,
    check_python,
    shell_command_line,
)

if TYPE_CHECKING:
    from juicectl.policy import LaunchSpec

log = get_logger(__name__)

#: ssh's own exit status for its failures (connection, authentication, a dropped link).
SSH_FAILURE = 255

# An -o option's name: letters and digits (ssh's own names are CamelCase words).
_OPTION_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]*")
# Options the launcher sets itself, which options= must not contradict.
_OWN_OPTIONS = {"batchmode", "controlmaster", "controlpath", "controlpersist", "escapechar",
                "requesttty", "loglevel"}
# A unix socket's path holds at most 107 bytes on Linux; ssh adds a suffix while binding.
_MAX_CONTROL_PATH = 80
# Seconds to wait for the master to exit after SIGTERM before its group is killed.
_MASTER_STOP_TIMEOUT = 2.0
# How often the master's control socket is looked for while it connects.
_MASTER_POLL = 0.002


def _text(name: str, value: object, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value or any(c in value for c in "\0\n\r"):
        raise ValueError(
            f"{name} must be a non-empty str without NUL or newline, not {value!r}"
        )
    return value


def _path(name: str, value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    checked = _text(name, value)
    assert checked is not None
    # As ssh reads it (~ is the user's home), and absolute: the connection master runs in /.
    found = os.path.abspath(os.path.expanduser(checked))
    if not os.path.exists(found) or os.path.isdir(found):
        raise ValueError(f"{name} {checked!r} is not a file")
    return found


def _options(value: object) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, Mapping):
        raise TypeError(
            f"options must be a mapping of ssh option names to values "
            f"(e.g. {{'Compression': 'yes'}}), not {value!r}"
        )
    checked = []
    for name, option in value.items():
        if not isinstance(name, str) or not _OPTION_NAME.fullmatch(name):
            raise ValueError(f"options: {name!r} is not an ssh option name (see ssh_config(5))")
        if name.lower() in _OWN_OPTIONS:
            raise ValueError(
                f"options: {name} is set by the ssh launcher itself and cannot be changed"
            )
        if isinstance(option, bool):
            option = "yes" if option else "no"
        if isinstance(option, int):
            option = str(option)
        if not isinstance(option, str) or not option or any(c in option for c in "\0\n\r"):
            raise ValueError(
                f"options[{name!r}] must be a non-empty str, an int or a bool, without NUL "
                f"or newline, not {option!r}"
            )
        checked.append((name, option))
    return tuple(checked)


def _keepalive(value: object) -> tuple[int, int] | None:
    if value is None:
        return None
    if (
        not isinstance(value, tuple | list)
        or len(value) != 2
        or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in value)
    ):
        raise ValueError(
            "keepalive must be (interval, count): whole seconds >= 1 between keepalive "
            "messages and how many may go unanswered (>= 1), or None to leave ssh's "
            f"configuration alone, not {value!r}"
        )
    return int(value[0]), int(value[1])


@dataclass(frozen=True)
class SshLauncher:
    """Runs the command on another host through OpenSSH: :func:`ssh`.

    The attributes are :func:`ssh`'s arguments, checked.
    """

    host: str
    user: str | None = None
    port: int | None = None
    identity: str | None = None
    known_hosts: str | None = None
    options: tuple[tuple[str, str], ...] = ()
    control_master: bool = True
    keepalive: tuple[int, int] | None = (5, 3)
    python: str = "python3"
    shim: bool = True
    config: str | None = None
    _program: str = field(default="ssh", repr=False)

    def __post_init__(self) -> None:
        host = _text("host", self.host)
        assert host is not None
        if host.startswith("-") or any(c.isspace() for c in host):
            raise ValueError(f"host must be a host name or address, not {host!r}")
        if "@" in host:
            raise ValueError(
                f"host must be a host name or address, not {host!r}: give the user as user="
            )
        user = _text("user", self.user, optional=True)
        if user is not None and (
            user.startswith("-") or "@" in user or any(c.isspace() for c in user)
        ):
            raise ValueError(f"user must be a user name, not {user!r}")
        if self.port is not None and (
            isinstance(self.port, bool) or not isinstance(self.port, int)
            or not 1 <= self.port <= 65535
        ):
            raise ValueError(f"port must be an int from 1 to 65535, not {self.port!r}")
        object.__setattr__(self, "identity", _path("identity", self.identity))
        object.__setattr__(self, "known_hosts", _path("known_hosts", self.known_hosts))
        object.__setattr__(self, "config", _path("config", self.config))
        options: object = self.options
        if isinstance(options, tuple) and all(
            isinstance(pair, tuple) and len(pair) == 2 for pair in options
        ):
            options = dict(options)  # the stored pairs, as dataclasses.replace() passes them
        object.__setattr__(self, "options", _options(options))  # any other tuple: TypeError
        check_flag("control_master", self.control_master)
        object.__setattr__(self, "keepalive", _keepalive(self.keepalive))
        self._check_no_option_set_twice()
        check_python(self.python)
        check_flag("shim", self.shim)

    def _check_no_option_set_twice(self) -> None:
        # ssh keeps the first value it meets, and the launcher's words come first: an option
        # also set by an argument of its own would be ignored without a word. (IdentityFile
        # adds a key to try each time it is given: one more beside identity= is fine.)
        given = {
            "ServerAliveInterval": ("keepalive", self.keepalive is not None),
            "ServerAliveCountMax": ("keepalive", self.keepalive is not None),
            "User": ("user", self.user is not None),
            "Port": ("port", self.port is not None),
            "IdentitiesOnly": ("identity", self.identity is not None),
            "UserKnownHostsFile": ("known_hosts", self.known_hosts is not None),
            "StrictHostKeyChecking": ("known_hosts", self.known_hosts is not None),
        }
        by_name = {name.lower(): (name, argument, set_) for name, (argument, set_) in given.items()}
        for name, _ in self.options:
            found = by_name.get(name.lower())
            if found is not None and found[2]:
                raise ValueError(
                    f"options: {name} is set by {found[1]}= (give it there, or set "
                    f"{found[1]}=None to set {found[0]} in options)"
                )

    @property
    def where(self) -> str:
        """``ssh user@host:port``, as logs and errors name it."""
        user = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port is not None else ""
        return f"ssh {user}{self.host}{port}"

    def check(self, spec: LaunchSpec) -> None:
        """At ``LaunchSpec``'s door: nothing to check here (``cwd`` is the remote host's)."""
        del spec

    def connection_options(self) -> list[str]:
        """The ssh options of every invocation: the connection's, without a ControlPath."""
        # LogLevel INFO: ssh says why a link ended ("Timeout, server ... not responding.")
        # at that level, and those words are the crash's cause.
        words = ["-T", "-e", "none", "-o", "BatchMode=yes", "-o", "LogLevel=INFO"]
        if self.keepalive is not None:
            interval, count = self.keepalive
            words += ["-o", f"ServerAliveInterval={interval}",
                      "-o", f"ServerAliveCountMax={count}"]
        if self.user is not None:
            words += ["-l", self.user]
        if self.port is not None:
            words += ["-p", str(self.port)]
        if self.identity is not None:
            # Not -i: ssh checks that path before it expands its % tokens, so no spelling
            # of a path with a % passes both.
            words += ["-o", f"IdentityFile={_option_path(self.identity)}",
                      "-o", "IdentitiesOnly=yes"]
        if self.known_hosts is not None:
            words += ["-o", f"UserKnownHostsFile={_option_path(self.known_hosts)}",
                      "-o", "StrictHostKeyChecking=yes"]
        if self.config is not None:
            words += ["-F", self.config]
        for name, value in self.options:
            words += ["-o", f"{name}={value}"]
        return words

    def invocation(
        self,
        spec: LaunchSpec,
        control_path: str | None = None,
        master_cause: Callable[[], str] | None = None,
    ) -> Invocation:
        """The ssh command for ``spec`` (a direct connection, or a session of the master
        whose socket is ``control_path``; ``master_cause`` then tells why the master's
        connection ended, when it has).

        Raises:
            ProcessLaunchError: there is no ``ssh`` program on this machine.
        """
        command = tuple(spec.argv)
        program = self.program(command)
        words = [program, *self.connection_options()]
        if control_path is not None:
            words += ["-o", "ControlMaster=no", "-o", f"ControlPath={_option_path(control_path)}"]
        line = shell_command_line(spec, python=self.python, shim=self.shim)
        words += ["--", self.host, line]
        reader = RemoteExitReader(self.where, command, self.python if self.shim else None,
                                  SSH_FAILURE, master_cause)
        return Invocation(argv=tuple(words), env=None, cwd=None, command=command,
                          where=self.where, read_exit=reader)

    def program(self, command: tuple[str, ...]) -> str:
        """The local ``ssh`` program (looked up on this process's ``PATH``).

        Raises:
            ProcessLaunchError: it is not there.
        """
        try:
            return find_program(self._program, None, None)
        except OSError as problem:
            raise ProcessLaunchError(command, OSError(
                f"the ssh launcher needs OpenSSH's client: {problem.strerror}"
            )) from None

    def open(self, name: str) -> SshSession:
        """This launcher for the controller ``name``: with its own connection master."""
        return SshSession(self, name)


def ssh(
    host: str,
    *,
    user: str | None = None,
    port: int | None = None,
    identity: str | os.PathLike[str] | None = None,
    known_hosts: str | os.PathLike[str] | None = None,
    options: Mapping[str, str | int | bool] | None = None,
    control_master: bool = True,
    keepalive: tuple[int, int] | None = (5, 3),
    python: str = "python3",
    shim: bool = True,
    config: str | os.PathLike[str] | None = None,
) -> SshLauncher:
    """A launcher that runs the worker on ``host`` through OpenSSH's ``ssh`` client.

    Args:
        host: the host name or address (or a ``Host`` alias of your ssh configuration).
        user: the remote user (None: ssh's default, from your configuration or your name).
        port: the remote port (None: ssh's default, 22 or your configuration's).
        identity: a private key file (``-i``, with ``IdentitiesOnly=yes``).
        known_hosts: a known-hosts file to check the host key against, strictly (None:
            ssh's own files and your ``StrictHostKeyChecking``; in batch mode an unknown
            host fails the launch).
        options: more ``-o NAME=VALUE`` options, as a mapping (``True``/``False`` become
            ``yes``/``no``). Those the launcher sets itself cannot be changed.
        control_master: one ssh connection per controller, shared by every launch and
            restart (see :mod:`juicectl.launch`); False connects afresh for each launch.
        keepalive: ``(ServerAliveInterval, ServerAliveCountMax)``: a dead link is seen
            after about ``interval * count`` seconds of silence. None leaves your
            configuration's.
        python: the Python 3 on the remote host that runs the shim (on the remote
            user's ``PATH``, or a path).
        shim: run the worker under the remote shim (default). False runs the command
            as it is: see ``docs/remote.md`` for what is then lost.
        config: an ssh configuration file to use instead of ``~/.ssh/config`` (``-F``).

    Raises:
        TypeError, ValueError: an option is wrong (the message names it).
    """
    return SshLauncher(
        host=host,
        user=user,
        port=port,
        identity=identity,  # type: ignore[arg-type]  # checked and made a str
        known_hosts=known_hosts,  # type: ignore[arg-type]
        options=options if options is not None else {},  # type: ignore[arg-type]
        control_master=control_master,
        keepalive=keepalive,
        python=python,
        shim=shim,
        config=config,  # type: ignore[arg-type]
    )


class _Master:
    """One running connection master: its process, its guard, its log file."""

    def __init__(
        self, popen: subprocess.Popen[bytes], guard: ParentDeathGuard | None, log_path: str
    ) -> None:
        self.popen = popen
        self.guard = guard
        self.log_path = log_path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def cause(self) -> str:
        """Why the master's connection ended ("" while it runs)."""
        return "" if self.alive() else self.last_line()

    def last_line(self) -> str:
        with contextlib.suppress(OSError), open(self.log_path, "rb") as errors:
            lines = [line.strip() for line in errors.read().decode("utf-8", "replace")
                     .splitlines() if line.strip()]
            if lines:
                return lines[-1]
        return f"its connection ended with status {self.popen.returncode}"

    def stop(self) -> None:
        """SIGTERM (ssh closes the connection), a bounded wait, then SIGKILL to its group."""
        with contextlib.suppress(OSError):
            self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=_MASTER_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(OSError):
                self.popen.kill()
        if self.guard is not None:
            self.guard.release()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=_MASTER_STOP_TIMEOUT)


class SshSession:
    """An :class:`SshLauncher` opened for one controller: its connection master and the
    private directory of its control socket.

    The controller's process actors ask it for invocations one at a time, each on its own
    thread, and the controller closes it from another: the lock guards the master and the
    directory, and ``closing()`` (which ``close()`` calls first, and the controller as its
    close begins) sets an event, so that a launch waiting for the master to connect gives up
    at once instead of holding the lock, and no launch starts a master any more.
    """

    def __init__(self, launcher: SshLauncher, name: str) -> None:
        self.launcher = launcher
        self.name = name
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._directory: str | None = None
        self._master: _Master | None = None
        self._log = log.bind(controller=name, where=launcher.where)

    @property
    def waits(self) -> bool:
        """True with a connection master: a launch may wait for it to connect, so the
        process actor asks on a thread of its own and stays free to hear a stop."""
        return self.launcher.control_master

    @property
    def where(self) -> str:
        """As :attr:`SshLauncher.where`."""
        return self.launcher.where

    @property
    def master_pid(self) -> int | None:
        """The pid of the running connection master (connected or connecting), if there is
        one. Read without the lock, which a master still connecting holds: an attribute is
        read whole."""
        master = self._master
        return master.popen.pid if master is not None and master.alive() else None

    @property
    def control_directory(self) -> str | None:
        """The private directory of the master's control socket and log, once the first
        launch made it; None before, and after ``close()`` (which removes it). Its master's
        guard removes it too should this process die outright."""
        return self._directory

    def closing(self) -> None:
        """The controller is closing: a launch waiting for the master to connect gives up,
        and none starts one. A master already connected stays, for the child's own stop;
        ``close()`` stops it."""
        self._closed.set()

    def invocation(self, spec: LaunchSpec) -> Invocation:
        """The ssh command for ``spec``, as a session of this controller's master (started,
        or started again, first, and waited for up to ``spec.startup_timeout``).

        Raises:
            ProcessLaunchError: the master could not connect (naming the host and ssh's
                own words), or the controller is closing.
        """
        launcher = self.launcher
        if not launcher.control_master:
            return launcher.invocation(spec)
        command = tuple(spec.argv)
        with self._lock:
            path = self._ensure_master(spec, command)
            master = self._master
        assert master is not None
        # A session of the master says little when the link drops: the master says why.
        return launcher.invocation(spec, control_path=path, master_cause=master.cause)

    def _ensure_master(self, spec: LaunchSpec, command: tuple[str, ...]) -> str:
        if self._closed.is_set():
            raise ProcessLaunchError(command, OSError(
                f"{self.launcher.where}: the controller is closing"
            ))
        if self._directory is None:
            self._directory = _private_directory()
        path = os.path.join(self._directory, "master")
        master = self._master
        if master is not None and master.alive() and os.path.exists(path):
            return path
        if master is not None:
            self._log.info("ssh_master_gone", pid=master.popen.pid,
                           returncode=master.popen.poll(), cause=master.last_line())
            master.stop()
            self._master = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # a master that was killed leaves its socket behind
        self._master = master = self._start_master(path, command)
        started = time.monotonic()
        deadline = started + spec.startup_timeout
        while not os.path.exists(path):
            if not master.alive():
                self._master = None
                cause = master.last_line()
                master.stop()
                self._log.warning("ssh_master_failed", cause=cause)
                raise ProcessLaunchError(command, OSError(
                    f"{self.launcher.where} failed: {cause}"
                ))
            if self._closed.is_set() or time.monotonic() >= deadline:
                self._master = None
                master.stop()
                why = ("the controller is closing" if self._closed.is_set()
                       else f"not connected within {spec.startup_timeout}s")
                raise ProcessLaunchError(command, OSError(f"{self.launcher.where}: {why}"))
            time.sleep(_MASTER_POLL)
        self._log.info("ssh_master_connected", pid=master.popen.pid,
                       seconds=round(time.monotonic() - started, 4))
        return path

    def _start_master(self, path: str, command: tuple[str, ...]) -> _Master:
        launcher = self.launcher
        assert self._directory is not None
        log_path = os.path.join(self._directory, "master.log")
        argv = [launcher.program(command), *launcher.connection_options(),
                "-M", "-N", "-o", "ControlPersist=no", "-o", f"ControlPath={_option_path(path)}",
                "--", launcher.host]
        guard: ParentDeathGuard | None
        try:
            # Should this process die outright, the guard removes the directory too: a close
            # that never runs would leave the socket and the log behind.
            guard = ParentDeathGuard.start(remove_on_death=self._directory)
        except OSError:
            guard = None  # no shell for a guard: spawn() has warned about it already
        try:
            with open(log_path, "ab") as errors:
                popen = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=errors,
                    cwd="/",
                    close_fds=True,
                    process_group=guard.pgid if guard is not None else 0,
                )
        except OSError as error:
            if guard is not None:
                guard.release()
            raise ProcessLaunchError(command, OSError(
                f"{launcher.where}: cannot start the connection master: {error}"
            )) from error
        return _Master(popen, guard, log_path)

    def close(self) -> None:
        """Stop the master (its sessions end with it) and remove the directory."""
        self.closing()
        with self._lock:
            master, self._master = self._master, None
            directory, self._directory = self._directory, None
        if master is not None:
            master.stop()
            self._log.info("ssh_master_stopped", pid=master.popen.pid)
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)

    def __repr__(self) -> str:
        return f"SshSession({self.launcher!r}, name={self.name!r})"


def _private_directory() -> str:
    """A new directory only this user can enter, short enough for a socket path in it."""
    directory = tempfile.mkdtemp(prefix="juicectl-ssh-")
    if len(directory) > _MAX_CONTROL_PATH:
        os.rmdir(directory)
        directory = tempfile.mkdtemp(prefix="juicectl-ssh-", dir="/tmp")
    return directory


def _option_path(path: str) -> str:
    """``path`` as the value of an ``-o`` option (``IdentityFile``, ``UserKnownHostsFile``,
    ``ControlPath``), read literally: ssh splits a value at whitespace (``UserKnownHostsFile``
    takes a list) unless it is in double quotes, in which a backslash escapes ``"`` and
    itself; and it expands ``%`` tokens, so every ``%`` is doubled."""
    quoted = path.replace("%", "%%").replace("\\", "\\\\").replace('"', '\\"')
    return f'"{quoted}"'
