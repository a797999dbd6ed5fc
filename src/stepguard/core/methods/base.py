"""The shape every verification method follows (sans-IO).

Each method module in :mod:`stepguard.core.methods` exposes a class that implements
:class:`VerificationMethod`: ``begin(...)`` returns what to show the user or authenticator plus a
*state* the server stores; ``complete(state, response, *, now)`` checks the response and returns a
:class:`VerifiedFactor` or raises a :class:`~stepguard.core.errors.VerificationFailed` subclass.
No database, mailer or wall clock inside: time and randomness come in as arguments.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from stepguard.core.assurance import ASSURANCE, FactorKind, MethodName

__all__ = ["VerificationMethod", "VerifiedFactor", "verified"]


@dataclass(frozen=True, slots=True)
class VerifiedFactor:
    """Proof that the user passed one verification, and what it is worth."""

    method: MethodName
    kind: FactorKind
    amr: tuple[str, ...]
    verified_at: float
    #: The credential or device that proved it (email, phone, TOTP device, passkey, wallet).
    credential_id: str | None = None
    #: Method-specific results the server must persist (new sign count, last TOTP step, ...).
    details: Mapping[str, Any] = field(default_factory=dict)


def verified(
    method: MethodName,
    *,
    now: float,
    credential_id: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> VerifiedFactor:
    """A :class:`VerifiedFactor` whose kind and ``amr`` come from :data:`ASSURANCE`."""
    a = ASSURANCE[method]
    return VerifiedFactor(
        method=method,
        kind=a.kind,
        amr=a.amr,
        verified_at=now,
        credential_id=credential_id,
        details=dict(details or {}),
    )


class VerificationMethod(Protocol):
    """Implemented by every method class; registered by :attr:`name`."""

    name: ClassVar[MethodName]
