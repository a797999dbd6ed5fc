"""Server fixtures: the real app on SQLite and PostgreSQL, driven in-process through httpx.

* ``clock``: a :class:`FixedClock` the app reads (advance it to expire things).
* ``server_settings``: :class:`Settings` for a fresh database (``database_url`` is parametrized
  over sqlite and postgresql, so every test using the app runs on both). Override the
  ``settings_overrides`` fixture in a module (or parametrize it) to change fields.
* ``server_app``: ``create_app(server_settings, clock=clock)`` with its lifespan running
  (migrations applied, default environment and first signing key created).
* ``server_client``: an ``httpx.AsyncClient`` for ``server_app`` (base URL ``http://test``).
* ``admin_headers``: the admin API key header.
* ``admin``: :class:`AdminApi`, helpers over the admin API (``create_user``, ``create_session``,
  ``user_with_session``, ``set_policy``, ``audit``, ...).
* ``user_session``: a user (alice@example.com) in the default environment with a live session.
* ``make_server``: ``async with make_server(**settings_fields) as app``: another app on the same
  database, e.g. ``make_server(token_algorithm="ES256")`` or ``make_server(admin_key=None)``.

Plain helpers (``row_counts``, ``client_for``, ``running_app``, ``ADMIN_KEY``) are in
``_server_helpers.py``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from _server_helpers import (
    ADMIN_KEY,
    START,
    AdminApi,
    UserSession,
    client_for,
    make_settings,
    running_app,
)
from fastapi import FastAPI

from stepguard.core.clock import FixedClock
from stepguard.server.settings import Settings


@pytest.fixture
def clock() -> FixedClock:
    """The app's clock; it only moves when a test calls ``advance``/``set``."""
    return FixedClock(START)


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Extra :class:`Settings` fields for ``server_settings`` (override in a module to change)."""
    return {}


@pytest.fixture
def server_settings(
    database_url: str, tmp_path: Path, settings_overrides: dict[str, Any]
) -> Settings:
    return make_settings(database_url, tmp_path / "data", **settings_overrides)


@pytest.fixture
async def server_app(server_settings: Settings, clock: FixedClock) -> AsyncIterator[FastAPI]:
    async with running_app(server_settings, clock) as app:
        yield app


@pytest.fixture
async def server_client(server_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(server_app) as client:
        yield client


@pytest.fixture
def admin_headers() -> dict[str, str]:
    return {"X-StepGuard-Admin-Key": ADMIN_KEY}


@pytest.fixture
def admin(server_client: httpx.AsyncClient, admin_headers: dict[str, str]) -> AdminApi:
    return AdminApi(server_client, admin_headers)


@pytest.fixture
async def user_session(admin: AdminApi) -> UserSession:
    return await admin.user_with_session()


@pytest.fixture
def make_server(
    database_url: str, tmp_path: Path, clock: FixedClock
) -> Callable[..., contextlib.AbstractAsyncContextManager[FastAPI]]:
    """A factory of further apps on this test's database, with other settings."""

    def factory(**overrides: Any) -> contextlib.AbstractAsyncContextManager[FastAPI]:
        return running_app(make_settings(database_url, tmp_path / "data", **overrides), clock)

    return factory
