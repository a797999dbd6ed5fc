"""Helpers shared by the end-to-end tests: a server app with its lifespan, admin calls, a user
with a session, and reading codes from the dev outbox."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from stepguard.core.clock import Clock
from stepguard.server.app import create_app
from stepguard.server.settings import Settings

ADMIN_KEY = "sgadm_e2e_0123456789abcdef0123456789abcdef"


def e2e_settings(tmp_path: Path, *, public_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": f"sqlite+aiosqlite:///{tmp_path / 'sg.db'}",
        "data_dir": str(tmp_path / "data"),
        "admin_key": ADMIN_KEY,
        "public_url": public_url,
        "dev_mode": True,
    }
    values.update(overrides)
    return Settings(**values)


@contextlib.asynccontextmanager
async def running(settings: Settings, clock: Clock | None = None) -> AsyncIterator[FastAPI]:
    app = create_app(settings, clock=clock)
    async with app.router.lifespan_context(app):
        yield app


@dataclass(frozen=True, slots=True)
class Account:
    environment_id: str
    user_id: str
    session_token: str
    email: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.session_token}"}

    def sdk(self, path: str) -> str:
        return f"/sdk/{self.environment_id}/{path}"


async def create_account(
    client: httpx.AsyncClient, email: str = "alice@example.com", *, session: bool = True
) -> Account:
    """A user with a verified email (admin API) and, unless ``session`` is off, a session."""
    admin = {"X-StepGuard-Admin-Key": ADMIN_KEY}
    envs = (await client.get("/admin/environments", headers=admin)).json()["environments"]
    env = next(e["id"] for e in envs if e["is_default"])
    r = await client.post(f"/admin/environments/{env}/users", json={"email": email}, headers=admin)
    assert r.status_code == 201, r.text
    user = r.json()["id"]
    token = ""
    if session:
        r = await client.post(
            f"/admin/environments/{env}/sessions", json={"user_id": user}, headers=admin
        )
        assert r.status_code == 201, r.text
        token = r.json()["session_token"]
    return Account(env, user, token, email)


async def outbox_code(client: httpx.AsyncClient, account: Account) -> str:
    """The newest code the dev outbox holds for the account's email."""
    r = await client.get(account.sdk("dev/outbox"))
    assert r.status_code == 200, r.text
    mine = [m for m in r.json()["messages"] if m["to"] == account.email and m["code"]]
    assert mine, r.json()
    return str(mine[-1]["code"])
