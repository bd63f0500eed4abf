"""A command may override ``parse_arguments`` / ``parse_response`` and read every field of
the box: it must get the fields alone, never the ``-`` headers (``-Command``, ``-Ask``,
``-Answer``), also on the paths that skip copying them out for commands that do not."""

from __future__ import annotations

from typing import Any

from juicectl.child import JuiceChild
from juicectl.juice import Box, Command, String
from juicectl.testing import connect


class EveryField(Command):
    """Both parsers take whatever fields the box has."""

    arguments = [("a", String()), ("b", String())]
    response = [("a", String()), ("b", String())]

    @classmethod
    def parse_arguments(cls, box: Box) -> dict[str, Any]:
        return dict(box)

    @classmethod
    def parse_response(cls, box: Box) -> dict[str, Any]:
        return dict(box)


class EveryFieldWorker(JuiceChild):
    @EveryField.responder
    def every_field(self, a: str, b: str) -> dict[str, Any]:
        return {"a": a, "b": b}


def test_overridden_parsers_get_the_fields_alone() -> None:
    with connect(EveryFieldWorker) as child:
        answer = child.connection.call(EveryField, a="1", b="2").get(timeout=10)
    assert answer == {"a": "1", "b": "2"}
