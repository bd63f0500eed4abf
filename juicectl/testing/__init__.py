"""Helpers for testing code that uses a controller: fake children, in-memory pairs, fixtures.

Three levels, from the lightest to the most real:

* :class:`ScriptedChild`: a worker whose answers come from a table
  ``{command: answer}``, where a command is a ``Command`` class or just its name, and an
  answer is a dict of response fields, an exception to raise, or a function of the arguments.
  It records every request it gets.
* :func:`connect` / :class:`InMemoryChild`: a real ``Connection`` wired to a worker served by
  the real child runtime on threads of this process (over a pair of pipes): the same codec and
  the same request bookkeeping as with a child process, without the process.
  :class:`FakeController` (and :func:`scripted_controller`) is the real controller on top of
  it (a ``ProcessController`` whose process actor serves each child in memory): the same
  modes, events, hooks, restart policy, figures and errors; :meth:`FakeController.kill_child`
  kills the child as SIGKILL would, to test recovery.
* :class:`ControllerFactory`, :func:`controller_fixture` and the pytest fixture
  ``juicectl_controller`` (installed as a pytest plugin with juicectl): real controllers on
  real child processes, each started from a worker class, every actor and child torn down
  after the test.

See ``docs/testing.md`` for a worked example. Nothing here needs pytest except
:func:`controller_fixture`, which imports it when called.
"""

from __future__ import annotations

from juicectl.testing._children import CRASH, InMemoryChild, ScriptedChild, connect
from juicectl.testing._fake import FakeController, scripted_controller
from juicectl.testing._real import ControllerFactory, controller_fixture, worker_argv

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
