"""The SDK against the real server, both ways.

``sg`` is parametrized: ``async`` runs ``create_app`` with its lifespan in the test's loop and an
:class:`AsyncClient` over ``httpx.ASGITransport``; ``sync`` serves the app with uvicorn in a thread
(through the test kit's :class:`StepGuardTestServer`) and uses the sync :class:`Client` over real
HTTP. Test bodies are written once: ``await sg.r(client.x())`` awaits an async call and passes a
sync result through. Codes are read from the server's captured messages; TOTP codes are computed
from the enrolment secret like an authenticator app would.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pyotp
import pytest
from fastapi import FastAPI

from stepguard.client import AsyncClient, Client
from stepguard.core.clock import FixedClock
from stepguard.demo import mount_demo
from stepguard.server.app import create_app
from stepguard.server.settings import Settings
from stepguard.testing import SoftwareAuthenticator, StepGuardTestServer
from stepguard.testing._server import ADMIN_KEY

ISSUER = "http://stepguard.test"
START = 1_700_000_000.0


@dataclass(eq=False)
class User:
    id: str
    session_token: str
    email: str | None
    totp_secret: str | None = None
    recovery_codes: list[str] = field(default_factory=list)
    last_step: int = -1


class CountingTransport(httpx.AsyncBaseTransport, httpx.BaseTransport):
    """Wraps a transport and counts the requests that reach it."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return await self.inner.handle_async_request(request)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.inner.handle_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()

    def close(self) -> None:
        self.inner.close()


