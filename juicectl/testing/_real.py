"""Real controllers on worker classes, every actor and child torn down afterwards."""

from __future__ import annotations

import importlib.util
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pykka

from juicectl._log import get_logger
from juicectl.actors.process import ProcessActor
from juicectl.controller import ProcessController
from juicectl.policy import LaunchSpec
from juicectl.testing._checks import check_concurrency

log = get_logger(__name__)


def _import_root(module_name: str) -> str | None:
    """The directory from which ``module_name`` is imported (for the child's PYTHONPATH)."""
    module = sys.modules.get(module_name)
    filename = getattr(module, "__file__", None)
    if filename is None:
        try:
            spec = importlib.util.find_spec(module_name)
        except (ImportError, ValueError):
            return None
        filename = spec.origin if spec is not None and spec.has_location else None
    if filename is None:
        return None
    path = Path(filename).resolve()
    depth = module_name.count(".") + (1 if path.name == "__init__.py" else 0)
    return str(path.parents[depth])


def worker_argv(
    worker: type | str,
    *,
    concurrency: int | None = None,
    env: Mapping[str, str] | None = None,
) -> tuple[list[str], dict[str, str]]:
    """The command that serves ``worker`` as a child process, and the environment it needs.

    ``worker`` is a worker class defined in an importable module, or ``"pkg.module:Class"``.
    The command is ``[sys.executable, "-m", "juicectl.child", "pkg.module:Class"]`` (plus
    ``--concurrency N``); the environment is ``env`` (by default this process's), with the
    class's import root put first on ``PYTHONPATH`` so the child can import it.

    Raises:
        ValueError: the class lives in ``__main__`` or a local scope: a child cannot import it;
            or ``concurrency`` is below 1.
        TypeError: ``concurrency`` is not an int or None.
    """
    check_concurrency(concurrency)
    env = dict(os.environ if env is None else env)
    if isinstance(worker, str):
        target = worker
        root = _import_root(worker.partition(":")[0])
    else:
        module, qualname = worker.__module__, worker.__qualname__
        if module == "__main__" or "<locals>" in qualname:
            raise ValueError(
                f"{qualname} is defined in {module!r} (or in a function): a child process "
                "cannot import it; define the worker at the top of an importable module"
            )
        target = f"{module}:{qualname}"
        root = _import_root(module)
    if root is not None:
        existing = env.get("PYTHONPATH")
        env["PYTHONPATH"] = root if not existing else os.pathsep.join([root, existing])
    argv = [sys.executable, "-m", "juicectl.child", target]
    if concurrency is not None:
        argv += ["--concurrency", str(concurrency)]
    return argv, env


