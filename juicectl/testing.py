"""Helpers for testing code that uses a controller: fake children, in-memory pairs, fixtures.

Three levels, from the lightest to the most real:

* :class:`ScriptedChild`: a worker whose answers come from a table
  ``{command: answer}``, where a command is a ``Command`` class or just its name, and an
  answer is a dict of response fields, an exception to raise, or a function of the arguments.
  It records every request it gets.
* :func:`connect` / :class:`InMemoryChild`: a real ``Connection`` wired to a worker served by
  the real child runtime on threads of this process (over a pair of pipes): the same codec and
  the same request bookkeeping as with a child process, without the process.
  :class:`FakeController` (and :func:`scripted_controller`) quacks like ``ProcessController``
  (``get_process``, ``stop_process``, ``call``, ``mode``, ``stats``, ``close``) on top of it,
  and :meth:`FakeController.kill_child` makes the child "crash" to test recovery.
* :class:`ControllerFactory`, :func:`controller_fixture` and the pytest fixture
  ``juicectl_controller`` (installed as a pytest plugin with juicectl): real controllers on
  real child processes, each started from a worker class, every actor and child torn down
  after the test.

See ``docs/testing.md`` for a worked example. Nothing here needs pytest except
:func:`controller_fixture`, which imports it when called.
"""

from __future__ import annotations

import contextlib
import errno
import importlib.util
import os
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pykka
import structlog

from juicectl._future import ReplyFuture
from juicectl.actors.process import ProcessActor
from juicectl.actors.subscribers import publish
from juicectl.child import serve
from juicectl.connection import Connection
from juicectl.controller import ProcessController
from juicectl.exceptions import ControllerClosed, ProcessUnavailable, ProtocolError
from juicectl.juice import (
    Command,
    Limits,
    RemoteJuiceError,
    Shutdown,
    UnhandledRemoteJuiceError,
    command_key,
    raw_command,
)
from juicectl.messages import (
    ModeChanged,
    ProcessStarted,
    ProcessTerminated,
    StopResult,
    TerminationReason,
)
from juicectl.policy import LaunchSpec

__all__ = [
    "CRASH",
    "ControllerFactory",
    "FakeController",
    "InMemoryChild",
    "ScriptedChild",
    "connect",
    "controller_fixture",
    "scripted_controller",
    "worker_argv",
]

log = structlog.get_logger(__name__)


# --- a scripted fake child ----------------------------------------------------------------


class _Crash:
    """The type of :data:`CRASH`."""

    def __repr__(self) -> str:
        return "CRASH"


CRASH: Any = _Crash()
"""A scripted answer: the in-memory child "dies" while handling the request. The request,
and every other one in flight, fails with ``ProcessUnavailable``, as when a child process is
killed; a ``FakeController`` then sees its child gone and starts a new one on the next
``get_process()``."""


class _CodedError(Exception):
    """A script's ``RemoteJuiceError``, carried to the runtime: its text is the description."""

    def __init__(self, code: str, description: str) -> None:
        super().__init__(description)
        self.code = code


class _ScriptedErrors:
    """Mixed into scripted commands: a ``RemoteJuiceError`` raised by a script is answered
    with its own code and description, as if the worker had declared it."""

    @classmethod
    def error_code(cls, error: BaseException) -> tuple[str, bool] | None:
        if isinstance(error, _CodedError):
            return error.code, False
        parent: Any = super()
        result: tuple[str, bool] | None = parent.error_code(error)
        return result


def _scripted_command(command: type[Command] | str) -> type[Command]:
    base: type[Command] = raw_command(command) if isinstance(command, str) else command
    if not (isinstance(base, type) and issubclass(base, Command)):
        raise TypeError(f"a script is keyed by Command classes or names, not {command!r}")
    scripted = type(
        base.__name__,
        (_ScriptedErrors, base),
        {"command_name": base.command_name, "__module__": __name__},
    )
    assert issubclass(scripted, Command)
    return scripted


