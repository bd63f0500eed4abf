"""The message and event classes (see the package docstring)."""

from __future__ import annotations

import signal as _signal
from dataclasses import dataclass, field
from typing import Any

# --- orders from callers to the controller actor -------------------------------------------


@dataclass(frozen=True)
class GetProcess:
    """Ask for the connection to a ready child, launching one if none runs."""

    reply_to: Any
    """A future set with the ``Connection`` once the child is ready, or failed with
    ``ProcessUnavailable`` (or ``ProcessLaunchError``)."""


@dataclass(frozen=True)
class StopProcess:
    """Stop the child (if any). The reply resolves only once the child has exited."""

    reply_to: Any
    """A future set with a ``StopResult`` once no child runs."""


@dataclass(frozen=True)
class Subscribe:
    """Add a subscriber: an ``ActorRef`` told every event (``ProcessStarted``, ...)."""

    subscriber: Any
    """The ``pykka.ActorRef`` to tell."""


# --- orders from the controller to a process actor -----------------------------------------


@dataclass(frozen=True)
class StopChild:
    """Stop the child: ``Shutdown``, then close stdin, then SIGTERM, then SIGKILL the group."""

    generation: int
    """The generation of the child to stop."""


# --- notifications from a process actor to the controller ----------------------------------


@dataclass(frozen=True)
class TerminationReason:
    """Why a child ended (or never started). Built by the process actor.

    ``how`` is the one-word answer, in one vocabulary:

    * the child ended **on its own**: ``"exited"`` (with an exit status), or ``"signaled"``
      (a signal juicectl did not send ended it: ``kill -9`` from outside, the OOM killer);
    * **a stop that was asked for** (``StopChild``: ``stop_process()``, ``close()``) ended
      it, at this step of the escalation: ``"clean"`` (status 0 after ``Shutdown``),
      ``"stdin_closed"`` (it ended once its stdin was closed: it ignored ``Shutdown``, or was
      never asked because it never got ready), ``"terminated"`` (SIGTERM was needed),
      ``"killed"`` (SIGKILL was needed, or the process actor itself was stopped), or
      ``"exited"`` (it ended otherwise after ``Shutdown``, e.g. with a non-zero status);
      ``"signaled"`` again if a signal juicectl did not send ended it meanwhile;
    * juicectl **stopped it unasked**, for this reason: ``"startup_timeout"``,
      ``"startup_failed"`` (the readiness probe or ``prepare`` failed),
      ``"protocol_error"`` (it broke the protocol, e.g. wrote stray output to its stdout),
      ``"stdout_closed"`` (it closed its stdout and kept running), ``"input_closed"`` (it
      stopped reading its stdin and kept running);
    * it never ran: ``"launch_failed"``.

    ``stop_step`` says how far juicectl's escalation went, whatever the reason.
    """

    pid: int | None = None
    """The child's pid, or None if it was never launched."""
    exit_status: int | None = None
    """The exit status if the child exited normally."""
    signal: int | None = None
    """The signal that ended the child, if one did."""
    requested: bool = False
    """True if the stop was asked for (``StopChild``)."""
    how: str = "exited"
    """Why it ended, in the vocabulary above."""
    detail: str = ""
    """A sentence for humans: the OS error of a failed launch, the protocol error, ..."""
    launch_error: OSError | None = None
    """The ``OSError`` of a failed launch."""
    stderr_tail: tuple[str, ...] = ()
    """The last lines the child wrote to stderr (bounded)."""
    stop_step: str | None = None
    """The last step of juicectl's stop escalation taken before the child ended:
    ``"shutdown"``, ``"close_stdin"``, ``"sigterm"`` or ``"sigkill"``; None if juicectl did
    not stop it."""

    @property
    def abnormal(self) -> bool:
        """True unless the child exited with status 0 (or a requested stop ended cleanly)."""
        return not (self.exit_status == 0 and self.how in ("clean", "exited"))

    def describe(self) -> str:
        """One line: what ended and how (the words the log and the exceptions use)."""
        if self.how == "launch_failed":
            return self.detail or "launch failed"
        who = f"child {self.pid}" if self.pid is not None else "child"
        if self.signal is not None:
            try:
                name = _signal.Signals(self.signal).name
            except ValueError:
                name = str(self.signal)
            text = f"{who} killed by {name}"
            if self.how == "signaled":
                text += ", a signal juicectl did not send"
        elif self.exit_status is not None:
            text = f"{who} exited with status {self.exit_status}"
        else:
            text = f"{who} ended"
        if self.detail:
            text += f" ({self.detail})"
        return text


