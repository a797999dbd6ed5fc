"""What the code-based routes share (email/SMS OTP, TOTP, recovery codes, email sign-in).

* :func:`keyed_digest`: the HMAC-SHA256 that codes are stored under (``SecretBox.mac``, which
  derives each purpose's sub-key once).
* :func:`precheck_elevation`: the policy decision *before* a code is checked, so a request that
  could never mint (``mfa_required``, ``method_not_allowed``, ``invalid_scopes``) neither spends
  the user's code nor counts as a failed guess, and reveals nothing about the code.
* :func:`finish`: mint inside the attempt's transaction, or answer ``{"verified": true}``.
* :class:`Throttles`: the in-memory request throttles (send per user, destination and IP; verify
  per authenticator and per IP) of one server process.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from stepguard.core.assurance import FactorKind, MethodName
from stepguard.core.clock import Clock
from stepguard.core.elevation import decide_elevation
from stepguard.core.errors import RateLimited, StepGuardError
from stepguard.core.methods.base import VerifiedFactor, verified
from stepguard.core.safety import LockoutState, RateLimiter, record_failure
from stepguard.server.audit import audit
from stepguard.server.service import LiveSession, StepGuardService

__all__ = [
    "Throttles",
    "audit_refusal",
    "finish",
    "keyed_digest",
    "precheck_elevation",
    "throttled",
    "throttles_for",
]


def keyed_digest(service: StepGuardService, label: bytes) -> Callable[[str], str]:
    """``text -> HMAC-SHA256(k_label, text)`` in hex, through ``service.box.mac``."""
    box = service.box

    def digest(text: str) -> str:
        return box.mac(label, text.encode())

    return digest


async def precheck_elevation(
    service: StepGuardService,
    session: LiveSession,
    method: MethodName,
    requested_scopes: Sequence[str],
    *,
    ip: str | None,
) -> None:
    """Refuse early what minting would refuse (see the module docstring). No-op without scopes."""
    if not requested_scopes:
        return
    policy = await service.policy(session.environment_id)
    probe = verified(method, now=service.clock.now())
    has_mfa = False
    if probe.kind is FactorKind.REAUTH and policy.mfa_enabled:
        async with service.db.session() as s:
            has_mfa = await service.user_has_mfa(s, session.user_id)
    try:
        decide_elevation(policy, requested_scopes, probe, user_has_mfa=has_mfa)
    except StepGuardError as exc:
        await audit_refusal(
            service,
            exc,
            action=f"{method.value}.verify",
            method=method,
            environment_id=session.environment_id,
            user_id=session.user_id,
            ip=ip,
            scopes=requested_scopes,
        )
        raise


async def audit_refusal(
    service: StepGuardService,
    exc: StepGuardError,
    *,
    action: str,
    method: MethodName,
    environment_id: str,
    user_id: str | None,
    ip: str | None,
    scopes: Sequence[str] = (),
) -> None:
    """Audit an attempt refused before it reached the method (throttle, policy), in its own
    transaction: one audit event per attempt, whatever stopped it."""
    async with service.db.transaction() as s:
        audit(
            s,
            now=service.clock.now(),
            actor="user",
            action=action,
            outcome=exc.code,
            environment_id=environment_id,
            user_id=user_id,
            ip=ip,
            method=method.value,
            scopes=list(scopes)[:20],
        )


async def throttled(
    service: StepGuardService,
    spend: Callable[[], None],
    *,
    action: str,
    method: MethodName,
    environment_id: str,
    user_id: str | None,
    ip: str | None,
    scopes: Sequence[str] = (),
) -> None:
    """Run a throttle's ``spend``; a :class:`RateLimited` refusal is audited, then raised."""
    try:
        spend()
    except RateLimited as exc:
        await audit_refusal(
            service,
            exc,
            action=action,
            method=method,
            environment_id=environment_id,
            user_id=user_id,
            ip=ip,
            scopes=scopes,
        )
        raise