class ScriptedChild:
    """A worker that answers from a script: ``{command: answer}``.

    Keys are ``Command`` classes (arguments arrive typed, the answer is written with the
    command's ``response`` types) or command names (arguments arrive as text, and the answer's
    values are written with ``str()``). An answer is one of:

    * a mapping of response fields (``None`` for an empty answer);
    * an exception (instance or class) to raise: one the command declares is answered with
      its code and the child keeps serving; a ``RemoteJuiceError(code, description)`` is
      answered with that code; anything else is answered ``UNHANDLED`` and ends the
      conversation, exactly as a real worker would;
    * a callable, called with the request's arguments as keyword arguments, that returns the
      answer (or raises);
    * :data:`CRASH`: the in-memory child dies while handling the request;
    * a list of answers: the first call gets the first, and so on; the last one repeats.

    Every request is recorded in :attr:`calls` as ``(command_name, arguments)``, in order.
    Answers can be replaced at any time with :meth:`answer`; commands not in the script are
    unknown to the child (answered ``UNHANDLED``, like a real worker).

    Example::

        child = ScriptedChild({Echo: lambda value: {"value": value.upper()},
                               "Ping": {"pong": "yes"},
                               Index: FileNotFoundError("no such file"),
                               Search: [CRASH, {"hits": []}]})
    """

    concurrency = 1

    def __init__(self, script: Mapping[type[Command] | str, Any] | None = None) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        """Every request received, as ``(command_name, arguments)``."""
        self._lock = threading.Lock()
        self._answers: dict[str, Any] = {}
        self._served: dict[str, int] = {}
        self._commands: dict[str, type[Command]] = {}
        self._crash: Callable[[], None] | None = None
        for command, answer in (script or {}).items():
            self._add(command, answer)

    def _add(self, command: type[Command] | str, answer: Any) -> None:
        scripted = _scripted_command(command)
        key = command_key(scripted.command_name)
        if key in self._commands:
            raise ValueError(f"the script names {scripted.command_name!r} twice")
        self._commands[key] = scripted
        self._answers[key] = answer

        def handler(**arguments: Any) -> Any:
            return self._respond(key, scripted, arguments)

        # The child runtime finds responders among the instance's attributes too.
        setattr(self, f"_scripted_{len(self._commands)}", scripted.responder(handler))

    def answer(self, command: type[Command] | str, answer: Any) -> None:
        """Replace the answer to ``command`` (which the script must already name)."""
        name = command if isinstance(command, str) else command.command_name
        key = command_key(name)
        with self._lock:
            if key not in self._answers:
                raise KeyError(
                    f"{name!r} is not in the script: script every command when creating the "
                    "ScriptedChild"
                )
            self._answers[key] = answer
            self._served[key] = 0

    def calls_to(self, command: type[Command] | str) -> list[dict[str, Any]]:
        """The arguments of every request for ``command``, in order."""
        name = command if isinstance(command, str) else command.command_name
        key = command_key(name)
        with self._lock:
            return [arguments for called, arguments in self.calls if command_key(called) == key]

    def _respond(self, key: str, command: type[Command], arguments: dict[str, Any]) -> Any:
        with self._lock:
            self.calls.append((command.command_name, dict(arguments)))
            answer = self._answers[key]
            if isinstance(answer, list):
                served = self._served.get(key, 0)
                self._served[key] = served + 1
                answer = answer[min(served, len(answer) - 1)] if answer else None
            crash = self._crash
        if answer is CRASH:
            if crash is None:
                raise RuntimeError("CRASH needs the ScriptedChild to be served in memory")
            crash()
            return {}  # nobody reads it: the connection is already gone
        try:
            return self._answer_with(answer, command, arguments)
        except UnhandledRemoteJuiceError:
            raise  # answered UNHANDLED, and the conversation ends, as the runtime does
        except RemoteJuiceError as error:
            raise _CodedError(error.code, error.description) from error

    def _answer_with(self, answer: Any, command: type[Command], arguments: dict[str, Any]) -> Any:
        if isinstance(answer, BaseException):
            raise answer
        if isinstance(answer, type) and issubclass(answer, BaseException):
            raise answer()
        if callable(answer):
            answer = answer(**arguments)
        if answer is None:
            return {}
        if not isinstance(answer, Mapping):
            raise TypeError(f"the script's answer to {command.command_name} is not a mapping")
        if _is_text_command(command):
            return {name: _text(value) for name, value in answer.items()}
        return answer

    def _bind_crash(self, crash: Callable[[], None]) -> None:
        # The in-memory child serving this worker now: what CRASH kills.
        with self._lock:
            self._crash = crash

    def __repr__(self) -> str:
        names = ", ".join(command.command_name for command in self._commands.values())
        return f"<ScriptedChild {names}>"


