"""Helpers for server tests (fixtures live in ``conftest.py`` and use these).

Import them as ``from _server_helpers import AdminApi, row_counts, ...`` (pytest puts this folder
on ``sys.path``; the distinct name avoids clashing with other folders' helpers).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import func, select

from stepguard.core.clock import FixedClock
from stepguard.server.app import create_app
from stepguard.server.db import Base
from stepguard.server.settings import Settings

__all__ = [
    "ADMIN_KEY",
    "ISSUER",
    "START",
    "AdminApi",
    "UserSession",
    "client_for",
    "make_settings",
    "row_counts",
    "running_app",
]

ADMIN_KEY = "sgadm_test_0123456789abcdef0123456789abcdef"
ISSUER = "http://test"
START = 1_700_000_000.0


def make_settings(database_url: str, data_dir: Path, **overrides: Any) -> Settings:
    """Test settings: the given database, a fixed admin key, issuer ``http://test``."""
    values: dict[str, Any] = {
        "database_url": database_url,
        "data_dir": str(data_dir),
        "admin_key": ADMIN_KEY,
        "public_url": ISSUER,
    }
    values.update(overrides)
    return Settings(**values)


@contextlib.asynccontextmanager
async def running_app(settings: Settings, clock: FixedClock) -> AsyncIterator[FastAPI]:
    """``create_app`` with its lifespan (start-up and shutdown) around the block."""
    app = create_app(settings, clock=clock)
    async with app.router.lifespan_context(app):
        yield app


def client_for(app: FastAPI) -> httpx.AsyncClient:
    """An in-process client for ``app`` (use it as ``async with``)."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ISSUER)


@dataclass(frozen=True, slots=True)
class UserSession:
    """A user and one live session of theirs."""

    environment_id: str
    user_id: str
    session_id: str
    session_token: str
    email: str | None = None

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.session_token}"}


class AdminApi:
    """The admin API through a client; each helper asserts the expected success status."""

    def __init__(self, client: httpx.AsyncClient, headers: dict[str, str]) -> None:
        self.client = client
        self.headers = headers

    async def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        return await self.client.request(method, url, headers=self.headers, **kwargs)

    async def default_environment_id(self) -> str:
        r = await self.request("GET", "/admin/environments")
        assert r.status_code == 200, r.text
        return str(next(e["id"] for e in r.json()["environments"] if e["is_default"]))

    async def create_environment(
        self, name: str, policy: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"name": name}
        if policy is not None:
            body["policy"] = policy
        r = await self.request("POST", "/admin/environments", json=body)
        assert r.status_code == 201, r.text
        return dict(r.json())

    async def create_user(self, environment_id: str | None = None, **fields: Any) -> dict[str, Any]:
        env = environment_id or await self.default_environment_id()
        r = await self.request("POST", f"/admin/environments/{env}/users", json=fields)
        assert r.status_code == 201, r.text
        return dict(r.json())

    async def create_session(
        self, user_id: str, environment_id: str | None = None, ttl_seconds: int | None = None
    ) -> dict[str, Any]:
        env = environment_id or await self.default_environment_id()
        body: dict[str, Any] = {"user_id": user_id}
        if ttl_seconds is not None:
            body["ttl_seconds"] = ttl_seconds
        r = await self.request("POST", f"/admin/environments/{env}/sessions", json=body)
        assert r.status_code == 201, r.text
        return dict(r.json())

    async def set_policy(self, environment_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        r = await self.request(
            "PATCH", f"/admin/environments/{environment_id}/policy", json=changes
        )
        assert r.status_code == 200, r.text
        return dict(r.json())

    async def revoke_session(self, environment_id: str, session_id: str) -> None:
        r = await self.request(
            "DELETE", f"/admin/environments/{environment_id}/sessions/{session_id}"
        )
        assert r.status_code == 200, r.text

    async def audit(self, environment_id: str, **params: Any) -> list[dict[str, Any]]:
        r = await self.request("GET", f"/admin/environments/{environment_id}/audit", params=params)
        assert r.status_code == 200, r.text
        return list(r.json()["events"])

    async def user_with_session(
        self, email: str = "alice@example.com", environment_id: str | None = None, **fields: Any
    ) -> UserSession:
        """Create a user (with ``email``) and a session for them."""
        env = environment_id or await self.default_environment_id()
        user = await self.create_user(env, email=email, **fields)
        session = await self.create_session(user["id"], env)
        return UserSession(env, user["id"], session["id"], session["session_token"], email)


async def row_counts(app: FastAPI, *, exclude: frozenset[str] = frozenset()) -> dict[str, int]:
    """Rows per table of the app's database (tables in ``exclude`` left out)."""
    tables = [t for t in Base.metadata.sorted_tables if t.name not in exclude]
    # One round trip: a row of scalar sub-queries, one per table.
    stmt = select(*(select(func.count()).select_from(t).scalar_subquery() for t in tables))
    async with app.state.service.db.session() as s:
        row = (await s.execute(stmt)).one()
    return {t.name: int(n) for t, n in zip(tables, row, strict=True)}
