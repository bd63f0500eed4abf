"""Commands of the batch indexer example, shared by its parent and its worker.

In the spirit of the original batch child: the parent's ``prepare`` step tells every new child
where the index lives (``SetStore``) before any caller's command reaches it.
"""

from __future__ import annotations

from juicectl.juice import BoxList, Command, Integer, Path, String


class NoStore(Exception):
    """``Index`` or ``Search`` came before ``SetStore``."""


class NotText(Exception):
    """The file is not UTF-8 text."""


class SetStore(Command):
    """Use ``path`` (a directory, created if missing) for the index; load what it holds."""

    arguments = [("path", Path())]
    response = [("documents", Integer())]


class Index(Command):
    """Count the words of the text file ``path`` and add them to the index."""

    arguments = [("path", Path())]
    response = [("words", Integer()), ("distinct", Integer())]
    errors = {NoStore: "NO_STORE", FileNotFoundError: "NOT_FOUND", NotText: "NOT_TEXT"}


class Search(Command):
    """The indexed files that contain ``word``, most occurrences first."""

    arguments = [("word", String())]
    response = [("hits", BoxList([("path", Path()), ("count", Integer())]))]
    errors = {NoStore: "NO_STORE"}


class Crash(Command):
    """For demonstrations: fail in a way the command does not declare.

    The worker answers ``UNHANDLED`` and exits, as the reference peer does; the controller
    then starts a new child, which ``prepare`` points at the same store again.
    """
