"""Plain data: how a controller launches its child, restarts it, talks to it, and bounds
every wait.

Nothing here keeps time by itself, and the only I/O is ``LaunchSpec`` checking that its
``cwd`` is a directory; the controller actor asks these objects what to do
(``RestartPolicy.should_restart``, ``RestartPolicy.delay``, ``RestartHistory.decide``) and
keeps the clock: every time is passed in. Each object checks its values when it is made, so
that a bad one fails where it was written, with the option's name and the value.
"""

from __future__ import annotations

import math
import os
import random
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from juicectl._busy_poll import DEFAULT_BUSY_POLL, check_busy_poll
from juicectl.juice import Limits, Responders
from juicectl.launch import Launcher, LocalLauncher

RestartMode = Literal["permanent", "transient", "temporary"]
Readiness = Literal["negotiate", "connected"]


def check_timeout(value: object, name: str, *, none: bool = False) -> float | None:
    """``value`` as a timeout: a number of seconds above 0 and at most
    ``threading.TIMEOUT_MAX`` (about 292 years, the longest a thread can wait), or None when
    ``none``.

    Raises:
        TypeError: ``value`` is not a number (a ``str``, a ``bool``...); the message names
            ``name`` and the value.
        ValueError: it is 0 or less, above ``threading.TIMEOUT_MAX``, infinite or NaN.
    """
    if value is None and none:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        expected = "a number of seconds or None" if none else "a number of seconds"
        raise TypeError(f"{name} must be {expected}, not {value!r}")
    if not (math.isfinite(value) and value > 0):
        expected = "> 0 seconds or None" if none else "> 0 seconds"
        raise ValueError(f"{name} must be {expected}, not {value!r}")
    if value > threading.TIMEOUT_MAX:
        raise ValueError(
            f"{name} must be at most {threading.TIMEOUT_MAX:.0f} seconds (the longest a "
            f"thread can wait), not {value!r}"
        )
    return float(value)


@dataclass(frozen=True)
class ConnectionOptions:
    """How a connection to a child behaves: the one place these options and their defaults
    are written. ``ProcessController.start()`` takes them as keywords, ``LaunchSpec`` holds
    them, and each connection (and each in-memory pair of ``juicectl.testing``) gets them
    whole.

    Attributes:
        request_timeout: the default timeout of each ``call()``, in seconds, or None for none
            (a call's own ``timeout=`` overrides it). Past it the call fails with
            ``RequestTimeout``; an answer that comes later is dropped.
        max_in_flight: the most requests outstanding at once on one connection, each way. A
            caller past it waits for a free slot (up to its timeout), or with
            ``wait_for_slot=False`` fails with ``TooManyRequests``; a child with that many
            requests to the parent unanswered that sends another breaks the connection
            (``LimitExceeded``).
        limits: the limits both ways (None: the codec's defaults, ``Limits()``, which are the
            child runtime's defaults too): what the child sends is parsed under them, and a
            request (or responder answer) that would break them is refused before it is
            written (``LimitExceeded``; see ``docs/protocol.md``).
        busy_poll: how long (seconds, 0 to 0.01) a caller reading its own answer may poll the
            child's stdout before it sleeps on it; it does so only while that brings answers
            sooner (see ``docs/performance.md``). 0 never polls.
        responder: an object whose ``@Command.responder`` methods answer the child's
            requests, or None (then only the built-in ``Negotiate`` is answered).

    Raises:
        TypeError: an option has the wrong type (the message names it and the value).
        ValueError: an option is out of its range.
    """

    request_timeout: float | None = None
    max_in_flight: int = 1024
    limits: Limits | None = None
    busy_poll: float = DEFAULT_BUSY_POLL
    responder: object | None = None

    def __post_init__(self) -> None:
        check_timeout(self.request_timeout, "request_timeout", none=True)
        max_in_flight = self.max_in_flight
        if isinstance(max_in_flight, bool) or not isinstance(max_in_flight, int):
            raise TypeError(f"max_in_flight must be an int, not {max_in_flight!r}")
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, not {max_in_flight!r}")
        if self.limits is not None and not isinstance(self.limits, Limits):
            raise TypeError(f"limits must be a juicectl.juice.Limits or None, not {self.limits!r}")
        check_busy_poll(self.busy_poll)
        if isinstance(self.responder, type):
            raise TypeError(
                f"responder must be an object whose methods answer the child, not the class "
                f"{self.responder.__qualname__} itself (pass an instance)"
            )
        if self.responder is not None and not Responders(self.responder, builtins=False).commands:
            raise TypeError(
                f"responder must be an object with @Command.responder methods to answer the "
                f"child, not {self.responder!r:.80} (it has none)"
            )