class ControllerFactory:
    """Starts real ``ProcessController``s on worker classes; :meth:`close_all` tears every one
    of them down: the controllers, their hook actors, every process actor and every child.

    Call it with a worker class (or ``"pkg.module:Class"``, or a whole argv list) and the
    options of ``ProcessController.start``. Defaults suited to tests (a ``"temporary"``
    restart policy, bounded timeouts) apply unless given. The ``juicectl_controller`` pytest
    fixture is one of these.
    """

    #: Options used unless the call gives them.
    defaults: Mapping[str, Any] = {
        "startup_timeout": 10.0,
        "stop_timeout": 3.0,
        "kill_timeout": 1.0,
    }

    def __init__(self) -> None:
        self.controllers: list[ProcessController] = []
        """Every controller started, oldest first."""
        self._process_actors: list[_Launched] = []
        self._lock = threading.Lock()

    def __call__(
        self,
        worker: type | str | Sequence[str],
        /,
        *,
        concurrency: int | None = None,
        **options: Any,
    ) -> ProcessController:
        """Start a controller (in mode ``"stopped"``) whose child serves ``worker``.

        Raises:
            TypeError, ValueError: a bad ``concurrency`` (or one given with an argv list, which
                says its own), or a bad option of ``ProcessController.start``; nothing starts.
        """
        if isinstance(worker, type | str):
            given = options.get("env")
            # An env of the caller's gets the import root too (a bad one is start()'s to
            # refuse, as given).
            argv, env = worker_argv(
                worker, concurrency=concurrency,
                env=given if isinstance(given, Mapping) else None,
            )
            if given is None or isinstance(given, Mapping):
                options["env"] = env
        else:
            if concurrency is not None:
                raise TypeError(
                    f"concurrency={concurrency!r} applies to a worker class or "
                    "'module:Class'; an argv list gives its own (--concurrency N)"
                )
            argv = list(worker)
        if "restart" not in options:
            from juicectl.policy import RestartPolicy

            options["restart"] = RestartPolicy(mode="temporary")
        merged = {**self.defaults, **options}
        inner = merged.pop("process_factory", None)
        merged["process_factory"] = self._recording(inner, merged.get("name"))
        controller = ProcessController.start(argv, **merged)
        with self._lock:
            self.controllers.append(controller)
        return controller

    def _recording(
        self, inner: Callable[..., pykka.ActorRef[Any]] | None, name: str | None
    ) -> Callable[[pykka.ActorRef[Any], int, LaunchSpec], pykka.ActorRef[Any]]:
        factory = inner or ProcessActor.factory(name or "juicectl-test")

        def start(
            controller: pykka.ActorRef[Any], generation: int, spec: LaunchSpec
        ) -> pykka.ActorRef[Any]:
            ref = factory(controller, generation, spec)
            if isinstance(ref, pykka.ActorRef):  # else the controller fails the start
                with self._lock:
                    self._process_actors.append(_Launched(controller, generation, spec, ref))
            return ref

        return start

    def close_all(self, timeout: float | None = None) -> None:
        """Close every controller (newest first), then make sure every process actor has
        stopped, which it does only once its child is reaped.

        Args:
            timeout: the bound on each controller's close, and on stopping a process actor
                that outlived it (default: its stop escalation's, ``stop_timeout + 2 *
                kill_timeout``, plus 5 s for the actors' messages: the short timeouts of
                :attr:`defaults` keep a stuck teardown short).

        Raises:
            RuntimeError: a process actor was still running after its controller closed
                (it is stopped, and its child with it, before this is raised); the message
                names the controllers and generations.
        """
        with self._lock:
            controllers, self.controllers = self.controllers, []
        for controller in reversed(controllers):
            try:
                controller.close(_stop_bound(controller.spec) if timeout is None else timeout)
            except Exception:
                log.exception("close_failed", controller=controller.name)
        with self._lock:
            launched, self._process_actors = self._process_actors, []
        # A process actor stops as soon as it has reported its child's end, which its
        # controller's close waited for: one short wait for all, not one per actor.
        grace = max((each.spec.kill_timeout for each in launched), default=0.0) + 1.0
        deadline = time.monotonic() + grace
        stuck = [
            each for each in launched
            if not each.ref.actor_stopped.wait(max(0.0, deadline - time.monotonic()))
        ]
        for each in stuck:
            # Stops the child (the escalation, bounded by its timeouts) and reaps it.
            try:
                each.ref.stop(
                    block=True, timeout=_stop_bound(each.spec) if timeout is None else timeout
                )
            except pykka.Timeout:
                log.warning("process_actor_stop_timed_out", generation=each.generation)
        if stuck:
            names = {controller.actor_ref.actor_urn: controller.name for controller in controllers}
            which = ", ".join(
                f"{names.get(each.controller.actor_urn, each.controller)!r} "
                f"(generation {each.generation})"
                for each in stuck
            )
            raise RuntimeError(
                f"{len(stuck)} process actor(s) outlived their controller: {which}; they and "
                "their children were stopped"
            )

    def __enter__(self) -> ControllerFactory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close_all()


@dataclass(frozen=True)
class _Launched:
    """A process actor a controller of the factory made."""

    controller: pykka.ActorRef[Any]
    """The controller that made it."""
    generation: int
    """The generation of its child."""
    spec: LaunchSpec
    """Its timeouts."""
    ref: pykka.ActorRef[Any]
    """The process actor."""


def _stop_bound(spec: LaunchSpec) -> float:
    """How long a child's stop may take: its escalation, plus the actors' messages."""
    return spec.stop_timeout + 2 * spec.kill_timeout + 5.0


def controller_fixture(
    worker: type | str | Sequence[str],
    *,
    scope: str = "function",
    name: str | None = None,
    **options: Any,
) -> Any:
    """Make a pytest fixture that yields a controller on ``worker`` and tears it down.

    Assign it to a name in a ``conftest.py`` or test module; that name is the fixture's::

        echo_controller = controller_fixture("examples.echo_worker:EchoWorker")

        def test_echo(echo_controller):
            assert echo_controller.call(Echo, value="hi", timeout=5) == {"value": "hi"}

    ``options`` go to ``ProcessController.start`` (see :class:`ControllerFactory`).
    """
    import pytest

    def fixture() -> Iterator[ProcessController]:
        factory = ControllerFactory()
        try:
            yield factory(worker, **options)
        finally:
            factory.close_all()

    return pytest.fixture(scope=scope, name=name)(fixture)  # type: ignore[call-overload]
