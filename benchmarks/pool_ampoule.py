"""The ampoule baseline's child: an ``ampoule.child.AMPChild`` answering the AMP Echo."""

from __future__ import annotations

from typing import Any

from ampoule import child

from benchmarks.amp_child import Echo


class EchoChild(child.AMPChild):  # type: ignore[misc]
    """Echo, as the juicectl worker does."""

    @Echo.responder
    def echo(self, value: str) -> dict[str, Any]:
        return {"value": value}
