"""The guard: verify the elevated token of a request and reserve it when it is single-use.

:class:`Guard` holds the configuration (issuer, audience, keys, replay store, how to read the
app's current user) and runs one request's check as a small sans-IO flow written once
(:meth:`Guard._flow`): a generator that does the CPU work itself and yields the I/O it needs
(load keys, reserve a ``jti``). :meth:`Guard.authorize` drives it on the running event loop;
:class:`SyncGuard` drives it from a worker thread of a WSGI app (Flask, Django), handing the I/O to
one background event loop. The adapters (FastAPI, Starlette, Flask, Django) only read the header,
call ``authorize``, run the handler and :meth:`Guard.settle` the reservation by its outcome.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
from collections.abc import Awaitable, Callable, Coroutine, Generator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

from stepguard.core.clock import Clock, SystemClock
from stepguard.core.errors import ElevatedTokenError, ElevatedTokenRequired
from stepguard.core.tokens import (
    DEFAULT_LEEWAY,
    MAX_LEEWAY,
    TokenKeySet,
    UnknownKeyId,
    VerifiedElevatedToken,
    verify_elevated_token,
)

from ._cache import VerifiedTokenCache
from ._challenge import ELEVATED_TOKEN_HEADER
from ._check import Principal, StepUpRequirement, check_step_up
from ._keys import KeySource
from ._replay import ReplayStore, Reservation, sql_replay_store

__all__ = ["CurrentUser", "Elevation", "Guard", "SyncGuard"]

log = logging.getLogger("stepguard.guard")
T = TypeVar("T")

#: Reads the app's signed-in user from the framework's request object: returns the user id, a
#: :class:`Principal` (user and session) or ``None``, directly or as an awaitable.
CurrentUser = Callable[[Any], "str | Principal | None | Awaitable[str | Principal | None]"]

_EMPTY = TokenKeySet()


@dataclass(slots=True)
class Elevation:
    """A request's accepted elevated token; ``reservation`` is set for a single-use token until
    it is settled (spent on success, released on failure)."""

    token: VerifiedElevatedToken
    requirement: StepUpRequirement
    reservation: Reservation | None = None
    guard: Guard | None = field(default=None, repr=False)
    settled: bool = False

    @property
    def subject(self) -> str:
        return self.token.subject

    @property
    def scopes(self) -> tuple[str, ...]:
        return self.token.scopes

    @property
    def single_use(self) -> bool:
        return self.token.single_use


@dataclass(frozen=True, slots=True)
class _Wait:
    """The flow needs this coroutine's result before it can go on."""

    coro: Coroutine[Any, Any, Any]


@dataclass(frozen=True, slots=True)
class _Spawn:
    """Run this coroutine in the background; the flow does not wait (off the hot path)."""

    coro: Coroutine[Any, Any, Any]


_Effect = _Wait | _Spawn


def as_principal(value: object) -> Principal | None:
    """Normalise what a current-user callable returned (``""`` means nobody is signed in: apps
    often default a missing session value to an empty string, and no token names that user)."""
    if value is None or isinstance(value, Principal):
        return value
    if isinstance(value, str):
        return Principal(user_id=value) if value else None
    raise TypeError("current_user must return a user id (str), a Principal or None")