async def finish(
    service: StepGuardService,
    session: LiveSession,
    factor: VerifiedFactor,
    requested_scopes: Sequence[str],
    *,
    s: AsyncSession,
    ip: str | None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The verify answer: an elevated token for ``requested_scopes``, or ``{"verified": true}``."""
    body: dict[str, Any]
    if requested_scopes:
        minted = await service.mint(session, factor, requested_scopes, ip=ip, s=s)
        body = minted.to_dict()
    else:
        body = {"verified": True}
    body.update(extra or {})
    return body


@dataclass(frozen=True, slots=True)
class Throttles:
    """Token buckets for one server process (NIST 800-63B §3.2.2, ASVS 2.4.1 / 6.6.3).

    Sends: a burst of 3 per destination then 1 a minute; 5 per user then 1 a minute; 20 per IP
    then 1 every 6 s. Verifications: a burst of 10 per authenticator then 1 every 6 s (so
    concurrent guesses cannot outrun the persisted lockout), 30 per IP then 1 a second.
    """

    send_destination: RateLimiter
    send_user: RateLimiter
    send_ip: RateLimiter
    verify_authenticator: RateLimiter
    verify_ip: RateLimiter
    #: Lockouts of sign-in decoys (addresses with no account), least recently used first.
    decoys: OrderedDict[str, LockoutState] = field(default_factory=OrderedDict)

    @classmethod
    def create(cls, clock: Clock) -> Throttles:
        return cls(
            send_destination=RateLimiter(3, 1 / 60, clock),
            send_user=RateLimiter(5, 1 / 60, clock),
            send_ip=RateLimiter(20, 1 / 6, clock),
            verify_authenticator=RateLimiter(10, 1 / 6, clock),
            verify_ip=RateLimiter(30, 1.0, clock),
        )

    @staticmethod
    def _all(pairs: Iterable[tuple[RateLimiter, str | None]]) -> None:
        # All or nothing: a request refused for one key does not drain the others. No await in
        # between, so nothing interleaves on the event loop.
        live = [(limiter, key) for limiter, key in pairs if key]
        short = [
            (1.0 - level) / limiter.refill_per_second
            for limiter, key in live
            if (level := limiter.remaining(key)) < 1.0
        ]
        if short:
            raise RateLimited(retry_after=max(short))
        for limiter, key in live:
            limiter.hit(key)

    def on_send(self, *, destination: str, user_id: str | None, ip: str | None) -> None:
        """Spend a send for the destination (a digest), the user and the client IP."""
        self._all(
            [
                (self.send_destination, destination),
                (self.send_user, user_id),
                (self.send_ip, ip),
            ]
        )

    def next_send_at(self, destination: str, now: float) -> float:
        """When the destination's bucket next allows a send (``now`` if it does already)."""
        level = self.send_destination.remaining(destination)
        if level >= 1.0:
            return now
        return now + (1.0 - level) / self.send_destination.refill_per_second

    def on_verify(self, *, authenticator: str | None, ip: str | None) -> None:
        """Spend a verification for the authenticator (credential or challenge id) and the IP."""
        self._all([(self.verify_authenticator, authenticator), (self.verify_ip, ip)])

    def decoy_lockout(self, key: str) -> LockoutState:
        """The lockout of a sign-in decoy (fresh when unknown)."""
        return self.decoys.get(key, LockoutState())

    def decoy_failed(self, key: str, *, now: float) -> None:
        """Record a failed sign-in against a decoy, as a real address's lockout would."""
        self.decoys[key] = record_failure(self.decoy_lockout(key), now=now)
        self.decoys.move_to_end(key)
        while len(self.decoys) > MAX_DECOYS:
            self.decoys.popitem(last=False)


#: Decoy lockouts kept per process (beyond it the oldest is forgotten, as if fresh).
MAX_DECOYS = 100_000

_THROTTLES: weakref.WeakKeyDictionary[StepGuardService, Throttles] = weakref.WeakKeyDictionary()


def throttles_for(service: StepGuardService) -> Throttles:
    """The service's :class:`Throttles` (per process; created on first use)."""
    found = _THROTTLES.get(service)
    if found is None:
        found = _THROTTLES[service] = Throttles.create(service.clock)
    return found
