"""Where the guard gets its verification keys: a JWKS URL, or a keyset in the same process.

The hot path never does I/O: :meth:`KeySource.keyset` returns the keys already parsed and indexed
by ``kid`` (no PEM/JWK parsing per request, performance.md G3). Loading happens in
:meth:`KeySource.refresh`, which the guard calls

* once before the first check (nothing to verify with yet),
* in the background when the keyset is older than ``refresh_every`` (off the hot path: the
  request that notices it is served with the current keys), and
* when a token names an unknown ``kid`` (a key rotated in since the last load), at most once per
  ``min_interval`` so a stream of made-up ``kid`` values cannot make the guard hammer the server.

A refresh replaces the whole keyset, so a key the server dropped (retired past its grace period)
stops verifying at the next refresh. A failed load keeps the previous keys (logged).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

import httpx

from stepguard.core.tokens import TokenKeySet

__all__ = ["JwksKeys", "KeySource", "LocalKeys"]

log = logging.getLogger("stepguard.guard")

#: A JWKS larger than this is refused (a few keys are under 2 KiB).
MAX_JWKS_BYTES = 256 * 1024


class KeySource(Protocol):
    """The guard's view of the issuer's public keys."""

    def keyset(self) -> TokenKeySet | None:
        """The loaded keys (``None`` before the first load). No I/O."""
        ...

    def claim_refresh(self, now: float) -> bool:
        """True (once) when a scheduled refresh is due; the caller then runs :meth:`refresh`."""
        ...

    async def refresh(self, *, now: float, unknown_kid: bool = False) -> bool:
        """Reload the keys; True when they were (re)loaded. With ``unknown_kid`` the call is rate
        limited and returns False without loading when the last attempt was too recent."""
        ...

    async def aclose(self) -> None: ...


class _RefreshingKeys:
    """Shared bookkeeping: a loader coroutine, the age of the keys, single-flight refreshes."""

    def __init__(
        self,
        loader: Callable[[], Awaitable[TokenKeySet]],
        *,
        refresh_every: float,
        min_interval: float,
        initial: TokenKeySet | None = None,
        loaded_at: float = float("-inf"),
    ) -> None:
        if refresh_every <= 0 or min_interval < 0:
            raise ValueError("refresh_every must be > 0 and min_interval >= 0")
        self._loader = loader
        self._keys = initial
        self._loaded_at = loaded_at
        self._last_attempt = float("-inf")
        self._refresh_every = refresh_every
        self._min_interval = min_interval
        self._lock: asyncio.Lock | None = None
        self._generation = 0

    def keyset(self) -> TokenKeySet | None:
        return self._keys

    @property
    def loaded_at(self) -> float:
        return self._loaded_at

    def claim_refresh(self, now: float) -> bool:
        if self._keys is None:
            # Nothing to verify with yet: every request waits for the first load (the lock makes
            # it one load); after a failed load, try again at most once per min_interval.
            return now - self._last_attempt >= self._min_interval or self._loading()
        if self._loading() or now - max(self._loaded_at, self._last_attempt) < self._refresh_every:
            return False
        # Claimed: the next caller sees a recent attempt and does not schedule a second refresh.
        self._last_attempt = now
        return True

    def _loading(self) -> bool:
        return self._lock is not None and self._lock.locked()

    async def refresh(self, *, now: float, unknown_kid: bool = False) -> bool:
        if unknown_kid and now - self._last_attempt < self._min_interval:
            return False
        if self._lock is None:
            self._lock = asyncio.Lock()
        generation = self._generation
        async with self._lock:
            if self._generation != generation:
                return True  # another caller loaded while we waited: use its result
            self._last_attempt = now
            try:
                keys = await self._loader()
            except Exception:  # any failure keeps the previous keys; the guard fails closed
                log.exception("stepguard guard: loading the verification keys failed")
                return False
            self._keys = keys
            self._loaded_at = now
            self._generation += 1
            return True

    async def aclose(self) -> None:
        return None


class LocalKeys(_RefreshingKeys):
    """Keys from the same process: a fixed :class:`TokenKeySet`, or an async loader such as the
    server keyring's ``keyset`` method (re-read every ``refresh_every`` seconds and on an unknown
    ``kid``), so no HTTP request to itself is needed."""

    def __init__(
        self,
        keys: TokenKeySet | Callable[[], Awaitable[TokenKeySet]],
        *,
        refresh_every: float = 30.0,
        min_interval: float = 1.0,
    ) -> None:
        if isinstance(keys, TokenKeySet):
            fixed = keys

            async def same() -> TokenKeySet:
                return fixed

            super().__init__(
                same,
                refresh_every=float("inf"),
                min_interval=float("inf"),
                initial=fixed,
                loaded_at=float("inf"),
            )
        else:
            super().__init__(keys, refresh_every=refresh_every, min_interval=min_interval)


class JwksKeys(_RefreshingKeys):
    """Keys from the issuer's JWKS URL (``<issuer>/.well-known/jwks.json``), cached by ``kid``.

    Only Ed25519 and P-256 signing keys are kept, each pinned to its one algorithm; anything else in
    the document is skipped (see :meth:`TokenKeySet.from_jwks`). ``http`` lets the app share its own
    :class:`httpx.AsyncClient`; otherwise one is created and closed by :meth:`aclose`.
    """

    def __init__(
        self,
        jwks_url: str,
        *,
        http: httpx.AsyncClient | None = None,
        refresh_every: float = 300.0,
        min_interval: float = 10.0,
        timeout: float = 5.0,
    ) -> None:
        if not jwks_url.startswith(("https://", "http://")):
            raise ValueError("jwks_url must be an http(s) URL")
        self.jwks_url = jwks_url
        self._own_http = http is None
        self._http = http or httpx.AsyncClient(timeout=timeout, follow_redirects=False)
        super().__init__(self._fetch, refresh_every=refresh_every, min_interval=min_interval)

    async def _fetch(self) -> TokenKeySet:
        response = await self._http.get(self.jwks_url, headers={"Accept": "application/json"})
        response.raise_for_status()
        if len(response.content) > MAX_JWKS_BYTES:
            raise ValueError("the JWKS document is too large")
        return TokenKeySet.from_jwks(response.json())

    async def aclose(self) -> None:
        if self._own_http:
            await self._http.aclose()
