"""What the challenge-response routes (passkeys, wallets) and the assertion route share.

A ceremony is a :class:`~stepguard.server.db.Challenge` row holding a method's sans-IO state
between ``begin`` and ``complete``. It is bound to its environment, method, purpose and (for a
signed-in user) session; it is spent exactly once through :func:`~stepguard.server.stepup.claim`,
on success *and* on a failed attempt, so a response can never be tried twice against it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession

from stepguard.core.assurance import MethodName
from stepguard.core.errors import (
    ChallengeNotFound,
    CodeExpired,
    CodeUsed,
    RateLimited,
    StepGuardError,
    VerificationFailed,
)
from stepguard.server.audit import audit
from stepguard.server.db import Challenge, new_id
from stepguard.server.service import LiveSession, StepGuardService
from stepguard.server.settings import Settings
from stepguard.server.stepup import claim, ip_of, run_attempt

__all__ = [
    "RelyingParty",
    "attempt",
    "burn_challenge",
    "load_challenge",
    "relying_party",
    "spend_challenge",
    "store_challenge",
]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RelyingParty:
    """Who we are to authenticators and wallets, all derived from ``STEPGUARD_PUBLIC_URL``."""

    #: WebAuthn RP id: the host of the public URL (no scheme, no port).
    rp_id: str
    #: The exact origin browsers report (``scheme://host[:port]``).
    origin: str
    #: The EIP-4361/SIWS ``domain``: the authority (``host[:port]``) of the public URL.
    domain: str
    #: The ``URI`` field of wallet messages.
    uri: str


def relying_party(settings: Settings) -> RelyingParty:
    parts = urlsplit(settings.public_url)
    host = parts.hostname or "localhost"
    origin = f"{parts.scheme}://{parts.netloc}"
    return RelyingParty(rp_id=host, origin=origin, domain=parts.netloc, uri=origin)


async def store_challenge(
    s: AsyncSession,
    *,
    environment_id: str,
    method: MethodName,
    purpose: str,
    state: dict[str, Any],
    now: float,
    expires_at: float,
    session: LiveSession | None = None,
    credential_id: str | None = None,
    ip: str | None = None,
) -> Challenge:
    """A new pending ceremony (its id carries 128 random bits)."""
    row = Challenge(
        id=new_id("chl_"),
        environment_id=environment_id,
        user_id=session.user_id if session else None,
        session_id=session.id if session else None,
        credential_id=credential_id,
        method=method.value,
        purpose=purpose,
        state=state,
        digest=None,
        attempts=0,
        max_attempts=1,
        created_at=now,
        expires_at=expires_at,
        used_at=None,
        ip=ip,
    )
    s.add(row)
    return row


async def load_challenge(
    s: AsyncSession,
    challenge_id: str,
    *,
    environment_id: str,
    methods: Sequence[MethodName],
    purpose: str,
    session: LiveSession | None,
    now: float,
) -> Challenge:
    """The pending ceremony, or ``challenge_not_found`` / ``code_used`` / ``code_expired``.

    A ceremony started by another session (or for another method or purpose) does not exist
    for this caller: answering ``challenge_not_found`` tells an attacker nothing about it.
    """
    row = await s.get(Challenge, challenge_id)
    if (
        row is None
        or row.environment_id != environment_id
        or row.method not in {m.value for m in methods}
        or row.purpose != purpose
        or row.session_id != (session.id if session else None)
    ):
        raise ChallengeNotFound()
    if row.used_at is not None:
        raise CodeUsed("this challenge was already used")
    if now >= row.expires_at:
        raise CodeExpired("this challenge has expired")
    return row


async def spend_challenge(s: AsyncSession, challenge_id: str, *, now: float) -> None:
    """Mark the ceremony used with a compare-and-set; the loser of a race gets ``code_used``."""
    won = await claim(
        s,
        Challenge,
        [Challenge.id == challenge_id, Challenge.used_at.is_(None)],
        used_at=now,
        attempts=Challenge.attempts + 1,
    )
    if not won:
        raise CodeUsed("this challenge was already used")


def burn_challenge(
    challenge_id: str, *, now: float
) -> Callable[[AsyncSession, StepGuardError], Awaitable[None]]:
    """``on_failure`` for :func:`run_attempt`: a failed response spends its challenge too."""

    async def burn(s: AsyncSession, _: StepGuardError) -> None:
        await claim(
            s,
            Challenge,
            [Challenge.id == challenge_id, Challenge.used_at.is_(None)],
            used_at=now,
            attempts=Challenge.attempts + 1,
        )

    return burn


async def attempt(
    service: StepGuardService,
    request: Request,
    *,
    environment_id: str,
    user_id: str | None,
    method: MethodName,
    credential_id: str | None,
    scopes: Sequence[str],
    action: str,
    verify: Callable[[AsyncSession, Any], Awaitable[T]],
    on_failure: Callable[[AsyncSession, StepGuardError], Awaitable[None]] | None = None,
) -> T:
    """:func:`run_attempt`, plus an audit event for input refused before verification.

    ``run_attempt`` audits verification failures and lockouts; a malformed response
    (``validation_error``) or a refused scope is audited here, so every attempt leaves a row.
    """
    ip = ip_of(request, service)
    try:
        return await run_attempt(
            service,
            environment_id=environment_id,
            user_id=user_id,
            method=method,
            ip=ip,
            credential_id=credential_id,
            scopes=scopes,
            action=action,
            verify=verify,
            on_failure=on_failure,
        )
    except (VerificationFailed, RateLimited):
        raise  # already audited by run_attempt
    except StepGuardError as exc:
        async with service.db.transaction() as s:
            if on_failure is not None:
                await on_failure(s, exc)
            audit(
                s,
                now=service.clock.now(),
                actor="user",
                action=f"{method.value}.{action}",
                outcome=exc.code,
                environment_id=environment_id,
                user_id=user_id,
                ip=ip,
                method=method.value,
                scopes=scopes,
                details={"credential_id": credential_id},
            )
        raise
