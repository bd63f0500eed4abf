"""``ProcessPool``: N workers behind one handle, each an ordinary ``ProcessController``.

The handle owns nothing but references: the pool actor (``juicectl.pool._actor``) decides
the workers' lives, the dispatcher (``juicectl.pool._dispatch``) carries requests on the
callers' own threads. Every method is thread-safe; ``call()`` returns a future at once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import os
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
from juicectl.child._runtime import BUSY_POLL_ENV
from juicectl.connection import Connection
from juicectl.exceptions import ControllerClosed
from juicectl.juice import Command, Limits
from juicectl.launch import Launcher, LocalLauncher
from juicectl.messages import StopResult
from juicectl.policy import (
    ConnectionOptions,
    LaunchSpec,
    Readiness,
    RestartPolicy,
    check_timeout,
)
from juicectl.pool._actor import PoolActor
from juicectl.pool._dispatch import Dispatcher, PoolFuture
from juicectl.pool._messages import GetPoolStats, StopPool
from juicectl.pool._options import Dispatch, GiveUpAction, PoolOptions, SpinPlan, spin_plan

__all__ = ["ProcessPool"]

log = get_logger(__name__)

_names = itertools.count(1)

Hook = Callable[[], Any] | pykka.ActorRef[Any] | None


class ProcessPool:
    """N worker processes behind one handle: requests go to the least loaded (or the key's)
    worker, a worker that dies is restarted while the others serve, and what it cannot have
    started is sent again elsewhere.

    Create one with ``ProcessPool.start(argv or LaunchSpec, size=N, ...)``; it starts
    ``min_size`` workers at once. ``call()`` returns a future of the response fields, as a
    connection's does. See ``docs/pools.md``.
    """

    def __init__(
        self,
        actor_ref: pykka.ActorRef[Any],
        dispatcher: Dispatcher,
        name: str,
        spec: LaunchSpec,
        options: PoolOptions,
        plan: SpinPlan,
        placements: Sequence[LaunchSpec] | None = None,
    ) -> None:
        """Use ``ProcessPool.start()``; this wraps an already started pool actor."""
        self._actor = actor_ref
        self._dispatcher = dispatcher
        self.name = name
        """The pool's name; its workers are ``NAME.wN`` (``NAME.wN.K`` for replacements)."""
        self.spec = spec
        """The ``LaunchSpec`` each worker runs (with the pool's own ``prepare`` in it); with
        ``launchers=``, the first launcher's."""
        self.placements = tuple(placements) if placements is not None else (spec,)
        """One ``LaunchSpec`` per launcher the workers are spread over (one, without
        ``launchers=``): the same command, each with its launcher."""
        self.options = options
        """The ``PoolOptions``."""
        self.spin_plan = plan
        """Who busy-polls: the parent's budget and the workers' (see ``docs/pools.md``)."""
        self._closed = False
        #: The stop of a close not ended yet (one interrupted is waited for again).
        self._close_pending: ReplyFuture[dict[str, StopResult | None]] | None = None
        exit_close.enter(exit_close.Wave.OWNERS, self, self._begin_close)

    @classmethod
    def start(
        cls,
        target: Sequence[str] | LaunchSpec,
        *,
        size: int | None = None,
        min_size: int | None = None,
        max_size: int | None = None,
        max_idle: float | None = None,
        recycle_after_calls: int | None = None,
        recycle_after_seconds: float | None = None,
        dispatch: Dispatch = "least_loaded",
        max_per_worker: int = 64,
        max_queued: int = 1024,
        on_give_up: GiveUpAction = "replace",
        name: str | None = None,
        restart: RestartPolicy | None = None,
        on_process_startup: Hook = None,
        on_process_termination: Hook = None,
        subscribers: Iterable[pykka.ActorRef[Any]] = (),
        worker_subscribers: Iterable[pykka.ActorRef[Any]] = (),
        busy_poll: float | None = None,
        worker_busy_poll: float | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        launcher: Launcher | None = None,
        launchers: Sequence[Launcher] | None = None,
        prepare: Callable[[Connection], Any] | None = None,
        responder: object | None = None,
        readiness: Readiness | None = None,
        startup_timeout: float | None = None,
        stop_timeout: float | None = None,
        kill_timeout: float | None = None,
        request_timeout: float | None = None,
        max_in_flight: int | None = None,
        limits: Limits | None = None,
    ) -> ProcessPool:
        """Start a pool of workers running ``target``.

        Args:
            target: the worker's command (a list, never run through a shell), or a whole
                ``LaunchSpec`` (then the launch keywords below must not be given).
            size: ``min_size = max_size = size``. Default (with neither of the next two):
                one worker per core.
            min_size, max_size: the pool grows from ``min_size`` towards ``max_size`` while
                every worker is busy, and shrinks back after ``max_idle``.
            max_idle, recycle_after_calls, recycle_after_seconds, dispatch, max_per_worker,
                max_queued, on_give_up: see ``PoolOptions``.
            name: the pool's name (default ``"pool-N"``).
            restart: each worker's ``RestartPolicy`` (default: permanent, with backoff).
            on_process_startup, on_process_termination, worker_subscribers: each worker's
                hooks and subscribers, as ``ProcessController.start`` takes them.
            subscribers: ``ActorRef``s told the pool's events (``WorkerChanged``,
                ``WorkerLost``, ``WorkerGaveUp``).
            busy_poll: the parent's busy-poll budget on each worker's connection (default:
                ``ConnectionOptions``'s).
            worker_busy_poll: the workers' (``JUICECTL_BUSY_POLL``); default: by the rule
                that at most one process per core spins (``spin_plan``).
            env, cwd, launcher, prepare, responder, readiness, startup_timeout, stop_timeout,
                kill_timeout, request_timeout, max_in_flight, limits: as
                ``ProcessController.start`` takes them, for every worker.
            launchers: spread the workers over these launchers (``ssh(host)`` for each host,
                say): each new slot goes to the launcher with the fewest, and a slot's
                replacements stay with its launcher. Not with ``launcher``; beside a
                ``LaunchSpec``, each replaces its launcher.

        Raises:
            TypeError, ValueError: a bad option, named in the message.
        """
        launch = {
            "env": env, "cwd": cwd, "launcher": launcher, "prepare": prepare,
            "responder": responder,
            "readiness": readiness, "startup_timeout": startup_timeout,
            "stop_timeout": stop_timeout, "kill_timeout": kill_timeout,
            "request_timeout": request_timeout, "max_in_flight": max_in_flight,
            "limits": limits,
        }
        if launchers is not None:
            launchers = _check_launchers(launcher, launchers)
            if not isinstance(target, LaunchSpec):
                # The spec's own checks (a cwd there) are its first launcher's.
                launch["launcher"] = launchers[0]
        if isinstance(target, LaunchSpec):
            given = sorted(key for key, value in launch.items() if value is not None)
            if given:
                raise TypeError(
                    f"{', '.join(given)}: give these in the LaunchSpec, not beside it"
                )
            spec = target
        else:
            if isinstance(target, str | bytes) or not isinstance(target, Iterable):
                raise TypeError(
                    "target must be the worker's command (a list of strings, never run "
                    f"through a shell) or a LaunchSpec, not {target!r}"
                )
            check_callable(prepare, "prepare", 1, "a callable taking the Connection, or None")
            spec = _spec_from(target, launch)
        if busy_poll is not None:
            spec = dataclasses.replace(
                spec, connection=dataclasses.replace(spec.connection, busy_poll=busy_poll)
            )
        placements = _placements(spec, launchers)
        options = PoolOptions.sized(
            size, min_size, max_size,
            max_idle=max_idle,
            recycle_after_calls=recycle_after_calls,
            recycle_after_seconds=recycle_after_seconds,
            dispatch=dispatch,
            max_per_worker=max_per_worker,
            max_queued=max_queued,
            on_give_up=on_give_up,
        )
        policy = checked_policy(restart)
        # The workers' hooks and subscribers are checked here, as a controller's are: a bad
        # one would otherwise fail each worker's start inside the pool actor.
        check_hook(on_process_startup, "on_process_startup")
        check_hook(on_process_termination, "on_process_termination")
        worker_refs = checked_subscribers(worker_subscribers, "worker_subscribers")
        pool_refs = checked_subscribers(subscribers)
        name = checked_name(name, lambda: f"pool-{next(_names)}")
        plan = spin_plan(_local_workers(placements, options.max_size), os.cpu_count() or 1,
                         parent=spec.connection.busy_poll, worker=worker_busy_poll)
        polling = _polling_placements(placements, plan, explicit=worker_busy_poll is not None)
        placements = [_pool_spec(placement, plan, explicit=worker_busy_poll is not None)
                      for placement in placements]
        spec = placements[0]

        holder: list[pykka.ActorRef[Any]] = []

        def tell(message: object) -> None:
            if holder:
                with contextlib.suppress(pykka.ActorDeadError):
                    holder[0].tell(message)

        dispatcher = Dispatcher(
            name,
            max_per_worker=options.max_per_worker,
            max_queued=options.max_queued,
            least_loaded=options.dispatch == "least_loaded",
            recycle_after_calls=options.recycle_after_calls,
            default_timeout=spec.connection.request_timeout,
            tell=tell,
        )
        actor_ref = PoolActor.start(
            name, placements, policy, options, dispatcher,
            polling_placements=polling, polling_workers=plan.polling_workers,
            worker_subscribers=worker_refs,
            on_process_startup=on_process_startup,
            on_process_termination=on_process_termination,
            subscribers=pool_refs,
        )
        holder.append(actor_ref)
        log.info("pool_started", pool=name, argv=list(spec.argv), min_size=options.min_size,
                 max_size=options.max_size, worker_busy_poll=plan.worker,
                 launchers=len(placements))
        return cls(actor_ref, dispatcher, name, spec, options, plan, placements)

    # --- requests ---------------------------------------------------------------------------

    def call(
        self,
        command: type[Command],
        /,
        *,
        key: Any = None,
        timeout: float | None = None,
        **arguments: Any,
    ) -> PoolFuture:
        """Send one request to a worker; return a future of the response fields (a dict).

        ``key`` (any hashable) sends every request with the same key to the same worker, for
        workers that keep state; without one the least loaded worker takes it. ``timeout``
        (seconds) bounds the whole request, time held by the pool included
        (``RequestTimeout``). The future fails as a connection's does, and with
        ``ProcessUnavailable`` only when the worker died with the request started; one it
        cannot have started goes to another worker.

        Raises:
            ArgumentError: bad arguments or ``timeout``.
            TooManyRequests: the pool already holds ``max_queued`` requests no worker can take.
            ControllerClosed: the pool is closed.
            ProcessUnavailable: every worker left the pool.
        """
        return self._dispatcher.submit(command, arguments, key, timeout)

    def call_with(
        self,
        command: type[Command],
        arguments: Mapping[str, Any],
        *,
        key: Any = None,
        timeout: float | None = None,
        may_block: bool = True,
    ) -> PoolFuture:
        """Like ``call()``, with the arguments as a mapping (for arguments named ``key`` or
        ``timeout``). ``may_block`` False: the caller never waits on a worker's input pipe;
        a write that meets it full is finished by a helper thread (``juicectl.aio``)."""
        return self._dispatcher.submit(command, arguments, key, timeout, may_block=may_block)

    # --- figures and lifecycle --------------------------------------------------------------

    @property
    def actor_ref(self) -> pykka.ActorRef[Any]:
        """The pool actor's ``ActorRef``."""
        return self._actor

    def stats(self) -> dict[str, Any]:
        """Figures: ``size`` (workers serving), ``slots``, ``min_size``, ``max_size``,
        ``queued`` (held now), ``written``, ``held``, ``resent``, ``failed_at_loss``,
        ``started``, ``recycled``, ``replaced``, ``left``, ``grown``, ``shrunk``, ``lost``,
        and ``workers``: one dict each (``name``, ``slot``, ``state``, ``pid``,
        ``generation``, ``where`` (its launcher: ``"local"``, ``"ssh host"``...),
        ``one_at_a_time``, ``in_flight``, ``calls``, ``uptime``)."""
        future: ReplyFuture[dict[str, Any]] = ReplyFuture()
        try:
            self._actor.tell(GetPoolStats(future))
        except pykka.ActorDeadError:
            return {"name": self.name, "state": "closed", "size": 0, "workers": []}
        return dict(future.get(timeout=10))

    def stop(self) -> ReplyFuture[dict[str, StopResult | None]]:
        """Stop every worker, all at once, and the pool; the future resolves with
        ``{worker name: StopResult}`` once every child has exited. Requests in flight are
        answered first where the worker answers ``Shutdown`` after them (the juicectl child
        does); requests the pool holds fail with ``ControllerClosed``."""
        future: ReplyFuture[dict[str, StopResult | None]] = ReplyFuture()
        try:
            self._actor.tell(StopPool(future))
        except pykka.ActorDeadError:
            self._dispatcher.close(ControllerClosed(f"pool {self.name!r} is closed"))
            future.try_set({})
        return future

    def close(self, timeout: float | None = None) -> dict[str, StopResult | None] | None:
        """Stop the pool (``stop()``) and wait: one controller's stop bound, not one per
        worker, since they stop in parallel. Idempotent; also run at interpreter exit.

        Returns each worker's ``StopResult`` by name; None from a call after a close that has
        ended, or if the stop did not end within ``timeout`` (default: one controller's stop
        bound; a number of seconds above 0): then the workers' stops go on in the background
        and end within their bound. A close that was interrupted (Ctrl-C while it waits) is
        waited for again by the next ``close()``, or at interpreter exit.

        Raises:
            TypeError, ValueError: ``timeout`` is not None or a number of seconds above 0.
        """
        timeout = check_timeout(timeout, "timeout", none=True)
        finish = self._begin_close(timeout)
        return None if finish is None else finish()

    def _begin_close(
        self, timeout: float | None = None
    ) -> Callable[[], dict[str, StopResult | None] | None] | None:
        """Tell the pool to stop, without waiting; the wait for the end, or None when the pool
        was closed already (the exit-time close begins every close first)."""
        if self._closed:
            pending = self._close_pending
            return None if pending is None else functools.partial(
                self._finish_close, pending, timeout
            )
        self._closed = True
        self._close_pending = self.stop()
        return functools.partial(self._finish_close, self._close_pending, timeout)

    def _finish_close(
        self, stopping: ReplyFuture[dict[str, StopResult | None]], timeout: float | None
    ) -> dict[str, StopResult | None] | None:
        result = exit_close.finish_close(
            self, functools.partial(self._await_close, stopping, timeout), self._actor
        )
        self._close_pending = None
        return result

    def _await_close(
        self, stopping: ReplyFuture[dict[str, StopResult | None]], timeout: float | None
    ) -> dict[str, StopResult | None] | None:
        spec = self.spec
        bound = timeout if timeout is not None else (
            spec.stop_timeout + 2 * spec.kill_timeout + spec.startup_timeout + 10
        )
        try:
            result = stopping.get(timeout=bound)
        except pykka.Timeout:
            log.warning("pool_close_timed_out", pool=self.name, timeout=bound)
            self._actor.stop(block=False)
            return None
        with contextlib.suppress(pykka.ActorDeadError, pykka.Timeout):
            if self._actor.is_alive():
                self._actor.stop(block=True, timeout=5)
        return dict(result)

    def __enter__(self) -> ProcessPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<ProcessPool {self.name} argv={list(self.spec.argv)!r}>"


def _spec_from(argv: Sequence[str], launch: dict[str, Any]) -> LaunchSpec:
    """A ``LaunchSpec`` from ``argv`` and the launch keywords, with ``ProcessController``'s
    defaults for those not given."""
    defaults = ConnectionOptions()
    given = {key: value for key, value in launch.items() if value is not None}
    connection = ConnectionOptions(
        request_timeout=given.pop("request_timeout", defaults.request_timeout),
        max_in_flight=given.pop("max_in_flight", defaults.max_in_flight),
        limits=given.pop("limits", defaults.limits),
        responder=given.pop("responder", defaults.responder),
    )
    env = given.pop("env", None)
    cwd = given.pop("cwd", None)
    return LaunchSpec(
        # The spec checks what is left as given (a str, None, a number), naming the option.
        argv=tuple(argv) if isinstance(argv, Iterable) and not isinstance(argv, str | bytes)
        else argv,
        env=dict(env) if isinstance(env, Mapping) else env,
        cwd=os.fspath(cwd) if isinstance(cwd, os.PathLike) else cwd,
        connection=connection,
        **given,
    )


def _check_launchers(launcher: Launcher | None, launchers: object) -> Sequence[Launcher]:
    """``start(launchers=...)``: a non-empty list of launchers, and no ``launcher`` beside."""
    if launcher is not None:
        raise TypeError("give launcher= (every worker's) or launchers= (spread over), not both")
    if isinstance(launchers, str | bytes) or not isinstance(launchers, Sequence) or not launchers:
        raise ValueError(
            "launchers must be a non-empty list of launchers (ssh(host), prefix([...]), "
            f"local()), or None; not {launchers!r}"
        )
    for index, each in enumerate(launchers):
        if not callable(getattr(each, "invocation", None)) or isinstance(each, type):
            raise TypeError(
                f"launchers[{index}] must be a launcher: local(), ssh(host, ...), prefix([...]), "
                f"or an object with an invocation(spec) method; not {each!r}"
            )
    return launchers


def _placements(spec: LaunchSpec, launchers: Sequence[Launcher] | None) -> list[LaunchSpec]:
    """One ``LaunchSpec`` per launcher of ``launchers=`` (each checked against the spec, as
    ``LaunchSpec`` checks its ``launcher``), or ``[spec]``."""
    if launchers is None:
        return [spec]
    placements = []
    for index, each in enumerate(launchers):
        try:
            placements.append(dataclasses.replace(spec, launcher=each))
        except (TypeError, ValueError) as problem:
            raise type(problem)(f"launchers[{index}]: {problem}") from None
    return placements


def _runs_here(spec: LaunchSpec) -> bool:
    """Whether the pool knows the worker runs on this machine's cores (``local()``)."""
    return isinstance(spec.launcher, LocalLauncher)


def _local_workers(placements: Sequence[LaunchSpec], max_size: int) -> int:
    """The most workers that can run here at once: slots are spread evenly over the
    placements (the fewest first), so each holds at most ``ceil(max_size / placements)``."""
    here = sum(_runs_here(placement) for placement in placements)
    per_placement = -(-max_size // len(placements))
    return min(max_size, here * per_placement)


def _polling_placements(
    placements: Sequence[LaunchSpec], plan: SpinPlan, *, explicit: bool
) -> tuple[LaunchSpec | None, ...] | None:
    """Where the rule turned the workers' polling off, each placement as its first
    ``plan.polling_workers`` workers run it instead (their own busy polling), or None for a
    placement the plan does not reach (its workers poll as they would, uncounted); None when
    every worker runs as the plan says."""
    if explicit or plan.worker != 0 or not plan.polling_workers:
        return None
    own = dataclasses.replace(plan, worker=None)
    return tuple(
        _pool_spec(placement, own) if placement.env is not None or _runs_here(placement)
        else None
        for placement in placements
    )


def _pool_spec(spec: LaunchSpec, plan: SpinPlan, *, explicit: bool = False) -> LaunchSpec:
    """``spec`` as each worker runs it: the parent's busy polling and the workers' as the plan
    says, and a ``prepare`` that first learns how many requests the child runs at once.

    A worker elsewhere (``ssh()``, ``prefix()``) whose ``env`` is None keeps its own busy
    polling: its environment there is the remote login's, and one variable cannot be added to
    it without replacing the whole. An explicit ``worker_busy_poll`` then needs ``env``."""
    env = spec.env
    if plan.worker is not None and (env is not None or _runs_here(spec)):
        env = dict(os.environ if env is None else env)
        env.setdefault(BUSY_POLL_ENV, repr(plan.worker))
    elif explicit and plan.worker is not None:
        raise ValueError(
            f"worker_busy_poll={plan.worker!r} cannot reach workers behind {spec.launcher!r} "
            "without env=: give their whole environment there (env=) with it, or leave "
            "worker_busy_poll None"
        )
    user_prepare = spec.prepare
    startup_timeout = spec.startup_timeout
    negotiate = spec.readiness == "negotiate"

    def prepare(connection: Connection) -> Any:
        # Runs on the process actor's start thread, before any caller gets the connection.
        if negotiate:
            connection.negotiate(timeout=startup_timeout).get(timeout=startup_timeout)
        return user_prepare(connection) if user_prepare is not None else None

    return dataclasses.replace(
        spec,
        env=env,
        prepare=prepare,
        connection=dataclasses.replace(spec.connection, busy_poll=plan.parent),
    )
