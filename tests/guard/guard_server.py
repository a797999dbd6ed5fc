"""A real stepguard server in-process for guard tests: tokens minted by the server's own keyring
and policy (``service.mint``), JWKS and session endpoints reached over HTTP (httpx ASGI transport)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from fastapi import FastAPI

from stepguard.core.assurance import MethodName
from stepguard.core.clock import FixedClock
from stepguard.core.methods.base import verified
from stepguard.server.app import create_app
from stepguard.server.service import LiveSession, StepGuardService
from stepguard.server.settings import Settings

PUBLIC_URL = "http://stepguard.test"
START = 1_800_000_000.0


@dataclass
class ServerKit:
    app: FastAPI
    service: StepGuardService
    clock: FixedClock
    environment_id: str
    http: httpx.AsyncClient

    @property
    def jwks_url(self) -> str:
        return f"{PUBLIC_URL}/.well-known/jwks.json"

    async def sign_in(self, email: str = "alice@example.com") -> tuple[str, LiveSession]:
        """A new user with a session: (session token, live session)."""
        user = await self.service.create_user(self.environment_id, email=email)
        token, _ = await self.service.create_session(self.environment_id, user.id)
        return token, await self.service.authenticate(self.environment_id, token)

    async def mint(self, session: LiveSession, scopes: Iterable[str]) -> str:
        factor = verified(MethodName.TOTP, now=self.clock.now())
        return (await self.service.mint(session, factor, list(scopes))).token


def settings_for(tmp_path: Path, database_url: str | None = None) -> Settings:
    return Settings(
        database_url=database_url or f"sqlite+aiosqlite:///{tmp_path / 'stepguard.db'}",
        data_dir=str(tmp_path / "data"),
        secret_key="5e" * 32,
        admin_key="test-admin-key-" + "x" * 32,
        public_url=PUBLIC_URL,
    )


@asynccontextmanager
async def running_server(
    tmp_path: Path, *, database_url: str | None = None, demo: bool = False
) -> AsyncIterator[ServerKit]:
    clock = FixedClock(START)
    app = create_app(settings_for(tmp_path, database_url), clock=clock)
    if demo:
        from stepguard.demo import mount_demo

        mount_demo(app)
    async with app.router.lifespan_context(app):
        service: StepGuardService = app.state.service
        env = await service.default_environment()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=PUBLIC_URL) as http:
            yield ServerKit(app, service, clock, env.id, http)