@dataclass(frozen=True)
class ChildProcessCreated:
    """The child is launched and ready (readiness probe answered, ``prepare`` done)."""

    generation: int
    """Which child."""
    pid: int
    """Its process id."""
    connection: Any
    """The ``Connection`` to hand to callers."""


@dataclass(frozen=True)
class ChildProcessTerminated:
    """The child has exited and been reaped, or could not be launched, or never got ready."""

    generation: int
    """Which child."""
    reason: TerminationReason
    """Why."""


# --- events told to subscribers ------------------------------------------------------------


@dataclass(frozen=True)
class ProcessStarted:
    """A newly spawned child is ready (the seed's ``onProcessStartup``)."""

    controller: str
    """The controller's name."""
    generation: int
    """Which child."""
    pid: int
    """Its process id."""


@dataclass(frozen=True)
class ProcessTerminated:
    """A child's connection was lost (the seed's ``onProcessTermination``)."""

    controller: str
    """The controller's name."""
    generation: int
    """Which child."""
    reason: TerminationReason
    """Why it ended: pid, exit status or signal, requested or not, stderr tail."""

    @property
    def requested(self) -> bool:
        """Whether the stop was asked for."""
        return self.reason.requested


@dataclass(frozen=True)
class GaveUp:
    """The restart policy's intensity limit was passed: no more automatic restarts."""

    controller: str
    """The controller's name."""
    restarts: int
    """Restarts counted within the window."""
    window: float
    """The policy's window, in seconds."""
    last: TerminationReason
    """The termination that passed the limit."""


@dataclass(frozen=True)
class ModeChanged:
    """The controller moved from one mode to another (told to subscribers, logged too)."""

    controller: str
    """The controller's name."""
    old: str
    """The previous mode's name."""
    new: str
    """The new mode's name."""
    cause: str
    """The message or event that caused it."""
    generation: int
    """The current child's generation."""


@dataclass(frozen=True)
class StopResult:
    """How a stop ended: the value of a ``stop_process()`` future."""

    how: str
    """``"not_running"`` (no child ran), or the stopped child's ``TerminationReason.how``:
    ``"clean"``, ``"stdin_closed"``, ``"terminated"``, ``"killed"`` (which step of the
    escalation ended the child), ``"exited"`` (it ended otherwise, e.g. it was already ending
    on its own), ``"signaled"`` (a signal juicectl did not send ended it first), or the
    reason juicectl was stopping it for before the stop reached it (``"startup_timeout"``
    for a stop asked while the child started and never got ready, for one). Whatever the
    value, the child has exited and been reaped."""
    reason: TerminationReason | None = None
    """The child's termination, if a child was stopped."""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)
    """Room for figures (durations of each step)."""


# --- the controller actor's private messages (from its handle, its timer, its process actors) ---


@dataclass(frozen=True)
class _RestartDue:
    """The restart timer fired (told by the timer's thread, handled on the actor's)."""

    token: int
    """Which scheduled restart; a cancelled or superseded one carries an old token."""


@dataclass(frozen=True)
class _Close:
    """Stop the child (if any), then stop the controller actor for good. Sent by the handle's
    ``close()``, and by a process actor stopped from outside (``ActorRegistry.stop_all()``)."""

    reply_to: Any
    """A future set with the ``StopResult`` once the child has exited and the actor is
    stopping (``StopResult("not_running")`` if no child ran)."""


@dataclass(frozen=True)
class _HurryStop:
    """The stop under way skips its polite steps: SIGTERM to the child now, then SIGKILL after
    ``kill_timeout``. Sent by a handle whose ``close()`` was interrupted (Ctrl-C), to its
    controller actor, which passes it to its process actor; nothing else changes (a child not
    being stopped, or already past close_stdin, is left as it is)."""


@dataclass(frozen=True)
class _GetMode:
    """Ask for the current mode."""

    reply_to: Any
    """A future set with the ``Mode``."""


@dataclass(frozen=True)
class _GetStats:
    """Ask for the controller's figures (see ``ControllerActor.stats``)."""

    reply_to: Any
    """A future set with a ``dict``."""
