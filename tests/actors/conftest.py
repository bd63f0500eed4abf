"""Fixtures for the actor tests: every actor stops after each test; a ready-made harness."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pykka
import pytest
from controller_harness import Harness


@pytest.fixture(autouse=True)
def _stop_all_actors() -> Iterator[None]:
    yield
    pykka.ActorRegistry.stop_all()


@pytest.fixture
def harness() -> Harness:
    """A controller with the seed's behaviour (``RestartPolicy(mode="temporary")``)."""
    return Harness()


@pytest.fixture
def make_harness() -> Callable[..., Harness]:
    """Build a harness with another policy or clock: ``make_harness(policy=..., clock=...)``."""
    return Harness
