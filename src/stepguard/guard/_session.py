"""The signed-in user for apps that use stepguard sessions, so ``sub`` matching needs no glue.

:class:`StepGuardSession` reads ``Authorization: Bearer <session token>``, asks the stepguard
server who it belongs to (``GET {server}/sdk/{environment}/session``) and returns a
:class:`Principal` (user and session id). Answers are cached for ``cache_ttl`` seconds (5 by
default, keyed by a SHA-256 of the token, never the token itself), so **a revoked or expired
session keeps working here for up to ``cache_ttl`` seconds**; set it to 0 to ask every time.
Use it as a FastAPI dependency and as the guard's ``current_user``.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from stepguard.core.clock import Clock, SystemClock
from stepguard.core.errors import InvalidSession

from ._check import Principal

__all__ = ["StepGuardSession", "bearer_token"]

SessionLookup = Callable[[str], Awaitable[Principal | None]]
_MAX_SESSION_TOKEN = 512


def bearer_token(authorization: str | None) -> str | None:
    """The credential of an ``Authorization: Bearer …`` header value, or ``None``."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > _MAX_SESSION_TOKEN:
        return None
    return token


class StepGuardSession:
    """Validates stepguard session tokens (see the module docstring for the revocation delay).

    Give ``server_url`` and ``environment_id`` to ask the server over HTTP, or ``lookup`` (an async
    function from token to :class:`Principal` or ``None``) when the server runs in the same process.
    """

    def __init__(
        self,
        server_url: str | None = None,
        environment_id: str | None = None,
        *,
        lookup: SessionLookup | None = None,
        http: httpx.AsyncClient | None = None,
        cache_ttl: float = 5.0,
        max_entries: int = 10_000,
        clock: Clock | None = None,
    ) -> None:
        if lookup is None:
            if not server_url or not environment_id:
                raise ValueError("give server_url and environment_id, or lookup")
            self._url = f"{server_url.rstrip('/')}/sdk/{environment_id}/session"
            self._own_http = http is None
            self._http: httpx.AsyncClient | None = http or httpx.AsyncClient(timeout=5.0)
            lookup = self._ask_server
        else:
            self._own_http = False
            self._http = None
        self._lookup = lookup
        self.cache_ttl = cache_ttl
        self.max_entries = max_entries
        self.clock: Clock = clock or SystemClock()
        self._cache: dict[bytes, tuple[float, Principal | None]] = {}
        self._lock = threading.Lock()

    async def __call__(self, request: Any) -> Principal:
        """FastAPI/Starlette dependency: the session's :class:`Principal` or ``InvalidSession``."""
        return await self.validate(bearer_token(request.headers.get("authorization")))

    async def validate(self, token: str | None) -> Principal:
        """The principal behind ``token``; raises :class:`InvalidSession` when there is none."""
        if not token or len(token) > _MAX_SESSION_TOKEN:
            raise InvalidSession()
        key = hashlib.sha256(token.encode()).digest()
        now = self.clock.now()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            principal = cached[1]
        else:
            principal = await self._lookup(token)
            if self.cache_ttl > 0:
                self._remember(key, now + self.cache_ttl, principal)
        if principal is None:
            raise InvalidSession()
        return principal

    def _remember(self, key: bytes, until: float, principal: Principal | None) -> None:
        with self._lock:
            while len(self._cache) >= self.max_entries:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = (until, principal)

    def forget(self) -> None:
        """Drop every cached answer (e.g. after the app revoked a session itself)."""
        with self._lock:
            self._cache.clear()

    async def _ask_server(self, token: str) -> Principal | None:
        assert self._http is not None
        try:
            response = await self._http.get(self._url, headers={"Authorization": f"Bearer {token}"})
        except httpx.HTTPError:
            # Unreachable server: fail closed, and do not cache the non-answer.
            raise InvalidSession("the session could not be checked") from None
        if response.status_code == 401:
            return None
        if response.status_code != 200:
            raise InvalidSession("the session could not be checked")
        data = response.json()
        user_id, session_id = data.get("user_id"), data.get("session_id")
        if not isinstance(user_id, str) or not isinstance(session_id, str):
            raise InvalidSession("the session could not be checked")
        return Principal(user_id=user_id, session_id=session_id)

    async def aclose(self) -> None:
        if self._own_http and self._http is not None:
            await self._http.aclose()