class Harness:
    """One stepguard server and clients for it, async (in process) or sync (uvicorn)."""

    def __init__(self, mode: str, clock: FixedClock, tmp: Path) -> None:
        self.mode = mode
        self.clock = clock
        self.tmp = tmp
        self.app: FastAPI | None = None
        self.kit: StepGuardTestServer | None = None
        self.url = ISSUER
        self.environment_id = ""
        self._admin: Any = None
        self._stack = contextlib.AsyncExitStack()
        self.clients: list[Any] = []

    async def start(self) -> Harness:
        if self.mode == "async":
            settings = Settings(
                database_url=f"sqlite+aiosqlite:///{self.tmp / 'sg.db'}",
                data_dir=str(self.tmp / "data"),
                admin_key=ADMIN_KEY,
                public_url=ISSUER,
            )
            self.app = create_app(settings, clock=self.clock)
            mount_demo(self.app)
            await self._stack.enter_async_context(self.app.router.lifespan_context(self.app))
            self._admin = httpx.AsyncClient(
                transport=httpx.ASGITransport(app=self.app),
                base_url=ISSUER,
                headers={"X-StepGuard-Admin-Key": ADMIN_KEY},
            )
            r = await self._admin.get("/admin/environments")
            self.environment_id = next(e["id"] for e in r.json()["environments"] if e["is_default"])
        else:
            self.kit = StepGuardTestServer(self.tmp / "kit", clock=self.clock, demo=True).start()
            self.app = self.kit.app
            self.url = self.kit.url
            self.environment_id = self.kit.environment_id
        return self

    async def stop(self) -> None:
        for c in self.clients:
            await self.r(c.aclose() if isinstance(c, AsyncClient) else c.close())
        if self._admin is not None:
            await self._admin.aclose()
        await self._stack.aclose()
        if self.kit is not None:
            self.kit.stop()

    @staticmethod
    async def r(value: Any) -> Any:
        """Await an async client's call; pass a sync client's result through."""
        return await value if inspect.isawaitable(value) else value

    @property
    def is_async(self) -> bool:
        return self.mode == "async"

    @property
    def rp_id(self) -> str:
        return httpx.URL(self.url).host

    def authenticator(self) -> SoftwareAuthenticator:
        return SoftwareAuthenticator(self.rp_id, self.url)

    # -- admin ----------------------------------------------------------------------------------
    async def admin(self, method: str, path: str, json: Any = None) -> dict[str, Any]:
        if self.kit is not None:
            return self.kit._admin_call(method, path, json)
        r = await self._admin.request(method, path, json=json)
        assert r.is_success, r.text
        return dict(r.json())

    async def user(self, email: str | None = "alice@example.com", phone: str | None = None) -> User:
        body = {k: v for k, v in (("email", email), ("phone", phone)) if v}
        u = await self.admin("POST", f"/admin/environments/{self.environment_id}/users", body)
        s = await self.admin(
            "POST", f"/admin/environments/{self.environment_id}/sessions", {"user_id": u["id"]}
        )
        return User(u["id"], s["session_token"], email)

    async def set_policy(self, changes: dict[str, Any]) -> None:
        await self.admin("PATCH", f"/admin/environments/{self.environment_id}/policy", changes)

    # -- clients --------------------------------------------------------------------------------
    def transport(self) -> Any:
        if self.is_async:
            return httpx.ASGITransport(app=self.app)
        return httpx.HTTPTransport()

    def client(self, user: User | None = None, **options: Any) -> Any:
        options.setdefault("clock", self.clock)
        options.setdefault("transport", self.transport())
        if user is not None:
            options.setdefault("session_token", user.session_token)
        cls = AsyncClient if self.is_async else Client
        client = cls(self.url, self.environment_id, **options)
        self.clients.append(client)
        return client

    # -- codes ----------------------------------------------------------------------------------
    def last_code(self, to: str) -> str:
        from stepguard.server.delivery import delivery_for
        from stepguard.testing._server import _CODE

        assert self.app is not None
        for message in reversed(delivery_for(self.app.state.service).outbox.messages()):
            if message.to == to:
                found = _CODE.search(message.body)
                if found:
                    return found.group(0)
        raise LookupError(f"no code sent to {to}")

    def code_answer(self, to: str = "alice@example.com") -> Any:
        """A prompt answer reading the code sent to ``to``, waiting for background delivery
        (the sign-in route sends after answering): a coroutine in async mode."""
        if not self.is_async:
            return lambda request: self.kit.last_code(to)  # type: ignore[union-attr]

        async def answer(request: Any) -> str:
            for _ in range(200):
                try:
                    return self.last_code(to)
                except LookupError:
                    await asyncio.sleep(0.01)
            return self.last_code(to)

        return answer

    def totp_code(self, user: User) -> str:
        """The current code; a used 30 s step moves the clock on (the server refuses reuse)."""
        assert user.totp_secret is not None
        step = int(self.clock.now() // 30)
        if step <= user.last_step:
            self.clock.advance(30 * (user.last_step - step + 1))
        user.last_step = int(self.clock.now() // 30)
        return pyotp.TOTP(user.totp_secret).at(self.clock.now())

    # -- common set-ups through the SDK ----------------------------------------------------------
    async def link_token(self, client: Any, user: User) -> str:
        """A ``credential:link`` token by email code (the user's email is verified)."""
        await self.r(client.step_up_auth.send_otp())
        return await self.r(
            client.step_up_auth.verify_otp(
                self.last_code(user.email or ""), requested_scopes=["credential:link"]
            )
        )

    async def enrol_totp(self, client: Any, user: User) -> str:
        await self.link_token(client, user)
        device = await self.r(client.mfa.add_totp_device())
        user.totp_secret = device.secret
        await self.r(client.mfa.verify_totp_device(device.id, self.totp_code(user)))
        return device.id


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(START)


@pytest.fixture(params=["async", "sync"])
async def sg(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FixedClock
) -> AsyncIterator[Harness]:
    harness = await Harness(request.param, clock, tmp_path).start()
    try:
        yield harness
    finally:
        await harness.stop()


@pytest.fixture
def kit_server(tmp_path: Path, clock: FixedClock) -> Iterator[StepGuardTestServer]:
    with StepGuardTestServer(tmp_path / "kit", clock=clock) as server:
        yield server


@contextlib.asynccontextmanager
async def protected_api(sg: Harness) -> AsyncIterator[tuple[str, Any, dict[str, int]]]:
    """The app backend of ``_app.py``: (its base URL, the transport to reach it, its counters)."""
    from _services import run_uvicorn_in_thread

    from ._app import protected_app

    issuer = sg.url
    if sg.is_async:
        app, calls = protected_app(issuer, sg.environment_id, sg.clock, sg.transport())
        yield "http://api.test", httpx.ASGITransport(app=app), calls
        return
    app, calls = protected_app(issuer, sg.environment_id, sg.clock, None)
    with run_uvicorn_in_thread(app) as running:
        yield running.url, httpx.HTTPTransport(), calls
