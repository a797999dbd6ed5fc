"""Root fixtures: real services started for the test session (see ``tests/_services.py``).

* ``postgres_server`` (session): a throwaway PostgreSQL; ``.url(db)``, ``.create_database()``.
* ``database_url``: parametrized ``sqlite`` / ``postgresql`` (marked ``postgres``), a fresh DB.
* ``redis_server`` (session): URL of a throwaway redis-server; ``redis_url`` flushes it per test.
* ``smtp_sink``: an aiosmtpd sink: ``.url``, ``.messages``, ``.wait_for()``, ``.last_code(to=)``.

A missing binary skips the tests that need it, with the reason. ``.ci/run`` installs them all, and
under ``CI=true`` (or ``STEPGUARD_REQUIRE_SERVICES=1``) a missing one fails instead of skipping.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

sys.path.insert(0, os.path.dirname(__file__))  # make `import _services` work from every folder

from _services import (  # noqa: E402
    PostgresServer,
    RedisServer,
    ServiceUnavailable,
    SmtpSink,
)


def _unavailable(exc: ServiceUnavailable) -> NoReturn:
    # CI installs every service (.ci/run), so there a missing one is a failure, not a silent skip.
    if os.environ.get("CI") == "true" or os.environ.get("STEPGUARD_REQUIRE_SERVICES") == "1":
        pytest.fail(str(exc))
    pytest.skip(str(exc))


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server for the whole session, stopped and deleted at the end."""
    try:
        server = PostgresServer()
    except ServiceUnavailable as exc:
        _unavailable(exc)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
    ]
)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database as an SQLAlchemy async URL: SQLite in ``tmp_path`` or a fresh PG one."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'sg.db'}"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.create_database()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[str]:
    """URL (``redis://127.0.0.1:PORT/0``) of a redis-server that lives for the session."""
    try:
        server = RedisServer()
    except ServiceUnavailable as exc:
        _unavailable(exc)
    try:
        server.start()
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: str) -> str:
    """The session's Redis, emptied (FLUSHALL) first so tests don't see each other's keys."""
    import redis

    client = redis.Redis.from_url(redis_server)
    try:
        client.flushall()
    finally:
        client.close()
    return redis_server


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    """A fresh SMTP sink per test on a free port."""
    sink = SmtpSink().start()
    try:
        yield sink
    finally:
        sink.stop()