@dataclass(frozen=True)
class RestartPolicy:
    """When the controller restarts a child that ended without being asked to.

    Attributes:
        mode: ``"permanent"`` restarts after any exit that was not requested;
            ``"transient"`` only after an abnormal one (non-zero status, a signal, a failed
            start); ``"temporary"`` never restarts by itself (the original's behaviour: the
            next ``get_process()`` launches a new child).
        initial_delay: seconds before the first restart.
        factor: each further restart waits ``factor`` times longer...
        max_delay: ...up to this many seconds.
        jitter: a random fraction (0 to 1) of the delay added or removed, so that many
            controllers do not restart in lockstep.
        max_restarts: at most this many automatic restarts within ``window`` seconds; past
            that the controller gives up (emits ``GaveUp``) until the next ``get_process()``.
        window: the intensity window, in seconds.
        reset_after: a child that stayed up this long resets the backoff to ``initial_delay``.

    Every number is finite; the seconds and ``max_restarts`` are at least 0.

    Raises:
        TypeError: a field has the wrong type (the message names it and the value).
        ValueError: a field is out of its range.
    """

    mode: RestartMode = "permanent"
    initial_delay: float = 0.1
    factor: float = 2.0
    max_delay: float = 30.0
    jitter: float = 0.1
    max_restarts: int = 5
    window: float = 60.0
    reset_after: float = 30.0

    def __post_init__(self) -> None:
        if self.mode not in ("permanent", "transient", "temporary"):
            raise ValueError(
                f"RestartPolicy.mode must be 'permanent', 'transient' or 'temporary', "
                f"not {self.mode!r}"
            )
        for name in ("initial_delay", "factor", "max_delay", "jitter", "window", "reset_after"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError(f"RestartPolicy.{name} must be a number, not {value!r}")
            if not math.isfinite(value):
                raise ValueError(f"RestartPolicy.{name} must be a finite number, not {value!r}")
        for name in ("initial_delay", "max_delay", "window", "reset_after"):
            if getattr(self, name) < 0:
                raise ValueError(f"RestartPolicy.{name} must be >= 0, not {getattr(self, name)!r}")
        if self.factor < 1:
            raise ValueError(f"RestartPolicy.factor must be >= 1, not {self.factor!r}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"RestartPolicy.jitter must be within [0, 1], not {self.jitter!r}")
        max_restarts = self.max_restarts
        if isinstance(max_restarts, bool) or not isinstance(max_restarts, int):
            raise TypeError(f"RestartPolicy.max_restarts must be an int, not {max_restarts!r}")
        if max_restarts < 0:
            raise ValueError(f"RestartPolicy.max_restarts must be >= 0, not {max_restarts!r}")

    def should_restart(self, *, requested: bool, abnormal: bool) -> bool:
        """Whether a child that ended this way is restarted automatically."""
        if requested or self.mode == "temporary":
            return False
        return self.mode == "permanent" or abnormal

    def delay(self, attempt: int, rng: Callable[[], float] = random.random) -> float:
        """Seconds to wait before restart number ``attempt`` (0 for the first) of a streak."""
        try:
            base = min(self.max_delay, self.initial_delay * self.factor ** max(0, attempt))
        except OverflowError:
            # factor ** attempt is past a float's range (a streak of ~1000 restarts or more):
            # the delay reached max_delay long ago.
            base = self.max_delay if self.initial_delay > 0 else 0.0
        if self.jitter:
            base *= 1 + self.jitter * (2 * rng() - 1)
        return max(0.0, base)


@dataclass(frozen=True)
class Backoff:
    """Restart after ``delay`` seconds: restart number ``attempt`` (1 for the first) of the
    current streak, with ``restarts_in_window`` restarts already counted in the window."""

    delay: float
    attempt: int
    restarts_in_window: int


@dataclass(frozen=True)
class GiveUp:
    """No more automatic restarts: ``restarts_in_window`` restarts already fill the window."""

    restarts_in_window: int


class RestartHistory:
    """One controller's restart bookkeeping under a ``RestartPolicy``: the automatic restarts
    within the window, the streak of restarts since a child last stayed up, and the total.

    Pure: it keeps no clock (``now`` is passed in) and does nothing but count. The controller
    asks ``decide`` after an exit nobody asked for, calls ``restarted`` when a restart
    launches, and ``reset`` when a caller's ``get_process()`` launches.
    """

    def __init__(self, policy: RestartPolicy, rng: Callable[[], float] = random.random) -> None:
        self.policy = policy
        self._rng = rng
        self._times: deque[float] = deque()
        self.streak = 0
        """Restarts scheduled since the streak began (the next one's attempt is streak+1)."""
        self.total = 0
        """Automatic restarts launched, in all."""

    @property
    def in_window(self) -> int:
        """Restarts counted against ``max_restarts``, as of the last ``decide``."""
        return len(self._times)

    def decide(
        self, *, abnormal: bool, uptime: float | None, now: float
    ) -> Backoff | GiveUp | None:
        """What follows an exit nobody asked for: None if the policy does not restart it.

        ``uptime`` is how long the child was ready (None if it never was); at least
        ``reset_after`` starts the streak afresh. A restart exactly ``window`` seconds ago
        still counts.
        """
        policy = self.policy
        if not policy.should_restart(requested=False, abnormal=abnormal):
            return None
        if uptime is not None and uptime >= policy.reset_after:
            self.streak = 0
        while self._times and now - self._times[0] > policy.window:
            self._times.popleft()
        if len(self._times) >= policy.max_restarts:
            return GiveUp(len(self._times))
        delay = policy.delay(self.streak, self._rng)
        self.streak += 1
        return Backoff(delay, self.streak, len(self._times))

    def restarted(self, now: float) -> None:
        """A restart launched at ``now``."""
        self._times.append(now)
        self.total += 1

    def reset(self) -> None:
        """A caller asked for the launch: count the window and the streak afresh."""
        self._times.clear()
        self.streak = 0


@dataclass(frozen=True)
class LaunchSpec:
    """Everything a process actor needs to launch one child and get it ready.

    Attributes:
        argv: the command, as a list of strings (never run through a shell).
        env: the child's environment (a mapping of ``str`` to ``str``), or None to inherit
            the parent's.
        cwd: the child's working directory (it must exist; a path-like is taken as its
            ``str``), or None to inherit.
        launcher: where and how the command runs: ``juicectl.launch.local()`` (the
            default, this machine), ``ssh(host, ...)`` or ``prefix([...])``. With a remote
            launcher ``cwd`` is a directory there, and ``env`` the worker's whole
            environment there (None: the remote login environment).
        readiness: ``"negotiate"`` (a ``Negotiate`` round trip, answered by every reference
            peer) or ``"connected"`` (ready as soon as the pipes are open, like the original).
        prepare: called with the ``Connection`` once the child answers, before any waiter is
            released; whatever it sends goes out first. It may return a future (anything with
            ``get(timeout=...)``) to be waited for. If it raises, the start fails.
        startup_timeout: seconds from launch to ready; past it the child is stopped.
        stop_timeout: seconds to wait for the child to exit after ``Shutdown`` before
            closing its stdin.
        kill_timeout: seconds to wait after closing its stdin before SIGTERM to its process
            group, and again after SIGTERM before SIGKILL.
        connection: the options of each connection to the child (``ConnectionOptions``).
        stderr_tail_lines: how many of the child's last stderr lines to keep for errors.
    """

    argv: Sequence[str]
    env: Mapping[str, str] | None = None
    cwd: str | None = None
    launcher: Launcher = field(default_factory=LocalLauncher)
    readiness: Readiness = "negotiate"
    prepare: Callable[[Any], Any] | None = None
    startup_timeout: float = 10.0
    stop_timeout: float = 5.0
    kill_timeout: float = 2.0
    connection: ConnectionOptions = field(default_factory=ConnectionOptions)
    stderr_tail_lines: int = 50

    def __post_init__(self) -> None:
        _check_argv(self.argv)
        _check_env(self.env)
        if self.cwd is not None:
            if isinstance(self.cwd, os.PathLike):
                object.__setattr__(self, "cwd", os.fspath(self.cwd))
            if not isinstance(self.cwd, str):
                raise TypeError(
                    f"cwd must be a str (a directory) or None to inherit, not "
                    f"{type(self.cwd).__name__} {self.cwd!r}"
                )
        _check_launcher(self.launcher)
        check = getattr(self.launcher, "check", None)
        if callable(check):
            check(self)  # the local launcher checks that cwd exists here
        if self.readiness not in ("negotiate", "connected"):
            raise ValueError(
                f"readiness must be 'negotiate' or 'connected', not {self.readiness!r}"
            )
        for name in ("startup_timeout", "stop_timeout", "kill_timeout"):
            check_timeout(getattr(self, name), name)
        if not isinstance(self.connection, ConnectionOptions):
            raise TypeError(
                f"connection must be a ConnectionOptions, not {self.connection!r}"
            )


def _check_argv(argv: object) -> None:
    """``LaunchSpec.argv``: a non-empty list (or tuple) of strings, exec'd as it is."""
    if isinstance(argv, str | bytes) or not isinstance(argv, Sequence) or not argv:
        raise ValueError(
            "argv must be a non-empty list of strings (juicectl never runs a shell), "
            f"not {argv!r}"
        )
    for index, item in enumerate(argv):
        if not isinstance(item, str):
            raise TypeError(
                f"every item of argv must be a str: argv[{index}] is "
                f"{type(item).__name__} {item!r} in {list(argv)!r}"
            )
        if "\0" in item:
            raise ValueError(f"argv[{index}] contains a NUL character: {item!r}")
    if not argv[0]:
        raise ValueError(f"argv[0], the program, is empty: {list(argv)!r}")


def _check_launcher(launcher: object) -> None:
    """``LaunchSpec.launcher``: anything with an ``invocation(spec)`` method."""
    if not callable(getattr(launcher, "invocation", None)) or isinstance(launcher, type):
        raise TypeError(
            "launcher must be a launcher: juicectl.launch.local(), ssh(host, ...), "
            f"prefix([...]), or an object with an invocation(spec) method; not {launcher!r}"
        )


def _check_env(env: object) -> None:
    """``LaunchSpec.env``: None, or a mapping of str to str that an environment can hold."""
    if env is None:
        return
    if not isinstance(env, Mapping):
        raise TypeError(
            f"env must be a mapping of str to str (or None to inherit), not "
            f"{type(env).__name__} {env!r}"
        )
    for key, value in env.items():
        if not isinstance(key, str):
            raise TypeError(f"env keys must be str: {key!r} is {type(key).__name__}")
        if not key or "=" in key or "\0" in key:
            raise ValueError(
                f"env key {key!r} is not a variable name (empty, or with '=' or NUL)"
            )
        if not isinstance(value, str):
            raise TypeError(
                f"env[{key!r}] must be a str, not {type(value).__name__} {value!r}"
            )
        if "\0" in value:
            raise ValueError(f"env[{key!r}] contains a NUL character: {value!r}")