def _is_text_command(command: type[Command]) -> bool:
    from juicectl.juice import RawCommand

    return issubclass(command, RawCommand)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float | Path):
        return str(value)
    raise TypeError(
        f"{value!r} cannot be sent as text: key the script by the Command class to send "
        "typed values"
    )


# --- a worker served in memory --------------------------------------------------------------


class InMemoryChild:
    """A worker served by the child runtime on threads of this process, and its connection.

    Use :func:`connect` to make one. The parent side is a real :class:`Connection`; the child
    side is the real runtime (:func:`juicectl.child.serve`); bytes travel through two pipes,
    so requests, answers, errors, ``Shutdown`` and the end of the conversation behave as with
    a child process. What a process would add (signals, exit codes, stderr) does not exist.

    Attributes:
        connection: the parent's side.
        worker: the worker object being served.
        generation: the number given at creation (a ``FakeController`` counts its children).
    """

    def __init__(
        self,
        worker: object,
        *,
        name: str = "in-memory",
        generation: int = 1,
        responder: object | None = None,
        request_timeout: float | None = None,
        max_in_flight: int = 1024,
        limits: Limits | None = None,
        concurrency: int | None = None,
    ) -> None:
        self.worker = worker
        self.name = name
        self.generation = generation
        self.protocol_error: ProtocolError | None = None
        """A protocol error the child runtime raised (the parent sent bytes that are not
        Juice), if any."""
        self._log = log.bind(controller=name, generation=generation)
        to_child_read, to_child_write = os.pipe()
        self._from_child, from_child_write = os.pipe()
        self._to_child: int | None = to_child_write
        self._write_lock = threading.Lock()
        self._lost: ProcessUnavailable | None = None
        self.connection = Connection(
            self._write,
            pid=0,
            generation=generation,
            name=name,
            responder=responder,
            request_timeout=request_timeout,
            max_in_flight=max_in_flight,
            limits=limits,
            on_fatal=self._fatal,
            busy_poll=0,  # both sides share one GIL: a spin on one side only slows the other
        )
        if isinstance(worker, ScriptedChild):
            worker._bind_crash(lambda: self.kill("crashed (scripted)"))
        self._serving = threading.Thread(
            target=self._serve,
            args=(to_child_read, from_child_write, concurrency, limits),
            name=f"juicectl-{name}-{generation}-child",
            daemon=True,
        )
        self._reading = threading.Thread(
            target=self._read, name=f"juicectl-{name}-{generation}-reader", daemon=True
        )
        self._serving.start()
        self._reading.start()

    # -- the child's side (the runtime, on its own thread) -------------------------------

    def _serve(
        self, read_fd: int, write_fd: int, concurrency: int | None, limits: Limits | None
    ) -> None:
        try:
            serve(
                self.worker,
                read_fd,
                write_fd,
                concurrency=concurrency,
                limits=limits,
                busy_poll=0,
            )
        except ProtocolError as error:
            self.protocol_error = error
        except Exception:
            self._log.exception("in_memory_child_failed")
            with contextlib.suppress(OSError):
                os.close(write_fd)  # serve() did not get to close it: end the conversation
        finally:
            os.close(read_fd)

    # -- the parent's side ------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        with self._write_lock:
            fd = self._to_child
            if fd is None:
                raise BrokenPipeError(errno.EPIPE, "the in-memory child's input is closed")
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]

    def _read(self) -> None:
        fd = self._from_child
        self.connection.serve_reads(fd, lambda error, _sample: self._fatal(error))
        os.close(fd)
        self.connection.connection_lost(
            self._lost or ProcessUnavailable(f"in-memory child {self.name} ended")
        )

    def _fatal(self, error: BaseException) -> None:
        # What the process actor does with a child that broke the protocol: end it.
        self._lost = ProcessUnavailable(f"in-memory child {self.name}: {error}")
        self.connection.connection_lost(self._lost)
        self._close_input()

    def _close_input(self) -> None:
        with self._write_lock:
            fd, self._to_child = self._to_child, None
        if fd is not None:
            os.close(fd)

    # -- ending -------------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        """Whether the conversation goes on (the runtime still serves the worker)."""
        return self._reading.is_alive() and not self.connection.closed

    def stop(self, timeout: float = 5.0) -> str:
        """End the conversation as a controller does: ``Shutdown``, then close the input.

        Returns ``"clean"`` if the child answered ``Shutdown``, ``"exited"`` if the
        conversation had already ended, ``"killed"`` if the child did not end in time (its
        thread is left behind, as a daemon).
        """
        how = "exited"
        if not self.connection.closed:
            try:
                self.connection.call(Shutdown, timeout=timeout).get(timeout=timeout + 1)
                how = "clean"
            except Exception as error:
                self._log.debug("in_memory_shutdown_failed", error=repr(error))
        self._close_input()
        self._reading.join(timeout)
        self._serving.join(timeout)
        if self._reading.is_alive() or self._serving.is_alive():
            self.kill("did not end after Shutdown")
            return "killed"
        return how

    def kill(self, reason: str = "killed") -> None:
        """End the conversation at once, as if the child had died: every request in flight
        fails with ``ProcessUnavailable``, and the child's input is closed."""
        self._lost = ProcessUnavailable(f"in-memory child {self.name} {reason}")
        self.connection.connection_lost(self._lost)
        self._close_input()

    def __enter__(self) -> InMemoryChild:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "alive" if self.alive else "ended"
        return f"<InMemoryChild {self.name} generation={self.generation} {state}>"


