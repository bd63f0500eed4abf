"""The demo's worker: a small word indexer that keeps its index in a store directory.

It ships inside the package (rather than in ``examples/``) so that ``juicectl demo`` works
from an installed wheel as well as from a checkout. Like every worker it imports only the
codec and the child runtime::

    python -m juicectl.child juicectl._cli._demo_worker:IndexWorker

``SetStore`` (sent by the parent's ``prepare`` step to every new child) points it at the store
and loads what an earlier child saved there; ``Index`` adds one document (re-indexing a name
replaces it, so a request that may or may not have been done can safely be sent again);
``Search`` lists the documents holding a word.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

from juicectl.child import JuiceChild, run
from juicectl.juice import Command, Float, Integer, ListOf, String
from juicectl.juice import Path as PathArgument

__all__ = ["Index", "IndexWorker", "NoStore", "Search", "SetStore"]

_WORD = re.compile(r"\w+")


class NoStore(Exception):
    """``Index`` or ``Search`` arrived before ``SetStore``."""


class SetStore(Command):
    """Use the directory ``path`` for the index; answer how many documents it already holds."""

    arguments = [("path", PathArgument())]
    response = [("documents", Integer())]


class Index(Command):
    """Index the document ``name`` (its ``text``); ``cost`` seconds of pretend work. The answer
    says which worker process did it (``pid``)."""

    arguments = [("name", String()), ("text", String()), ("cost", Float(optional=True))]
    response = [("words", Integer()), ("distinct", Integer()), ("pid", Integer())]
    errors = {NoStore: "NO_STORE"}


class Search(Command):
    """The names of the documents that hold ``word``, sorted."""

    arguments = [("word", String())]
    response = [("documents", ListOf(String()))]
    errors = {NoStore: "NO_STORE"}


class IndexWorker(JuiceChild):
    """Answers ``SetStore``, ``Index`` and ``Search``."""

    def __init__(self) -> None:
        self.store: Path | None = None
        self.index: dict[str, list[str]] = {}  # document name -> its distinct words

    @SetStore.responder
    def set_store(self, path: Path) -> dict[str, Any]:
        path.mkdir(parents=True, exist_ok=True)
        self.store = path
        saved = path / "index.json"
        self.index = json.loads(saved.read_text("utf-8")) if saved.exists() else {}
        return {"documents": len(self.index)}

    @Index.responder
    def index_document(self, name: str, text: str, cost: float | None = None) -> dict[str, Any]:
        store = self._store()
        if cost:
            time.sleep(cost)
        counts = Counter(word.lower() for word in _WORD.findall(text))
        self.index[name] = sorted(counts)
        # Write, then rename: a child killed mid-write never leaves a torn index behind.
        temporary = store / "index.json.tmp"
        temporary.write_text(json.dumps(self.index), "utf-8")
        os.replace(temporary, store / "index.json")
        return {"words": sum(counts.values()), "distinct": len(counts), "pid": os.getpid()}

    @Search.responder
    def search(self, word: str) -> dict[str, Any]:
        self._store()
        wanted = word.lower()
        return {"documents": sorted(name for name, words in self.index.items() if wanted in words)}

    def _store(self) -> Path:
        if self.store is None:
            raise NoStore("no store yet: send SetStore first")
        return self.store


if __name__ == "__main__":
    run(IndexWorker)
