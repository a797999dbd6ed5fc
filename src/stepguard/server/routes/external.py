"""Bring your own auth: the app's backend vouches for its user with a signed assertion JWT.

The assertion is checked by :class:`~stepguard.core.methods.external.ExternalAssertionMethod`
against the environment's keys: an inline JWKS, or a JWKS URL fetched with httpx and cached by
``kid`` (an unknown ``kid`` triggers a refetch, at most once per :attr:`JwksCache.min_refresh`
seconds, so a stream of made-up key ids cannot turn us into a request amplifier).

``sub`` must name the session's user: their ``external_id`` (the app's own id for them) or their
stepguard id. ``aud``, when present, must be the environment id. ``jti`` is accepted once: it is
kept in ``used_nonces`` until the assertion's ``exp``.
"""

from __future__ import annotations

import asyncio
import binascii
import hashlib
from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi import APIRouter, Request
from pydantic import Field, StrictStr
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from stepguard.core.assurance import MethodName
from stepguard.core.errors import CodeUsed, ElevatedTokenInvalid, InvalidExternalAuth
from stepguard.core.methods.external import ExternalAssertionMethod
from stepguard.core.tokens import MAX_TOKEN_BYTES, _b64json, unverified_claims
from stepguard.server.db import Credential, Environment, UsedNonce
from stepguard.server.deps import CurrentSession, Service
from stepguard.server.routes._ceremony import attempt
from stepguard.server.routes._codes import finish, precheck_elevation
from stepguard.server.schemas import Body
from stepguard.server.stepup import ip_of

__all__ = ["JwksCache", "router"]

router = APIRouter(prefix="/sdk/{environment_id}", tags=["external-auth"])
METHOD = ExternalAssertionMethod()


class ExternalBody(Body):
    jwt: StrictStr = Field(min_length=1, max_length=MAX_TOKEN_BYTES)


@dataclass(slots=True)
class _Fetched:
    fetched_at: float
    by_kid: dict[str, list[dict[str, Any]]]


@dataclass(slots=True)
class JwksCache:
    """App-backend keys fetched from JWKS URLs, cached by ``kid``."""

    #: How long a fetched key set is trusted before it is fetched again.
    ttl: float = 300.0
    #: An unknown ``kid`` refetches the set at most this often.
    min_refresh: float = 30.0
    timeout: float = 5.0
    max_bytes: int = 256 * 1024
    transport: httpx.AsyncBaseTransport | None = None
    _sets: dict[str, _Fetched] = field(default_factory=dict)
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    #: Fetches made (for operators and tests).
    fetches: int = 0

    async def keys_for(self, url: str, kid: str, *, now: float) -> dict[str, Any]:
        """A JWKS holding the keys published under ``kid`` at ``url`` (possibly none)."""
        cached = self._sets.get(url)
        if cached is not None and now - cached.fetched_at < self.ttl:
            if kid in cached.by_kid or now - cached.fetched_at < self.min_refresh:
                return {"keys": cached.by_kid.get(kid, [])}
        lock = self._locks.setdefault(url, asyncio.Lock())
        async with lock:
            cached = self._sets.get(url)
            if cached is None or now - cached.fetched_at >= self.min_refresh:
                cached = await self._fetch(url, now)
            return {"keys": cached.by_kid.get(kid, [])}

    async def _fetch(self, url: str, now: float) -> _Fetched:
        self.fetches += 1
        try:
            async with httpx.AsyncClient(
                timeout=self.timeout, follow_redirects=False, transport=self.transport
            ) as client:
                response = await client.get(url, headers={"Accept": "application/json"})
            if response.status_code != 200 or len(response.content) > self.max_bytes:
                raise ValueError(f"status {response.status_code}")
            data = response.json()
        except (httpx.HTTPError, ValueError):
            raise InvalidExternalAuth("the environment's JWKS URL could not be fetched") from None
        keys = data.get("keys") if isinstance(data, dict) else None
        if not isinstance(keys, list):
            raise InvalidExternalAuth("the environment's JWKS URL serves no key set")
        by_kid: dict[str, list[dict[str, Any]]] = {}
        for key in keys:
            if isinstance(key, dict) and isinstance(key.get("kid"), str):
                by_kid.setdefault(key["kid"], []).append(key)
        fetched = _Fetched(fetched_at=now, by_kid=by_kid)
        self._sets[url] = fetched
        return fetched