def connect(
    worker: object,
    *,
    name: str = "in-memory",
    responder: object | None = None,
    request_timeout: float | None = None,
    max_in_flight: int = 1024,
    limits: Limits | None = None,
    concurrency: int | None = None,
) -> InMemoryChild:
    """Serve ``worker`` in memory and return the pair; ``.connection`` is the parent's side.

    ``worker`` is a worker class (instantiated here), a worker instance, or a
    :class:`ScriptedChild`. Stop it with ``.stop()`` or use it as a context manager::

        with connect(EchoWorker) as child:
            assert child.connection.call(Echo, value="hi").get(timeout=5) == {"value": "hi"}
    """
    instance = worker() if isinstance(worker, type) else worker
    return InMemoryChild(
        instance,
        name=name,
        responder=responder,
        request_timeout=request_timeout,
        max_in_flight=max_in_flight,
        limits=limits,
        concurrency=concurrency,
    )


# --- a controller without processes ------------------------------------------------------

Hook = Callable[[], Any] | pykka.ActorRef[Any] | None


class FakeController:
    """A stand-in for ``ProcessController`` whose children are :class:`InMemoryChild` pairs.

    It answers the same calls (``get_process``, ``stop_process``, ``call``, ``mode``,
    ``stats``, ``subscribe``, ``close``, ``with``), with the same futures, so code written
    against a controller can be tested without processes. It is simpler on purpose: the child
    starts at once on the caller's thread (``mode`` is only ever ``"stopped"`` or
    ``"ready"``), and a child that ends is not restarted until the next ``get_process()``
    (the ``"temporary"`` restart mode).

    Args:
        worker: a worker class (a fresh instance per child, as a new process would have) or
            an instance (shared by every child: a :class:`ScriptedChild` keeps its record).
        name: the controller's name.
        prepare: ``prepare(connection)``, run before a new child is handed out, as with
            ``ProcessController``; it may return a future to wait for.
        on_process_startup: a no-argument callable (called on the thread that started the
            child) or an ``ActorRef`` (told ``ProcessStarted``).
        on_process_termination: likewise, for a child that ended without a stop being
            asked for (told ``ProcessTerminated``).
        responder: as for ``ProcessController``: answers the child's requests.
        request_timeout: the default timeout of each request (None: none).
        max_in_flight: the most requests outstanding at once on a connection.
        limits: parser limits for what the child sends.
        concurrency: how many handlers the in-memory runtime runs at once.
        startup_timeout: how long ``prepare``'s future and ``call()`` wait for the child.
    """

    def __init__(
        self,
        worker: object,
        *,
        name: str = "fake",
        prepare: Callable[[Connection], Any] | None = None,
        on_process_startup: Hook = None,
        on_process_termination: Hook = None,
        responder: object | None = None,
        request_timeout: float | None = None,
        max_in_flight: int = 1024,
        limits: Limits | None = None,
        concurrency: int | None = None,
        startup_timeout: float = 10.0,
    ) -> None:
        self.name = name
        self._worker = worker
        self._prepare = prepare
        self._on_startup = on_process_startup
        self._on_termination = on_process_termination
        self._options: dict[str, Any] = {
            "responder": responder,
            "request_timeout": request_timeout,
            "max_in_flight": max_in_flight,
            "limits": limits,
            "concurrency": concurrency,
        }
        self._startup_timeout = startup_timeout
        self._lock = threading.RLock()
        self._child: InMemoryChild | None = None
        self._stop_requested = False
        self._closed = False
        self._subscribers: list[pykka.ActorRef[Any]] = []
        self.children: list[InMemoryChild] = []
        """Every in-memory child started, oldest first."""

    # --- the ProcessController surface ------------------------------------------------------

    def get_process(self) -> ReplyFuture[Connection]:
        """A future of the connection to a ready child (started now if none runs)."""
        future: ReplyFuture[Connection] = ReplyFuture()
        with self._lock:
            if self._closed:
                future.try_set_exception(ControllerClosed(f"controller {self.name} is closed"))
                return future
            child = self._current()
            if child is None:
                try:
                    child = self._launch()
                except BaseException as error:
                    future.try_set_exception(
                        error if isinstance(error, ProcessUnavailable)
                        else ProcessUnavailable(f"starting the in-memory child failed: {error!r}")
                    )
                    return future
            future.try_set(child.connection)
        return future

    def stop_process(self) -> ReplyFuture[StopResult]:
        """Stop the child; the future holds a ``StopResult`` once it has ended."""
        future: ReplyFuture[StopResult] = ReplyFuture()
        with self._lock:
            future.try_set(self._stop())
        return future

    def call(self, command: Any, *, timeout: float | None = None, **arguments: Any) -> Any:
        """Get the process and send one request; block for the response dict."""
        connection = self.get_process().get(timeout=timeout or self._startup_timeout)
        return connection.call(command, timeout=timeout, **arguments).get()

    @property
    def mode(self) -> str:
        """``"ready"`` while a child serves, else ``"stopped"``."""
        with self._lock:
            return "ready" if self._current() is not None else "stopped"

    @property
    def worker(self) -> object:
        """The worker object of the current (or last) child, or the shared instance."""
        with self._lock:
            if self.children:
                return self.children[-1].worker
            return self._worker

    def stats(self) -> dict[str, Any]:
        """Figures like ``ProcessController.stats()``: mode, generation, starts, and the
        current connection's request counters under ``requests``."""
        with self._lock:
            child = self._current()
            return {
                "name": self.name,
                "mode": "ready" if child is not None else "stopped",
                "pid": None,
                "generation": len(self.children),
                "starts": len(self.children),
                "restarts": 0,
                "requests": child.connection.stats() if child is not None else None,
            }

    def subscribe(self, subscriber: pykka.ActorRef[Any]) -> None:
        """Tell ``subscriber`` every event from now on (``ModeChanged``, ``ProcessStarted``,
        ``ProcessTerminated``)."""
        with self._lock:
            self._subscribers.append(subscriber)

    def kill_child(self, reason: str = "killed") -> None:
        """Make the current child "crash": requests in flight fail with
        ``ProcessUnavailable``, the mode becomes ``"stopped"``, the termination hook runs, and
        the next ``get_process()`` starts a new child."""
        with self._lock:
            child = self._current()
            if child is None:
                return
            child.kill(reason)
            self._ended(child, TerminationReason(how="killed", detail=reason))

    def close(self, timeout: float | None = None) -> StopResult | None:
        """Stop the child (if any) and refuse any further ``get_process()``. Idempotent."""
        with self._lock:
            if self._closed:
                return None
            result = self._stop()
            self._closed = True
            return result

    def __enter__(self) -> FakeController:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<FakeController {self.name} worker={self._worker!r}>"

    # --- inside -----------------------------------------------------------------------

    def _current(self) -> InMemoryChild | None:
        child = self._child
        if child is not None and child.connection.closed:
            # It ended on its own (Shutdown, an UNHANDLED answer, a protocol error).
            self._ended(child, TerminationReason(how="exited", detail="the conversation ended"))
            child = None
        return child

    def _launch(self) -> InMemoryChild:
        worker = self._worker() if isinstance(self._worker, type) else self._worker
        generation = len(self.children) + 1
        self._publish(ModeChanged(self.name, "stopped", "starting", "GetProcess", generation))
        child = InMemoryChild(worker, name=self.name, generation=generation, **self._options)
        self.children.append(child)
        if self._prepare is not None:
            try:
                outcome = self._prepare(child.connection)
                getter = getattr(outcome, "get", None)
                if callable(getter):
                    getter(timeout=self._startup_timeout)
            except BaseException:
                child.stop()
                self._publish(
                    ModeChanged(self.name, "starting", "stopped", "ChildProcessTerminated",
                                generation)
                )
                raise
        self._child = child
        self._stop_requested = False
        self._publish(ModeChanged(self.name, "starting", "ready", "ChildProcessCreated",
                                  generation))
        self._publish(ProcessStarted(self.name, generation, 0))
        self._hook(self._on_startup, ProcessStarted(self.name, generation, 0))
        return child

    def _stop(self) -> StopResult:
        child = self._current()
        if child is None:
            return StopResult("not_running")
        self._stop_requested = True
        self._publish(ModeChanged(self.name, "ready", "stopping", "StopProcess",
                                  child.generation))
        how = child.stop()
        reason = TerminationReason(how=how, requested=True, exit_status=0)
        self._ended(child, reason)
        return StopResult(how, reason)

    def _ended(self, child: InMemoryChild, reason: TerminationReason) -> None:
        if self._child is not child:
            return
        self._child = None
        old = "stopping" if reason.requested else "ready"
        self._publish(ModeChanged(self.name, old, "stopped", "ChildProcessTerminated",
                                  child.generation))
        if not reason.requested:
            event = ProcessTerminated(self.name, child.generation, reason)
            self._publish(event)
            self._hook(self._on_termination, event)

    def _publish(self, event: object) -> None:
        publish(self._subscribers, event)

    def _hook(self, hook: Hook, event: object) -> None:
        if hook is None:
            return
        if isinstance(hook, pykka.ActorRef):
            with contextlib.suppress(pykka.ActorDeadError):
                hook.tell(event)
            return
        try:
            hook()
        except Exception:
            log.exception("hook_failed", controller=self.name, event_type=type(event).__name__)


