"""``ProcessController``: the thread-safe handle users hold.

It owns nothing but references: the controller actor keeps the mode, the process actors own
the children. Each method creates a reply future, puts it in a message and returns it, so
callers choose how long to wait, and an actor that holds a controller never blocks on it.
"""

from __future__ import annotations

import functools
import itertools
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import pykka

from juicectl import _exit as exit_close
from juicectl._future import ReplyFuture
from juicectl._log import get_logger
from juicectl._start_checks import (
    check_callable,
    check_hook,
    checked_name,
    checked_policy,
    checked_subscribers,
)
from juicectl._threads import join_actor_threads, start_daemon
from juicectl.actors.controller import ControllerActor, EndOfLife, Mode
from juicectl.actors.process import ProcessActor
from juicectl.actors.subscribers import subscriber_for
from juicectl.connection import Connection
from juicectl.exceptions import ControllerClosed, ProcessUnavailable
from juicectl.juice import ArgumentError, Command, Limits
from juicectl.launch import Launcher, LaunchSession, LocalLauncher, open_session
from juicectl.messages import (
    GetProcess,
    ProcessStarted,
    ProcessTerminated,
    StopProcess,
    StopResult,
    Subscribe,
    _Close,
    _GetMode,
    _GetStats,
)
from juicectl.policy import (
    ConnectionOptions,
    LaunchSpec,
    Readiness,
    RestartPolicy,
    check_timeout,
)

log = get_logger(__name__)

#: The connection options' defaults, for the keywords of start().
_DEFAULTS = ConnectionOptions()
# Seconds a close() that has its result waits for the controller's own threads to end (its
# actors' and the release thread, which end moments after the result is set).
_THREADS_END_WAIT = 2.0

_names = itertools.count(1)

Hook = Callable[[], Any] | pykka.ActorRef[Any] | None
ProcessFactory = Callable[[pykka.ActorRef[Any], int, LaunchSpec], pykka.ActorRef[Any]]


