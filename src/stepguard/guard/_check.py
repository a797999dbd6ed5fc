"""The pure check: does a verified elevated token satisfy a route's requirement for this user?

No I/O and no clock of its own: the token was already verified (signature, ``typ``, ``iss``,
``aud``, ``nbf``/``iat``) by :func:`stepguard.core.tokens.verify_elevated_token`; what is checked
here depends on the request (who is signed in, which scope the route needs) or on the time, so it
runs on every request, also when the token comes from the verified-token cache. The checks
themselves are core's :func:`~stepguard.core.tokens.check_grant` (the same ones the server runs);
the guard adds only what a route and the app's current user mean for them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from stepguard.core.errors import SubjectMismatch
from stepguard.core.scopes import is_valid_scope_name
from stepguard.core.tokens import DEFAULT_LEEWAY, VerifiedElevatedToken, check_grant

__all__ = ["Principal", "StepUpRequirement", "check_step_up"]


@dataclass(frozen=True, slots=True)
class StepUpRequirement:
    """What a protected route needs: every scope in ``scopes``, and an authentication no older
    than ``max_age`` seconds when set (RFC 9470 ``max_age``)."""

    scopes: tuple[str, ...]
    max_age: int | None = None

    @classmethod
    def of(cls, scope: str | Iterable[str], max_age: int | None = None) -> StepUpRequirement:
        """Build and validate a requirement (a string may hold several space-separated scopes)."""
        scopes = tuple(scope.split() if isinstance(scope, str) else scope)
        if not scopes:
            raise ValueError("a step-up requirement needs at least one scope")
        for s in scopes:
            # Only a scope the server could mint (core's pattern) can ever be granted; it is also
            # safe inside the quoted WWW-Authenticate scope parameter (RFC 6750 §3).
            if not isinstance(s, str) or not is_valid_scope_name(s):
                raise ValueError(f"invalid scope {s!r}")
        if max_age is not None and (isinstance(max_age, bool) or max_age < 0):
            raise ValueError("max_age must be a non-negative number of seconds")
        return cls(scopes=scopes, max_age=max_age)

    @property
    def scope(self) -> str:
        """The scopes as one space-separated string (for the challenge and the problem body)."""
        return " ".join(self.scopes)


@dataclass(frozen=True, slots=True)
class Principal:
    """The app's signed-in user; with ``session_id`` the token must also belong to that session."""

    user_id: str
    session_id: str | None = None


def check_step_up(
    token: VerifiedElevatedToken,
    required: StepUpRequirement,
    *,
    principal: Principal | None,
    now: float,
    leeway: int = DEFAULT_LEEWAY,
) -> None:
    """Raise the :class:`~stepguard.core.errors.ElevatedTokenError` subclass of the first failed
    check, or return ``None`` when ``token`` grants ``required`` to ``principal`` at ``now``.

    Order: expiry (RFC 7519 §4.1.4, with ``leeway``), subject and session (a token is bound to the
    user and session it was minted for; with no signed-in user nothing can match, so it fails
    closed), scope coverage (every required scope granted), then ``now - auth_time <= max_age``
    (NIST SP 800-63B §5.2: the relying party itself decides whether reauthentication is fresh).
    """
    if principal is None:
        check_grant(token.claims, now=now, leeway=leeway)  # an expired token says so first
        raise SubjectMismatch("there is no signed-in user to match the token's subject")
    check_grant(
        token.claims,
        now=now,
        expected_subject=principal.user_id,
        expected_session=principal.session_id,
        expected_scope=required.scopes,
        max_age=required.max_age,
        leeway=leeway,
    )
