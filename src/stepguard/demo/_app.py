"""The demo wallet: sign in with a stepguard session, then three protected actions.

* ``POST /api/wallet/export`` needs ``wallet:export`` (single-use by default policy),
* ``POST /api/wallet/sign`` needs ``wallet:sign`` (single-use by default policy),
* ``POST /api/profile`` needs ``user:update`` (time-bound: reusable until it expires).

In dev mode only (``stepguard serve --demo``, what ``make run`` starts), ``POST /api/sign-up``
gives a new email address an account, so a newcomer signs in with any address and no admin
command. Outside dev mode it answers 404: the server's own sign-in never reveals whether an
address has an account, and the demo must not open that door either.

Each user's demo wallet key is derived from the server secret and the user id (HKDF), so it is
stable across restarts and never stored; profiles live in memory. Sign-in is the session token in
``Authorization: Bearer …`` (what the SDK's ``client.http`` sends).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from stepguard.core.errors import Conflict, InvalidSession, NotFound
from stepguard.guard import (
    Elevation,
    Guard,
    LocalKeys,
    Principal,
    RequireStepUp,
    StepGuardSession,
    install_guard,
    sql_replay_store,
)
from stepguard.server.http import JsonResponse, install_error_handlers
from stepguard.server.service import StepGuardService, normalize_email

from ._page import PAGE

__all__ = ["build_demo_app", "mount_demo"]

_SESSIONS = "demo_sessions"


class SignMessage(BaseModel):
    message: str = Field(min_length=1, max_length=2000)


class SignUp(BaseModel):
    email: str = Field(min_length=3, max_length=320)


class ProfileUpdate(BaseModel):
    display_name: str = Field(min_length=1, max_length=80)


async def current_user(request: Request) -> Principal:
    """The signed-in user of this request (the demo's login is the stepguard session)."""
    sessions: StepGuardSession = request.app.state.demo_sessions
    return await sessions(request)


SignedIn = Annotated[Principal, Depends(current_user)]


def _wallet_key(service: StepGuardService, user_id: str) -> bytes:
    # A stable per-user secp256k1 key: HKDF of the server secret, labelled for this purpose only.
    return service.box.derive(b"stepguard/demo-wallet/" + user_id.encode())


def _account(service: StepGuardService, user_id: str) -> Any:
    from eth_account import Account

    return Account.from_key(_wallet_key(service, user_id))


def build_demo_app(service: StepGuardService) -> FastAPI:
    """The demo app for ``service``; its guard is attached by :func:`mount_demo` at start-up."""
    app = FastAPI(
        title="stepguard demo wallet",
        default_response_class=JsonResponse,
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    install_error_handlers(app)
    install_guard(app)
    profiles: dict[str, dict[str, Any]] = {}

    async def lookup(token: str) -> Principal | None:
        env = await service.default_environment()
        try:
            live = await service.authenticate(env.id, token)
        except InvalidSession:
            return None
        return Principal(user_id=live.user_id, session_id=live.id)

    # Local lookups are cheap: keep the revocation delay short.
    app.state.demo_sessions = StepGuardSession(lookup=lookup, cache_ttl=2.0, clock=service.clock)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(PAGE, headers={"Cache-Control": "no-store"})

    @app.get("/api/config")
    async def config() -> Any:
        env = await service.default_environment()
        return {
            "issuer": service.settings.issuer,
            "environment_id": env.id,
            "token_header": "X-Elevated-Access-Token",
            "sign_up": service.settings.dev_mode,
            "actions": {
                "export": {"path": "/demo/api/wallet/export", "scope": "wallet:export"},
                "sign": {"path": "/demo/api/wallet/sign", "scope": "wallet:sign"},
                "profile": {"path": "/demo/api/profile", "scope": "user:update"},
            },
        }

    @app.post("/api/sign-up")
    async def sign_up(body: SignUp) -> Any:
        """Dev mode only: an account for a new address (an existing one is left as it is).

        The answer says whether the address was new; that is fine on a developer's machine and
        is why this endpoint does not exist anywhere else."""
        if not service.settings.dev_mode:
            raise NotFound("sign-up is only available in dev mode")
        env = await service.default_environment()
        address = normalize_email(body.email)
        try:
            await service.create_user(env.id, email=address)
        except Conflict:
            return {"email": address, "created": False}
        return {"email": address, "created": True}

    @app.get("/api/me")
    async def me(user: SignedIn) -> Any:
        return {
            "user_id": user.user_id,
            "session_id": user.session_id,
            "profile": profiles.get(user.user_id, {}),
        }

    @app.get("/api/wallet")
    async def wallet(user: SignedIn) -> Any:
        return {"chain": "ethereum", "address": _account(service, user.user_id).address}

    @app.post("/api/wallet/export")
    async def export_key(
        elevation: Annotated[Elevation, Depends(RequireStepUp("wallet:export"))],
    ) -> Any:
        account = _account(service, elevation.subject)
        return {
            "address": account.address,
            "private_key": "0x" + account.key.hex().removeprefix("0x"),
        }

    @app.post("/api/wallet/sign")
    async def sign(
        body: SignMessage,
        elevation: Annotated[Elevation, Depends(RequireStepUp("wallet:sign"))],
    ) -> Any:
        from eth_account.messages import encode_defunct

        account = _account(service, elevation.subject)
        signed = account.sign_message(encode_defunct(text=body.message))
        return {
            "address": account.address,
            "message": body.message,
            "signature": "0x" + signed.signature.hex().removeprefix("0x"),
        }

    @app.post("/api/profile")
    async def update_profile(
        body: ProfileUpdate,
        elevation: Annotated[Elevation, Depends(RequireStepUp("user:update"))],
    ) -> Any:
        profile = profiles.setdefault(elevation.subject, {})
        profile["display_name"] = body.display_name
        return {"user_id": elevation.subject, "profile": profile}

    return app


def mount_demo(app: FastAPI, *, path: str = "/demo") -> None:
    """Mount the demo wallet app on the server ``app`` (from ``create_app``) at ``path``.

    The guard is built when the server has started (the audience is the default environment's
    id): keys from the server's keyring, the replay table in the server's database, ``sub``
    matched against the request's stepguard session. It is closed when the server stops.
    """
    service: StepGuardService = app.state.service
    demo = build_demo_app(service)
    app.mount(path, demo)
    parent = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(outer: FastAPI) -> AsyncIterator[Any]:
        async with parent(outer) as state:
            env = await service.default_environment()
            guard = Guard(
                issuer=service.settings.issuer,
                audience=env.id,
                keys=LocalKeys(service.keyring.keyset),
                replay_store=sql_replay_store(service.settings.resolved_database_url()),
                current_user=current_user,
                clock=service.clock,
            )
            demo.state.stepguard_guard = guard
            try:
                yield state
            finally:
                await guard.aclose()

    app.router.lifespan_context = lifespan
