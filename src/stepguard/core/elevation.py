"""Deciding whether a verified factor may mint an elevated token, and with which claims.

This is the policy half of "verify → policy → mint" (DESIGN.md): pure, so the server only persists
and signs. MFA precedence: when the environment enables MFA and the user has a verified MFA method,
re-authentication factors (email, SMS, wallet) are refused with ``mfa_required``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from stepguard.core.assurance import FactorKind
from stepguard.core.errors import MethodNotAllowed, MfaRequired, ValidationFailed
from stepguard.core.methods.base import VerifiedFactor
from stepguard.core.policy import EffectivePolicy, EnvironmentPolicy
from stepguard.core.tokens import ElevatedClaims, new_jti

__all__ = ["ElevationRequest", "build_claims", "decide_elevation"]


@dataclass(frozen=True, slots=True)
class ElevationRequest:
    issuer: str
    environment_id: str
    user_id: str
    session_id: str
    #: Session expiry: an elevated token never outlives its session.
    session_expires_at: float


def decide_elevation(
    policy: EnvironmentPolicy,
    requested_scopes: Iterable[str],
    factor: VerifiedFactor,
    *,
    user_has_mfa: bool,
    txn: str | None = None,
) -> EffectivePolicy:
    """The effective policy for minting, or an error with a stable code.

    Raises ``invalid_scopes`` (unknown scopes), ``mfa_required`` (MFA precedence),
    ``method_not_allowed`` (method disabled or not allowed for one of the scopes).
    """
    effective = policy.resolve(requested_scopes)
    if factor.method not in policy.enabled_methods:
        raise MethodNotAllowed(f"{factor.method} is not enabled in this environment")
    if policy.mfa_enabled and user_has_mfa and factor.kind is FactorKind.REAUTH:
        raise MfaRequired()
    if factor.method not in effective.allowed_methods:
        raise MethodNotAllowed(
            f"{factor.method} may not be used for {' '.join(effective.scopes)}",
            method=factor.method.value,
        )
    if effective.bind_transaction and not txn:
        raise ValidationFailed("these scopes need a transaction digest (txn)")
    return effective


def build_claims(
    request: ElevationRequest,
    effective: EffectivePolicy,
    factor: VerifiedFactor,
    *,
    now: float,
    txn: str | None = None,
) -> ElevatedClaims:
    """Claims for a new elevated token; its lifetime is capped by the session's."""
    iat = int(now)
    exp = min(iat + effective.ttl_seconds, int(request.session_expires_at))
    return ElevatedClaims(
        iss=request.issuer,
        aud=request.environment_id,
        sub=request.user_id,
        sid=request.session_id,
        jti=new_jti(),
        iat=iat,
        exp=exp,
        auth_time=int(factor.verified_at),
        scopes=effective.scopes,
        amr=factor.amr,
        single_use=effective.single_use,
        txn=txn,
    )
