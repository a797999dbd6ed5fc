"""pytest fixtures for apps that use stepguard (registered as the ``stepguard`` pytest plugin).

Importing this module imports nothing of stepguard beyond it: the server and the SDK load when a
fixture is first used, so the plugin costs nothing in test runs that do not use it.

* ``stepguard_clock``: the :class:`~stepguard.core.clock.FixedClock` of the server and clients.
* ``stepguard_server``: a running :class:`~stepguard.testing.StepGuardTestServer`.
* ``stepguard_user``: a :class:`~stepguard.testing.TestUser` with a verified email and a session.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from stepguard.core.clock import FixedClock
    from stepguard.testing import StepGuardTestServer, TestUser

__all__ = ["stepguard_clock", "stepguard_server", "stepguard_user"]


@pytest.fixture
def stepguard_clock() -> FixedClock:
    """The clock of the test server and its clients; ``advance()`` it to expire things."""
    from stepguard.core.clock import FixedClock

    return FixedClock()


@pytest.fixture
def stepguard_server(tmp_path: Path, stepguard_clock: FixedClock) -> Iterator[StepGuardTestServer]:
    """A stepguard server on 127.0.0.1 (SQLite under ``tmp_path``) for the test."""
    from stepguard.testing import StepGuardTestServer

    with StepGuardTestServer(tmp_path / "stepguard", clock=stepguard_clock) as server:
        yield server


@pytest.fixture
def stepguard_user(stepguard_server: StepGuardTestServer) -> TestUser:
    """A user with a verified email and a live session."""
    return stepguard_server.create_user()
