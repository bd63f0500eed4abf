"""The pytest plugin installed with juicectl: the ``juicectl_controller`` fixture.

It is registered through the ``pytest11`` entry point, so it is there in any test run where
juicectl is installed; nothing else is added to pytest. See :mod:`juicectl.testing`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from juicectl.testing import ControllerFactory

__all__ = ["juicectl_controller"]


@pytest.fixture
def juicectl_controller() -> Iterator[ControllerFactory]:
    """Start real controllers on worker classes; all are torn down after the test.

    ``juicectl_controller(WorkerClass, **options)`` returns a ``ProcessController`` (in mode
    ``"stopped"``) whose child runs ``python -m juicectl.child module:WorkerClass``. After the
    test every controller is closed, and the fixture checks that every process actor (and so
    every child) has ended.
    """
    factory = ControllerFactory()
    yield factory
    factory.close_all()