class Guard:
    """Protects an app's sensitive endpoints with elevated access tokens.

    ``issuer`` is the stepguard server's public URL (the token's ``iss``, exact match);
    ``audience`` the environment id (``aud``); ``keys`` a :class:`~stepguard.guard.JwksKeys` or
    :class:`~stepguard.guard.LocalKeys`; ``replay_store`` a :class:`ReplayStore` or the app's
    database URL (SQLite or PostgreSQL) for single-use tokens — it is required, because an
    in-memory store is only correct for one process; ``current_user`` reads the signed-in user from
    the framework's request (see :data:`CurrentUser`; the adapters pass their request object).
    ``leeway`` is the clock skew allowed on ``exp``/``nbf``/``iat`` (at most 60 s).
    """

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        keys: KeySource,
        replay_store: ReplayStore | str,
        current_user: CurrentUser | None = None,
        clock: Clock | None = None,
        leeway: int = DEFAULT_LEEWAY,
        cache_size: int = 4096,
        header: str = ELEVATED_TOKEN_HEADER,
    ) -> None:
        if not issuer or not audience:
            raise ValueError("issuer and audience are required")
        if not 0 <= leeway <= MAX_LEEWAY:
            raise ValueError(f"leeway must be between 0 and {MAX_LEEWAY} seconds")
        self.issuer = issuer
        self.audience = audience
        self.keys = keys
        self.replay_store: ReplayStore = (
            sql_replay_store(replay_store) if isinstance(replay_store, str) else replay_store
        )
        self.current_user = current_user
        self.clock: Clock = clock or SystemClock()
        self.leeway = leeway
        self.cache = VerifiedTokenCache(cache_size)
        self.header = header
        self._tasks: set[asyncio.Task[Any]] = set()
        self._sync: SyncGuard | None = None
        self._sync_lock = threading.Lock()

    # -- the pure part ---------------------------------------------------------------------
    def verify(
        self,
        token: str | None,
        requirement: StepUpRequirement,
        *,
        principal: Principal | None,
        now: float | None = None,
    ) -> VerifiedElevatedToken:
        """Check ``token`` against ``requirement`` for ``principal`` with the keys loaded now.

        CPU only, no I/O: a cache hit costs a dictionary lookup plus :func:`check_step_up`; a miss
        runs :func:`~stepguard.core.tokens.verify_elevated_token` (signature, ``typ``, algorithm
        pinned per key, ``iss``, ``aud``, ``exp``/``nbf``/``iat``). Raises an
        :class:`~stepguard.core.errors.ElevatedTokenError` subclass (``UnknownKeyId`` when the
        ``kid`` is not loaded: :meth:`authorize` then refreshes the keys once and retries).
        """
        if now is None:
            now = self.clock.now()
        if not token:
            raise ElevatedTokenRequired()
        keyset = self.keys.keyset() or _EMPTY
        verified = self.cache.get(token)
        if verified is None or verified.kid not in keyset:
            verified = verify_elevated_token(
                token,
                keys=keyset,
                expected_issuer=self.issuer,
                expected_audience=self.audience,
                now=now,
                leeway=self.leeway,
            )
            if not verified.single_use:
                self.cache.put(token, verified)
        try:
            check_step_up(verified, requirement, principal=principal, now=now, leeway=self.leeway)
        except ElevatedTokenError:
            if now > verified.claims.exp + self.leeway:
                self.cache.discard(token)
            raise
        return verified

    def _flow(
        self, token: str | None, requirement: StepUpRequirement, principal: Principal | None
    ) -> Generator[_Effect, Any, Elevation]:
        now = self.clock.now()
        try:
            if token and self.keys.claim_refresh(now):
                refresh = self.keys.refresh(now=now)
                if self.keys.keyset() is None:
                    yield _Wait(refresh)
                else:
                    yield _Spawn(refresh)
            try:
                verified = self.verify(token, requirement, principal=principal, now=now)
            except UnknownKeyId:
                # A key rotated in since the last load, or a made-up kid: reload (rate limited).
                if not (yield _Wait(self.keys.refresh(now=now, unknown_kid=True))):
                    raise
                verified = self.verify(token, requirement, principal=principal, now=now)
            reservation = None
            if verified.single_use:
                reservation = yield _Wait(
                    self.replay_store.reserve(
                        verified.jti, expires_at=verified.expires_at + self.leeway, now=now
                    )
                )
        except ElevatedTokenError as exc:
            # The framework's exception handler builds the challenge from these (RFC 9470): the
            # route's whole requirement, not just what was missing (core puts the missing scopes
            # there), because the client steps up once for what it names and retries once.
            exc.extra["scope"] = requirement.scope
            if requirement.max_age is not None:
                exc.extra["max_age"] = requirement.max_age
            raise
        return Elevation(verified, requirement, reservation, guard=self)

    # -- async driver ----------------------------------------------------------------------
    async def principal_for(self, request: Any) -> Principal | None:
        """Call ``current_user(request)`` (sync or async) and normalise the result."""
        if self.current_user is None:
            raise RuntimeError("this Guard has no current_user: pass current_user=...")
        value = self.current_user(request)
        if inspect.isawaitable(value):
            value = await value
        return as_principal(value)

    async def authorize(
        self, token: str | None, requirement: StepUpRequirement, *, principal: Principal | None
    ) -> Elevation:
        """Accept ``token`` for ``requirement`` and ``principal`` or raise an
        :class:`~stepguard.core.errors.ElevatedTokenError`. A single-use token comes back
        reserved: call :meth:`settle` once the handler's outcome is known."""
        flow = self._flow(token, requirement, principal)
        try:
            effect = next(flow)
            while True:
                if isinstance(effect, _Spawn):
                    task = asyncio.get_running_loop().create_task(effect.coro)
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                    effect = flow.send(None)
                else:
                    try:
                        result = await effect.coro
                    except Exception as exc:  # back into the flow: it labels guard errors
                        effect = flow.throw(exc)
                    else:
                        effect = flow.send(result)
        except StopIteration as done:
            elevation: Elevation = done.value
            return elevation
        finally:
            flow.close()

    async def settle(self, elevation: Elevation, *, success: bool) -> None:
        """Spend a reserved single-use token when the handler succeeded, else release it.

        Runs once per elevation. A store error is logged, not raised: the reservation then stays
        until the token expires, so the token cannot be replayed (fail closed).
        """
        reservation = elevation.reservation
        if reservation is None or elevation.settled:
            return
        elevation.settled = True
        try:
            if success:
                await self.replay_store.spend(reservation)
            else:
                await self.replay_store.release(reservation)
        except Exception:
            log.exception("stepguard guard: settling a single-use token failed")

    async def aclose(self) -> None:
        """Close the key source and the replay store (and the sync driver's loop, if started)."""
        for task in list(self._tasks):
            task.cancel()
        await self.keys.aclose()
        await self.replay_store.aclose()

    def sync(self) -> SyncGuard:
        """The driver for WSGI apps (one per guard, created on first use)."""
        with self._sync_lock:
            if self._sync is None:
                self._sync = SyncGuard(self)
            return self._sync


