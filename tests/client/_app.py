"""A small app backend that answers the RFC 9470 step-up challenge, for ``client.http`` tests.

It does what a guard does, with core's pieces only: the session says who is signed in (asked of
the stepguard server, ``GET /sdk/{env}/session``), the elevated token is verified against the
server's JWKS (:func:`verify_elevated_token`: signature, issuer, audience, subject, session,
scope), a single-use token is spent once, and a refusal is the 401 challenge of
:mod:`stepguard.core.challenge`.
"""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from stepguard.core.challenge import ELEVATED_TOKEN_HEADER, PROBLEM_CONTENT_TYPE, challenge_for
from stepguard.core.clock import Clock
from stepguard.core.errors import ElevatedTokenError, ElevatedTokenUsed
from stepguard.core.tokens import TokenKeySet, verify_elevated_token

ROUTES = {
    ("POST", "/profile"): "user:update",
    ("POST", "/wallet/export"): "wallet:export",
    ("DELETE", "/account"): "user:delete",
}


def protected_app(
    issuer: str, environment_id: str, clock: Clock, transport: Any
) -> tuple[FastAPI, dict[str, int]]:
    """The app and its counters (``calls`` per path that got through)."""
    app = FastAPI()
    calls: dict[str, int] = {}
    spent: set[str] = set()
    http = httpx.AsyncClient(transport=transport, base_url=issuer)

    async def guard(request: Request, scope: str) -> dict[str, Any] | JSONResponse:
        session = await http.get(
            f"/sdk/{environment_id}/session",
            headers={"Authorization": request.headers.get("authorization", "")},
        )
        if session.status_code != 200:
            return JSONResponse({"code": "unauthorized"}, status_code=401)
        who = session.json()
        keys = TokenKeySet.from_jwks((await http.get("/.well-known/jwks.json")).json())
        try:
            verified = verify_elevated_token(
                request.headers.get(ELEVATED_TOKEN_HEADER),
                keys=keys,
                expected_issuer=issuer,
                expected_audience=environment_id,
                expected_scope=scope,
                expected_subject=who["user_id"],
                expected_session=who["session_id"],
                now=clock.now(),
            )
            if verified.single_use:
                if verified.jti in spent:
                    raise ElevatedTokenUsed()
                spent.add(verified.jti)
        except ElevatedTokenError as exc:
            challenge = challenge_for(exc, scope=scope)
            return JSONResponse(
                challenge.problem(),
                status_code=401,
                headers=challenge.headers(),
                media_type=PROBLEM_CONTENT_TYPE,
            )
        return {"user": who["user_id"], "scope": scope}

    async def handle(request: Request) -> Any:
        scope = ROUTES[(request.method, request.url.path)]
        result = await guard(request, scope)
        if isinstance(result, JSONResponse):
            return result
        calls[request.url.path] = calls.get(request.url.path, 0) + 1
        return {"ok": True, **result}

    for (method, path), _ in ROUTES.items():
        app.add_api_route(path, handle, methods=[method])

    @app.get("/public")
    async def public() -> Any:
        return {"ok": True}

    return app, calls