class ProcessController:
    """Launches a child on first use, restarts it when it dies, stops it on request.

    Create one with ``ProcessController.start(argv, ...)``; it starts in mode ``"stopped"``
    and launches the child on the first ``get_process()``. Every method is thread-safe and
    returns at once; the futures say when things happened.
    """

    def __init__(
        self,
        actor_ref: pykka.ActorRef[Any],
        name: str,
        spec: LaunchSpec,
        end_of_life: ReplyFuture[EndOfLife] | None = None,
        *,
        owned: bool = False,
        restart: RestartPolicy | None = None,
    ) -> None:
        """Use ``ProcessController.start()``; this wraps an already started controller actor
        (``end_of_life``: the future that actor sets as it stops, if it was given one;
        ``owned``: a pool's worker, which its pool closes, also at exit; ``restart``: the
        actor's restart policy)."""
        self._actor = actor_ref
        self.name = name
        self.spec = spec
        self.restart = restart if restart is not None else RestartPolicy()
        """The ``RestartPolicy`` its children run under."""
        self._closed = False
        self._close_pending: ReplyFuture[StopResult] | None = None  # a close not ended yet
        self._hooks: list[pykka.ActorRef[Any]] = []
        self._end_of_life = end_of_life
        self._launch_session: LaunchSession | None = None
        self._release_lock = threading.Lock()  # see _release
        self._release_thread: threading.Thread | None = None  # see _actor_ended
        wave = exit_close.Wave.OWNED if owned else exit_close.Wave.OWNERS
        exit_close.enter(wave, self, self._begin_close)

    @classmethod
    def start(
        cls,
        argv: Sequence[str],
        *,
        name: str | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        launcher: Launcher | None = None,
        on_process_startup: Hook = None,
        on_process_termination: Hook = None,
        prepare: Callable[[Connection], Any] | None = None,
        responder: object | None = _DEFAULTS.responder,
        restart: RestartPolicy | None = None,
        readiness: Readiness = "negotiate",
        startup_timeout: float = 10.0,
        stop_timeout: float = 5.0,
        kill_timeout: float = 2.0,
        request_timeout: float | None = _DEFAULTS.request_timeout,
        max_in_flight: int = _DEFAULTS.max_in_flight,
        limits: Limits | None = _DEFAULTS.limits,
        subscribers: Iterable[pykka.ActorRef[Any]] = (),
        process_factory: ProcessFactory | None = None,
        busy_poll: float = _DEFAULTS.busy_poll,
    ) -> ProcessController:
        """Start a controller (in mode ``"stopped"``) for the child ``argv``.

        Args:
            argv: the child's command as a list (never run through a shell).
            name: a name for logs and events (default ``"controller-N"``).
            env: the child's environment (None: inherit the parent's).
            cwd: the child's working directory (None: inherit the parent's).
            launcher: where the child runs: ``juicectl.local()`` (the default),
                ``juicectl.ssh(host, ...)`` or ``juicectl.prefix([...])`` (see
                ``docs/remote.md``). It is opened for this controller (the ssh launcher's
                connection master lives until ``close()``).
            on_process_startup: a no-argument callable (run in a subscriber actor, never on
                the controller's thread) or an ``ActorRef`` told ``ProcessStarted``, whenever
                a newly spawned child is ready.
            on_process_termination: likewise, told ``ProcessTerminated`` whenever a child's
                connection is lost, except after an explicit ``stop_process()``.
            prepare: ``prepare(connection)`` runs once the child answers, before any caller
                gets the connection; what it sends goes out first. It may return a future to
                wait for. If it fails, the start fails.
            responder, request_timeout, max_in_flight, limits, busy_poll: the connection's
                options (``ConnectionOptions``, where each is described, with its default);
                a bad value raises ``TypeError`` or ``ValueError`` here, naming the option.
            restart: the ``RestartPolicy`` (default: permanent, with backoff and a limit).
            readiness: ``"negotiate"`` (default) or ``"connected"``.
            startup_timeout: seconds from launch to ready; past it the child is stopped
                and the start counts as failed.
            stop_timeout: seconds to wait for the child to exit after ``Shutdown``.
            kill_timeout: seconds to wait after closing stdin, and again after SIGTERM,
                before the next step (see ``LaunchSpec``).
            subscribers: ``ActorRef``s told every event.
            process_factory: replaces the process actor (tests drive the controller with a
                fake one).

        Every option is checked here, before any actor starts.

        Raises:
            TypeError: an option has the wrong type (the message names it and the value).
            ValueError: an option is out of its range (a ``cwd`` that is no directory, an
                unknown ``readiness``, a timeout of 0...).
        """
        spec = LaunchSpec(
            argv=tuple(argv) if isinstance(argv, Iterable) and not isinstance(argv, str | bytes)
            else argv,
            env=dict(env) if isinstance(env, Mapping) else env,
            cwd=cwd,
            launcher=launcher if launcher is not None else LocalLauncher(),
            readiness=readiness,
            prepare=prepare,
            startup_timeout=startup_timeout,
            stop_timeout=stop_timeout,
            kill_timeout=kill_timeout,
            connection=ConnectionOptions(
                request_timeout=request_timeout,
                max_in_flight=max_in_flight,
                limits=limits,
                busy_poll=busy_poll,
                responder=responder,
            ),
        )
        # Every option is checked before any actor starts: a bad one starts nothing.
        name = checked_name(name, lambda: f"controller-{next(_names)}")
        policy = checked_policy(restart)
        check_callable(prepare, "prepare", 1, "a callable taking the Connection, or None")
        check_callable(
            process_factory,
            "process_factory",
            3,
            "a callable (controller_ref, generation, spec) -> ActorRef, or None",
        )
        hooks_wanted = {
            "on_process_startup": (on_process_startup, ProcessStarted),
            "on_process_termination": (on_process_termination, ProcessTerminated),
        }
        for option, (hook, _) in hooks_wanted.items():
            check_hook(hook, option)
        refs = checked_subscribers(subscribers)

        session = open_session(spec.launcher, name)
        hooks: list[pykka.ActorRef[Any]] = []
        try:
            hooks.extend(
                subscriber_for(hook, (event,), name=name)
                for hook, event in hooks_wanted.values()
                if hook is not None
            )
            factory = process_factory or ProcessActor.factory(name, launcher=session)
            end_of_life: ReplyFuture[EndOfLife] = ReplyFuture()
            actor_ref = ControllerActor.start(
                name, spec, factory, policy, [*hooks, *refs], end_of_life=end_of_life
            )
        except BaseException:
            for hook_ref in hooks:
                hook_ref.stop(block=False)
            session.close()
            raise
        log.info("controller_started", controller=name, argv=list(spec.argv))
        controller = cls(actor_ref, name, spec, end_of_life, restart=policy)
        controller._hooks = hooks
        controller._launch_session = session
        end_of_life.add_done_callback(controller._actor_ended)
        return controller

    # --- the seed's operations ------------------------------------------------------------

    def get_process(self) -> ReplyFuture[Connection]:
        """A future of the ``Connection`` to a ready child, launching one if none runs.

        Fails with ``ProcessUnavailable`` (transient: retry later) while stopping, or if the
        start fails; with ``ProcessLaunchError`` if the child cannot be launched at all.
        """
        future: ReplyFuture[Connection] = ReplyFuture()
        self._tell(GetProcess(future), future)
        return future

    def stop_process(self) -> ReplyFuture[StopResult]:
        """Stop the child; the future resolves with a ``StopResult`` once it has exited."""
        future: ReplyFuture[StopResult] = ReplyFuture()
        self._tell(StopProcess(future), future)
        return future

    def call(self, command: Any, *, timeout: float | None = None, **arguments: Any) -> Any:
        """Get the process (launching it if needed) and send one request; block for the
        response dict. A convenience for scripts: ``get_process()`` then ``call()``.

        ``timeout`` bounds the request (``RequestTimeout``), not the start: a child that
        cannot start fails the call as ``get_process()`` fails (``ProcessUnavailable``,
        ``ProcessLaunchError``). Bad arguments raise ``ArgumentError`` before any child is
        launched.
        """
        check_request(command, arguments, timeout)
        connection = self.ready_connection()
        return connection.call(command, timeout=timeout, **arguments).get()

    def ready_connection(self) -> Connection:
        """``get_process().get()``, bounded by :func:`ready_bound` (which the controller's
        own bounds keep it under: past it, ``ProcessUnavailable``)."""
        bound = ready_bound(self.spec, self.restart)
        try:
            connection: Connection = self.get_process().get(timeout=bound)
        except pykka.Timeout:
            raise ProcessUnavailable(
                f"controller {self.name!r}: no child ready within {bound:.0f}s"
            ) from None
        return connection

    @property
    def launch_session(self) -> LaunchSession | None:
        """The launcher as opened for this controller (``SshSession`` for an ``ssh()``
        launcher: its ``master_pid``); None once closed."""
        return self._launch_session

    @property
    def actor_ref(self) -> pykka.ActorRef[Any]:
        """The controller actor's ``ActorRef``, for actors that drive it with messages.

        An actor of yours may ``tell()`` it the orders of ``juicectl.messages``:
        ``GetProcess(reply_to)``, ``StopProcess(reply_to)`` and ``Subscribe(actor_ref)``.
        ``reply_to`` is a ``juicectl.ReplyFuture`` you create; the controller settles it
        exactly once, on its own thread, so give it an ``add_done_callback()`` that
        ``tell()``s your actor, and never wait on it in an actor. A subscriber is told every
        event (``ModeChanged``, ``ProcessStarted``, ``ProcessTerminated``, ``GaveUp``) as a
        message. See ``docs/actors.md``.

        Closing stays with this handle (``close()``): after it the actor is stopped, and
        ``tell()`` raises ``pykka.ActorDeadError``.
        """
        return self._actor

    @property
    def mode(self) -> str:
        """The controller's mode: ``"stopped"``, ``"starting"``, ``"ready"``, ``"stopping"``
        or ``"waiting_ready"``."""
        future: ReplyFuture[Mode] = ReplyFuture()
        if not self._tell(_GetMode(future), future):
            return Mode.STOPPED.value
        return str(Mode(future.get(timeout=10)).value)

    def stats(self) -> dict[str, Any]:
        """Figures, as a dict with always the same keys (see ``ControllerActor.stats``):
        ``name``, ``mode``, ``pid``, ``generation``, ``uptime``, ``restarts``,
        ``restarts_in_window``, ``restart_pending``, ``gave_up``, ``waiting``,
        ``last_exit``, the current connection's ``sent``, ``answered``, ``failed`` and
        ``in_flight``, and ``closed``: False while the controller runs; True once its actor
        has stopped (``close()``, ``ActorRegistry.stop_all()``), and then the other keys
        hold its last figures."""
        future: ReplyFuture[dict[str, Any]] = ReplyFuture()
        if self._tell(_GetStats(future), future):
            figures = dict(future.get(timeout=10))
            return {**figures, "closed": not self._actor.is_alive()}
        record = self._last_words(10.0)
        if record is None:
            raise ControllerClosed(
                f"controller {self.name} is closed and left no figures (its actor did not "
                "stop normally)"
            )
        return {**record.stats, "closed": True}

    def subscribe(self, subscriber: pykka.ActorRef[Any]) -> None:
        """Tell ``subscriber`` (an ``ActorRef``) every event from now on."""
        self._tell(Subscribe(subscriber), None)

    # --- closing ------------------------------------------------------------------------

    def close(self, timeout: float | None = None) -> StopResult | None:
        """Stop the child (if any, through the whole escalation) and every actor of this
        controller; also run at interpreter exit. Returns how the stop ended: a
        ``StopResult`` (``"not_running"`` if no child ran), also when the actors were already
        stopped (``ActorRegistry.stop_all()`` stops the child the same way and closes the
        controller); None from a call after a close that has ended, or if the stop did not
        end within ``timeout`` (default: the escalation's bound; a number of seconds above 0).
        After a timed-out close the stop goes on in the background and ends within the
        escalation's bound. A close that was interrupted (Ctrl-C while it waits) is waited
        for again by the next ``close()``, or at interpreter exit.

        Raises:
            TypeError, ValueError: ``timeout`` is not None or a number of seconds above 0.
        """
        timeout = check_timeout(timeout, "timeout", none=True)
        finish = self._begin_close(timeout)
        return None if finish is None else finish()

    def _begin_close(self, timeout: float | None = None) -> Callable[[], StopResult | None] | None:
        """Tell the actor to close, without waiting; the wait for the end, or None when
        the controller was closed already (the exit-time close begins every close first)."""
        if self._closed:
            pending = self._close_pending
            return None if pending is None else functools.partial(
                self._finish_close, pending, timeout
            )
        self._closed = True
        session = self._launch_session
        if session is not None:
            session.closing()  # a launch still connecting (an ssh master) gives up now
        future: ReplyFuture[StopResult] = ReplyFuture()
        # No recheck: closing stops the actor, which settles this future as it stops.
        if not self._tell(_Close(future), future, recheck=False):
            future.try_set_exception(ControllerClosed(f"controller {self.name!r} is closed"))
        self._close_pending = future
        return functools.partial(self._finish_close, future, timeout)

    def _ended(self, timeout: float | None = None) -> StopResult | None:
        self._release()
        result = self._result_of_end()
        self._wait_for_threads(timeout)
        return result

    def _wait_for_threads(self, timeout: float | None = None) -> None:
        """Leave no thread of this controller behind (bounded): pykka sets the futures an
        actor's ``on_stop`` settles while its thread still runs, and the release thread
        ends once ``_release`` is done."""
        record = self._last_words(_THREADS_END_WAIT)
        if record is None:
            return
        wait = _THREADS_END_WAIT
        if record.process is not None:
            # A child still stopping (``stop_all(block=False)``): its process actor's thread
            # ends it, within the escalation's bound, and this close returns once it has, so
            # that an exit right after never cuts that stop short. (pykka marks the actor
            # stopped before its on_stop runs: the thread is what tells.)
            wait = _stop_bound(self.spec)
            if timeout is not None:
                wait = min(wait, timeout)  # the close's own bound, when it gave one
        started = time.monotonic()
        join_actor_threads(record.actors, wait)
        thread = self._release_thread
        if thread is not None and thread is not threading.current_thread():
            left = _THREADS_END_WAIT
            if timeout is not None:
                left = max(0.0, min(left, timeout - (time.monotonic() - started)))
            thread.join(left)

    def _finish_close(
        self, future: ReplyFuture[StopResult], timeout: float | None
    ) -> StopResult | None:
        result = exit_close.finish_close(
            self, functools.partial(self._await_close, future, timeout), self._actor
        )
        self._close_pending = None
        return result

    def _await_close(
        self, future: ReplyFuture[StopResult], timeout: float | None
    ) -> StopResult | None:
        spec = self.spec
        bound = timeout if timeout is not None else _stop_bound(spec) + spec.startup_timeout
        if not self._actor.is_alive():
            # Already stopped: it settled the future as it stopped, or never read the message.
            bound = min(bound, 1.0)
        try:
            result: StopResult = future.get(timeout=bound)
        except pykka.Timeout:
            if not self._actor.is_alive():
                return self._ended(timeout)
            log.warning("close_timed_out", controller=self.name, timeout=bound)
            self._actor.stop(block=False)
            self._release()
            return None
        except ControllerClosed:
            # The actor stopped with a child still running (its process actor stops it).
            return self._ended(timeout)
        if self._actor.is_alive():
            self._actor.stop(block=True, timeout=5)
        self._release()
        self._wait_for_threads()
        return result

    def _last_words(self, wait: float) -> EndOfLife | None:
        """What the actor left as it stopped, waiting up to ``wait`` seconds for it (pykka
        marks an actor dead before its ``on_stop`` has run); None if it left nothing."""
        if self._end_of_life is None:
            return None
        try:
            record: EndOfLife = self._end_of_life.get(timeout=wait)
        except pykka.Timeout:
            return None
        return record

    def _result_of_end(self) -> StopResult | None:
        record = self._last_words(5.0)
        return None if record is None else record.result

    def _actor_ended(self, future: ReplyFuture[EndOfLife]) -> None:
        """The controller actor has stopped, however (a close, ``stop_all()``, a crash): what
        the launcher holds (the ssh master) is released once no child of this controller is
        left, at once or once the process actor stopping the last one has stopped. On a
        daemon thread: this runs on the actor's thread as it stops."""
        if self._launch_session is None:
            return
        try:
            process = future.get(timeout=0).process
        except Exception:
            process = None
        bound = _stop_bound(self.spec)

        def release() -> None:
            if process is not None:
                # Its thread, not actor_stopped: pykka sets that before on_stop, which is
                # where the process actor stops the child.
                join_actor_threads((process.actor_urn,), bound)
            self._release()

        self._release_thread = start_daemon(release, f"juicectl-release-{self.name}")
        if self._release_thread is None and process is None:
            release()  # no thread (interpreter exit): nothing to wait for, so here

    def _release(self) -> None:
        """After the stop: the hooks' actors, and what the launcher holds (the ssh
        connection master and its directory). The close and the end of the actor both call
        it; the lock makes the second wait until the first is done, so that a ``close()``
        returns only once the master has stopped and its directory is gone."""
        for hook in self._hooks:
            hook.stop(block=False)
        with self._release_lock:
            session, self._launch_session = self._launch_session, None
            if session is not None:
                session.close()

    def __enter__(self) -> ProcessController:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _tell(
        self, message: Any, future: ReplyFuture[Any] | None, *, recheck: bool = True
    ) -> bool:
        try:
            self._actor.tell(message)
        except pykka.ActorDeadError:
            if future is not None:
                future.try_set_exception(ControllerClosed(f"controller {self.name} is closed"))
            return False
        if recheck and future is not None and not self._actor.is_alive():
            # The actor stopped between pykka's alive check and the put: the message may sit
            # in an inbox nobody reads. Settling here is harmless if the actor got to it
            # first (a future is settled once), and it keeps a caller from waiting forever.
            future.try_set_exception(ControllerClosed(f"controller {self.name} is closed"))
            return False
        return True

    def __repr__(self) -> str:
        return f"<ProcessController {self.name} argv={list(self.spec.argv)!r}>"


