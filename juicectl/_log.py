"""The library's loggers: structlog when the application configured it, stdlib logging if not.

A library is a guest in someone else's program, so juicectl never configures logging and never
writes to stdout on its own. Every module logs through ``log = get_logger(__name__)``, and each
event goes one of two ways, decided when it is logged (the application may configure logging
after importing juicectl):

* **structlog is configured** (``structlog.is_configured()``, which ``structlog.configure()``
  and ``structlog.testing.capture_logs()`` both make true): the event goes to
  ``structlog.get_logger(name)``, with the bound context, so it follows the application's
  processors, filtering and renderer like any of its own events.
* **otherwise**: the event goes to the stdlib logger of the same name (``juicectl.actors.process``
  and so on, all under ``juicectl``), if that logger is enabled for the level. The message is
  the event name followed by its ``key=value`` pairs, and each pair is also an attribute of the
  ``LogRecord`` (``record.controller``, ``record.pid``; a key the record already has, such as
  ``message``, gets a trailing underscore), with ``record.event`` the event's name. With
  logging unconfigured, stdlib's last-resort handler prints warnings and errors to stderr and
  drops the rest: the application's stdout stays its own.

structlog is only looked up in ``sys.modules``: a process that never imported it cannot have
configured it, and juicectl does not import it for nothing. The events on a request's path are
rare ones (late answers, failed writes), and each event is cheap: a disabled stdlib level costs
one cached ``isEnabledFor``; with structlog, the bound logger is reused for as long as the
configuration stays the same.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

__all__ = ["Logger", "get_logger"]

_RESERVED = frozenset(
    [*logging.LogRecord("", 0, "", 0, "", (), None).__dict__, "message", "asctime", "event"]
)
"""LogRecord attributes that ``extra`` may not overwrite (``event`` is set by us)."""


def get_logger(name: str) -> Logger:
    """The logger of module ``name`` (call it with ``__name__``, at import time)."""
    return Logger(name, {})


def _structlog_if_configured() -> Any:
    structlog = sys.modules.get("structlog")
    if structlog is not None and structlog.is_configured():
        return structlog
    return None


def _text(value: Any) -> str:
    if isinstance(value, str) and value and not any(c in value for c in " \t\r\n='\""):
        return value
    return repr(value)


class Logger:
    """A logger with bound context, as structlog's: ``log.bind(pid=42).info("ready", s=0.1)``.

    Immutable: ``bind()`` returns a new logger. Each event is handed to structlog if it is
    configured, to stdlib ``logging`` otherwise (see the module's docstring).
    """

    __slots__ = ("_context", "_name", "_stdlib", "_structlog")

    def __init__(self, name: str, context: dict[str, Any]) -> None:
        self._name = name
        self._context = context
        self._stdlib = logging.getLogger(name)
        self._structlog: tuple[tuple[int, ...], Any] | None = None
        """(structlog's configuration, as identities; the bound logger made under it)."""

    def bind(self, **values: Any) -> Logger:
        """A logger with ``values`` added to the context of every event it logs."""
        return Logger(self._name, {**self._context, **values})

    def debug(self, event: str, **values: Any) -> None:
        """Log ``event`` at debug level."""
        self._log(logging.DEBUG, "debug", event, values)

    def info(self, event: str, **values: Any) -> None:
        """Log ``event`` at info level."""
        self._log(logging.INFO, "info", event, values)

    def warning(self, event: str, **values: Any) -> None:
        """Log ``event`` at warning level."""
        self._log(logging.WARNING, "warning", event, values)

    def error(self, event: str, **values: Any) -> None:
        """Log ``event`` at error level."""
        self._log(logging.ERROR, "error", event, values)

    def exception(self, event: str, **values: Any) -> None:
        """Log ``event`` at error level with the exception being handled."""
        self._log(logging.ERROR, "exception", event, values)

    def _log(self, level: int, method: str, event: str, values: dict[str, Any]) -> None:
        structlog = _structlog_if_configured()
        if structlog is not None:
            getattr(self._structlog_logger(structlog), method)(event, **values)
            return
        stdlib = self._stdlib
        if not stdlib.isEnabledFor(level):
            return
        pairs = {**self._context, **values}
        message = " ".join([event, *(f"{key}={_text(value)}" for key, value in pairs.items())])
        extra = {f"{key}_" if key in _RESERVED else key: value for key, value in pairs.items()}
        extra["event"] = event
        # stacklevel 3: the record names the module and line that logged, not this file.
        stdlib.log(level, message, exc_info=method == "exception", extra=extra, stacklevel=3)

    def _structlog_logger(self, structlog: Any) -> Any:
        # Making a bound logger calls the logger factory: reuse it while the configuration
        # stays (capture_logs() edits the processor list in place, which a reused one sees).
        # Two threads may both make one; either is right.
        key = tuple(id(value) for value in structlog.get_config().values())
        cached = self._structlog
        if cached is not None and cached[0] == key:
            return cached[1]
        bound = structlog.get_logger(self._name).bind(**self._context)
        self._structlog = (key, bound)
        return bound

    def __repr__(self) -> str:
        return f"<juicectl Logger {self._name} {self._context!r}>"
