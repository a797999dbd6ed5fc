"""Helpers for the guard tests: a token factory that can forge anything, and a FastAPI app
protected by the guard (served in-process through httpx's ASGI transport or by a real uvicorn).
The fixtures that use them are in ``conftest.py``."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse

from stepguard.core.challenge import parse_challenge
from stepguard.core.clock import FixedClock
from stepguard.core.keys import KeyMaterial, generate_key
from stepguard.core.tokens import TOKEN_TYPE, TokenKeySet, new_jti
from stepguard.guard import (
    Elevation,
    Guard,
    LocalKeys,
    MemoryReplayStore,
    Principal,
    ReplayStore,
    RequireStepUp,
    install_guard,
)

ISSUER = "https://stepguard.test"
AUDIENCE = "env_test"
NOW = 1_700_000_000
ALICE = "usr_alice"
BOB = "usr_bob"
ALICE_SESSION = "ses_alice"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64json(obj: Any) -> str:
    return b64(json.dumps(obj, separators=(",", ":")).encode())


@dataclass
class Forge:
    """Signs arbitrary headers and payloads with an Ed25519 key (no library checks in the way)."""

    material: KeyMaterial = field(default_factory=generate_key)

    def __post_init__(self) -> None:
        key = load_pem_private_key(self.material.private_pem, password=None)
        assert isinstance(key, ed25519.Ed25519PrivateKey)
        self.private = key
        self.keyset = TokenKeySet()
        self.keyset.add_material(self.material)

    @property
    def kid(self) -> str:
        return self.material.kid

    def claims(self, **overrides: Any) -> dict[str, Any]:
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": ALICE,
            "sid": ALICE_SESSION,
            "jti": new_jti(),
            "iat": NOW - 10,
            "exp": NOW + 290,
            "auth_time": NOW - 10,
            "scope": "user:update",
            "amr": ["otp"],
            "single_use": False,
        }
        for name, value in overrides.items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        return claims

    def header(self, **overrides: Any) -> dict[str, Any]:
        header: dict[str, Any] = {"alg": "EdDSA", "typ": TOKEN_TYPE, "kid": self.kid}
        for name, value in overrides.items():
            if value is None:
                header.pop(name, None)
            else:
                header[name] = value
        return header

    def sign(self, header: dict[str, Any], payload: dict[str, Any]) -> str:
        signing_input = f"{b64json(header)}.{b64json(payload)}"
        return f"{signing_input}.{b64(self.private.sign(signing_input.encode()))}"

    def token(self, header: dict[str, Any] | None = None, **claims: Any) -> str:
        return self.sign(header or self.header(), self.claims(**claims))


def user_from_headers(request: Request) -> Principal | None:
    """The test apps' "login": X-User (and optionally X-Session) headers."""
    user = request.headers.get("x-user")
    if not user:
        return None
    return Principal(user_id=user, session_id=request.headers.get("x-session"))


def make_guard(
    forge: Forge,
    clock: FixedClock,
    store: ReplayStore | str | None = None,
    **kw: Any,
) -> Guard:
    return Guard(
        issuer=ISSUER,
        audience=AUDIENCE,
        keys=kw.pop("keys", None) or LocalKeys(forge.keyset),
        replay_store=store if store is not None else MemoryReplayStore(),
        current_user=user_from_headers,
        clock=clock,
        **kw,
    )


@dataclass
class Calls:
    """What the protected handlers saw (to prove a refused request never ran the handler)."""

    handled: list[str] = field(default_factory=list)
    gate: asyncio.Event | None = None


def make_app(guard: Guard, calls: Calls | None = None, *, hold: float = 0.0) -> FastAPI:
    """A FastAPI app with routes for each guard behaviour. ``hold`` keeps handlers busy (so
    concurrent requests overlap while a single-use token is reserved)."""
    calls = calls or Calls()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Served by uvicorn: close the stores on the server's own loop (their connections are
        # bound to it).
        try:
            yield
        finally:
            await guard.aclose()

    app = FastAPI(lifespan=lifespan)
    install_guard(app, guard)

    async def pause() -> None:
        if hold:
            await asyncio.sleep(hold)

    @app.get("/plain")
    async def plain() -> dict[str, bool]:
        return {"ok": True}

    @app.post("/profile")
    async def profile(elevation: Elevation = Depends(RequireStepUp("user:update"))) -> Any:
        calls.handled.append("profile")
        return {"ok": True, "sub": elevation.subject}

    @app.post("/export")
    async def export(elevation: Elevation = Depends(RequireStepUp("wallet:export"))) -> Any:
        calls.handled.append("export")  # before the pause: tests see the handler is running
        await pause()
        return {"ok": True, "jti": elevation.token.jti}

    @app.post("/fresh", dependencies=[Depends(RequireStepUp("user:update", max_age=60))])
    async def fresh() -> Any:
        calls.handled.append("fresh")
        return {"ok": True}

    @app.post("/sign-batch", dependencies=[Depends(RequireStepUp("wallet:sign user:update"))])
    async def sign_batch() -> Any:
        calls.handled.append("sign-batch")
        return {"ok": True}

    @app.post("/export-fails", dependencies=[Depends(RequireStepUp("wallet:export"))])
    async def export_fails() -> Any:
        calls.handled.append("export-fails")
        raise RuntimeError("the wallet backend is down")

    @app.post("/export-refuses", dependencies=[Depends(RequireStepUp("wallet:export"))])
    async def export_refuses() -> Any:
        calls.handled.append("export-refuses")
        return JSONResponse({"error": "insufficient funds"}, status_code=409)

    return app


# DESIGN.md wire conventions, exactly: RFC 6750 §3 quoted-string parameters in this order.
_CHALLENGE = re.compile(
    r'Bearer error="insufficient_user_authentication", '
    r'error_description="(?P<description>[\x20\x21\x23-\x5B\x5D-\x7E]+)", '
    r'scope="(?P<scope>[^"\\]+)"(?:, max_age=(?P<max_age>\d+))?'
)


def check_challenge(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    code: str,
    *,
    scope: str,
    max_age: int | None = None,
) -> dict[str, Any]:
    """Assert a guard answer is exactly the 401 RFC 9470 challenge of DESIGN.md for ``code``,
    ``scope`` (and ``max_age``): ``headers`` is any case-insensitive mapping (httpx, Flask, Django)."""
    assert status == 401, body
    assert headers["content-type"] == "application/problem+json"
    assert headers["cache-control"] == "no-store"
    problem = json.loads(body)
    assert problem["code"] == code, problem
    assert problem["type"] == f"urn:stepguard:error:{code}"
    assert problem["status"] == 401
    assert problem["scope"] == scope
    challenge = headers["www-authenticate"]
    match = _CHALLENGE.fullmatch(challenge)
    assert match, challenge
    assert match["scope"] == scope
    assert match["description"] == problem["detail"][:200]
    params = parse_challenge(challenge)  # what the client SDK reads
    assert params is not None and params["scope"] == scope
    if max_age is None:
        assert match["max_age"] is None and "max_age" not in problem
    else:
        assert match["max_age"] == str(max_age)
        assert problem["max_age"] == max_age
    return dict(problem)


def as_alice(token: str | None = None, **extra: str) -> dict[str, str]:
    headers = {"X-User": ALICE, **extra}
    if token is not None:
        headers["X-Elevated-Access-Token"] = token
    return headers
