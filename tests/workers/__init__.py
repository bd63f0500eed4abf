"""The workers and commands that tests in several folders share, in one place.

* ``commands``: the commands the echo workers answer (``Echo``, ``Sleep``, ``Pid``, ...).
* ``echo``: ``EchoWorker`` and its kin, served with
  ``python -m juicectl.child tests.workers.echo:EchoWorker``.
* ``runtime``: the child runtime's test worker (``TestWorker``: blocking, calling the parent,
  fatal errors, several requests at once), as ``tests.workers.runtime:TestWorker``.
* ``scripts``: small misbehaving children as command lines (``python(source)``).

A worker used by one folder only stays in that folder.
"""