def scripted_controller(
    script: Mapping[type[Command] | str, Any], **options: Any
) -> FakeController:
    """A :class:`FakeController` whose children answer from ``script`` (see
    :class:`ScriptedChild`); ``ctl.worker.calls`` records what they received."""
    return FakeController(ScriptedChild(script), **options)


# --- real controllers on worker classes, torn down afterwards ----------------------------


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
    worker: type | str, *, concurrency: int | None = None
) -> tuple[list[str], dict[str, str]]:
    """The command that serves ``worker`` as a child process, and the environment it needs.

    ``worker`` is a worker class defined in an importable module, or ``"pkg.module:Class"``.
    The command is ``[sys.executable, "-m", "juicectl.child", "pkg.module:Class"]`` (plus
    ``--concurrency N``); the environment is this process's, with the class's import root put
    first on ``PYTHONPATH`` so the child can import it.

    Raises:
        ValueError: the class lives in ``__main__`` or a local scope: a child cannot import it.
    """
    env = dict(os.environ)
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
        self._process_actors: list[pykka.ActorRef[Any]] = []
        self._lock = threading.Lock()

    def __call__(
        self,
        worker: type | str | Sequence[str],
        /,
        *,
        concurrency: int | None = None,
        **options: Any,
    ) -> ProcessController:
        """Start a controller (in mode ``"stopped"``) whose child serves ``worker``."""
        if isinstance(worker, type | str):
            argv, env = worker_argv(worker, concurrency=concurrency)
            options.setdefault("env", env)
        else:
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
            with self._lock:
                self._process_actors.append(ref)
            return ref

        return start

    def close_all(self, timeout: float = 30.0) -> None:
        """Close every controller (newest first), then make sure every process actor has
        stopped, which it does only once its child is reaped.

        Raises:
            RuntimeError: a process actor was still running after its controller closed
                (it is stopped, and its child killed, before this is raised).
        """
        with self._lock:
            controllers, self.controllers = self.controllers, []
        for controller in reversed(controllers):
            try:
                controller.close(timeout=timeout)
            except Exception:
                log.exception("close_failed", controller=controller.name)
        with self._lock:
            actors, self._process_actors = self._process_actors, []
        stuck = [ref for ref in actors if not ref.actor_stopped.wait(timeout)]
        for ref in stuck:
            ref.stop(block=True, timeout=10)  # kills and reaps the child
        if stuck:
            raise RuntimeError(
                f"{len(stuck)} process actor(s) outlived their controller; their children were "
                "killed"
            )

    def __enter__(self) -> ControllerFactory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close_all()


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