def jwks_cache(request: Request) -> JwksCache:
    """The app's one :class:`JwksCache` (created on first use)."""
    cache: JwksCache | None = getattr(request.app.state, "external_jwks_cache", None)
    if cache is None:
        cache = JwksCache()
        request.app.state.external_jwks_cache = cache
    return cache


def _peek(token: str) -> tuple[dict[str, Any], str | None]:
    """Unverified claims and ``kid``, only to choose what to verify against (the key set, the
    expected subject); nothing read here is trusted before the signature checks out."""
    try:
        claims = unverified_claims(token)
        header = _b64json(token.split(".")[0])
    except (ElevatedTokenInvalid, ValueError, binascii.Error, UnicodeDecodeError):
        return {}, None
    kid = header.get("kid") if isinstance(header, dict) else None
    return claims, kid if isinstance(kid, str) else None


def _jti_key(environment_id: str, jti: str) -> str:
    # Hashed: a jti is up to 256 client-chosen characters, the key column holds 300.
    return f"external:{environment_id}:{hashlib.sha256(jti.encode()).hexdigest()}"


async def _key_set(request: Request, env: Environment, kid: str | None, now: float) -> Any:
    if env.external_jwks is not None:
        return env.external_jwks
    if env.external_jwks_url:
        if kid is None:
            return {"keys": []}
        return await jwks_cache(request).keys_for(env.external_jwks_url, kid, now=now)
    raise InvalidExternalAuth("bring-your-own-auth is not configured for this environment")


@router.post("/external-auth/verify")
async def verify_external(
    body: ExternalBody, request: Request, session: CurrentSession, service: Service
) -> Any:
    """Exchange the app backend's assertion for an elevated token (its ``scope`` claim gives
    the scopes)."""
    now = service.clock.now()
    ip = ip_of(request, service)
    env = await service.get_environment(session.environment_id)
    user = await service.get_user(env.id, session.user_id)
    claims, kid = _peek(body.jwt)
    subjects = {user.id} | ({user.external_id} if user.external_id else set())
    sub = claims.get("sub")
    expected_subject = sub if isinstance(sub, str) and sub in subjects else user.id
    scope = claims.get("scope")
    scopes = list(dict.fromkeys(scope.split())) if isinstance(scope, str) else []
    if scopes:
        await precheck_elevation(service, session, MethodName.EXTERNAL, scopes, ip=ip)

    async def verify(s: AsyncSession, _: Credential | None) -> dict[str, Any]:
        factor = METHOD.complete(
            await _key_set(request, env, kid, now),
            body.jwt,
            now=now,
            expected_subject=expected_subject,
            expected_audience=env.id if "aud" in claims else None,
        )
        jti, exp = str(factor.details["jti"]), float(factor.details["exp"])
        key = _jti_key(env.id, jti)
        if await s.get(UsedNonce, key) is not None:
            raise CodeUsed("this assertion was already used")
        s.add(UsedNonce(key=key, expires_at=exp))
        try:
            await s.flush()
        except IntegrityError:
            raise CodeUsed("this assertion was already used") from None
        return await finish(service, session, factor, list(factor.details["scopes"]), ip=ip, s=s)

    return await attempt(
        service,
        request,
        environment_id=env.id,
        user_id=session.user_id,
        method=MethodName.EXTERNAL,
        credential_id=None,
        scopes=scopes[:20],
        action="verify",
        verify=verify,
    )