def ready_bound(spec: LaunchSpec, restart: RestartPolicy | None = None) -> float:
    """The longest ``get_process()`` can take on a controller of ``spec``: a pending
    restart's backoff (``restart.max_delay`` with its jitter; the default policy's when not
    given), the start (``startup_timeout``), and the stop of a child that did not get ready
    (``stop_timeout`` and twice ``kill_timeout``), with 5 s to spare. The controller settles
    the future within it; a wait bounded by it is a safety net, not a timeout."""
    policy = restart if restart is not None else RestartPolicy()
    backoff = policy.max_delay * (1 + policy.jitter)
    return backoff + spec.startup_timeout + _stop_bound(spec)


def _stop_bound(spec: LaunchSpec) -> float:
    """The longest the stop of one child of ``spec`` takes: ``stop_timeout`` and twice
    ``kill_timeout`` (SIGTERM, then SIGKILL), with 5 s to spare."""
    return spec.stop_timeout + 2 * spec.kill_timeout + 5


def check_request(command: object, arguments: Mapping[str, Any], timeout: object) -> None:
    """Check a request before anything is launched for it, as the connection checks it at
    the write: ``ArgumentError`` unless ``command`` is a ``Command`` class taking
    ``arguments``; ``TypeError`` or ``ValueError`` for a ``timeout`` that is not None or a
    number of seconds above 0."""
    if not (isinstance(command, type) and issubclass(command, Command)):
        raise ArgumentError(f"call() needs a Command subclass, not {command!r}")
    command.make_arguments(arguments)
    check_timeout(timeout, "timeout", none=True)