class SyncGuard:
    """Runs a :class:`Guard` from synchronous code (Flask, Django views).

    The CPU work (verification, the cache) runs in the calling thread; I/O (key loads, the replay
    store) runs on one private event loop in a daemon thread, so the guard's async stores and key
    sources are shared by every worker thread. Use a guard either from async code or through its
    ``SyncGuard``, not both: its stores belong to one event loop.
    """

    def __init__(self, guard: Guard, *, timeout: float = 30.0) -> None:
        self.guard = guard
        self.timeout = timeout
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="stepguard-guard", daemon=True
        )
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the guard's loop and wait for its result."""
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(self.timeout)

    def principal_for(self, request: Any) -> Principal | None:
        if self.guard.current_user is None:
            raise RuntimeError("this Guard has no current_user: pass current_user=...")
        value = self.guard.current_user(request)
        if inspect.isawaitable(value):
            raise TypeError("current_user must be synchronous in a WSGI app")
        return as_principal(value)

    def authorize(
        self, token: str | None, requirement: StepUpRequirement, *, principal: Principal | None
    ) -> Elevation:
        """Like :meth:`Guard.authorize`, blocking the calling thread."""
        flow = self.guard._flow(token, requirement, principal)
        try:
            effect = next(flow)
            while True:
                if isinstance(effect, _Spawn):
                    asyncio.run_coroutine_threadsafe(effect.coro, self._loop)
                    effect = flow.send(None)
                else:
                    try:
                        result = self.run(effect.coro)
                    except Exception as exc:
                        effect = flow.throw(exc)
                    else:
                        effect = flow.send(result)
        except StopIteration as done:
            elevation: Elevation = done.value
            return elevation
        finally:
            flow.close()

    def settle(self, elevation: Elevation, *, success: bool) -> None:
        self.run(self.guard.settle(elevation, success=success))

    def close(self) -> None:
        """Close the guard's resources on its loop and stop the loop thread."""
        if self._loop.is_closed():
            return
        try:
            self.run(self.guard.aclose())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
            self._loop.close()
