"""One-time codes sent by email or SMS: the logic both channels share (sans-IO).

``begin`` draws a numeric code and returns it (for the mailer or SMS provider, never for storage or
logs) with an :class:`OtpChallengeState` that holds only a keyed digest of the code. The digest
covers the challenge id, user, channel, credential and destination too, so a code (or a digest
copied between rows) only ever verifies against the challenge it was issued for (ASVS 6.6.2).

``complete`` checks, in order: not used (ASVS 6.5.1), not expired (≤ 10 min, NIST 800-63B
§3.1.3.2), attempts left, then the code in constant time (ASVS 11.2.4). When the per-code attempt
cap is reached the code is dead and ``complete`` raises :class:`CodeExpired`, not
:class:`RateLimited`: waiting would not bring the code back, the user must request a new one.
Authenticator-wide throttling (the ≤ 100 consecutive-failure lockout) is
:mod:`stepguard.core.safety`'s job.

The server's side of the contract:

* persist ``state.with_failure()`` after :class:`InvalidCode` and ``state.used()`` after a success,
  atomically (compare-and-set on the row) so two concurrent submissions cannot both succeed;
* keep only the latest challenge per user and destination (a new code invalidates older ones);
* record failures in the authenticator's :class:`~stepguard.core.safety.LockoutState`, which a
  resend never resets.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from stepguard.core.assurance import MethodName
from stepguard.core.errors import ChallengeNotFound, CodeExpired, CodeUsed, InvalidCode
from stepguard.core.methods.base import VerifiedFactor, verified
from stepguard.core.safety import constant_time_equals, generate_numeric_code

__all__ = [
    "DEFAULT_TTL_SECONDS",
    "MAX_TTL_SECONDS",
    "OtpChallengeState",
    "OtpMethod",
    "mask_email",
    "mask_phone",
]

#: NIST 800-63B §3.1.3.2 / ASVS 6.5.5: an out-of-band code is invalid after 10 minutes.
MAX_TTL_SECONDS = 600
#: 3-5 minutes is the usual recommendation; 5 leaves time for a slow mailbox.
DEFAULT_TTL_SECONDS = 300
DEFAULT_MAX_ATTEMPTS = 5

Digest = Callable[[str], str]

_SEPARATORS = re.compile(r"[\s\-]")


@dataclass(frozen=True, slots=True)
class OtpChallengeState:
    """What the server stores for one sent code. Holds the code's keyed digest, never the code."""

    challenge_id: str
    #: ``None`` for a sign-in whose user is not known yet.
    user_id: str | None
    method: MethodName
    credential_id: str | None
    destination: str
    code_digest: str
    digits: int
    issued_at: float
    expires_at: float
    max_attempts: int
    failed_attempts: int = 0
    consumed: bool = False

    @property
    def attempts_remaining(self) -> int:
        return max(0, self.max_attempts - self.failed_attempts)

    def with_failure(self) -> OtpChallengeState:
        """The state to persist after a wrong code."""
        return replace(self, failed_attempts=self.failed_attempts + 1)

    def used(self) -> OtpChallengeState:
        """The state to persist after a successful verification (the code never works again)."""
        return replace(self, consumed=True)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for the server's challenge row (holds no secret)."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__} | {
            "method": self.method.value
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OtpChallengeState:
        """Inverse of :meth:`to_dict`."""
        return cls(**{**data, "method": MethodName(data["method"])})


def _digest_input(
    *,
    challenge_id: str,
    user_id: str | None,
    method: MethodName,
    credential_id: str | None,
    destination: str,
    code: str,
) -> str:
    # JSON array: unambiguous whatever the fields contain (no separator can be smuggled in).
    return json.dumps(
        ["stepguard/otp/v1", challenge_id, user_id, method.value, credential_id, destination, code],
        separators=(",", ":"),
        ensure_ascii=True,
    )


def _state_digest(state: OtpChallengeState, code: str, digest: Digest) -> str:
    return digest(
        _digest_input(
            challenge_id=state.challenge_id,
            user_id=state.user_id,
            method=state.method,
            credential_id=state.credential_id,
            destination=state.destination,
            code=code,
        )
    )


class OtpMethod:
    """Email/SMS one-time codes; :class:`EmailOtpMethod` and :class:`SmsOtpMethod` set the channel.

    Methods are class methods: the method holds no configuration, the state holds everything.
    """

    name: ClassVar[MethodName]

    @classmethod
    def begin(
        cls,
        *,
        challenge_id: str,
        user_id: str | None,
        credential_id: str | None,
        destination: str,
        now: float,
        digest: Digest,
        ttl_seconds: int = DEFAULT_TTL_SECONDS,
        digits: int = 6,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        randbelow: Callable[[int], int] = secrets.randbelow,
    ) -> tuple[str, OtpChallengeState]:
        """Draw a code for ``destination``; returns ``(code, state)``.

        ``digest`` is a keyed hash (the server passes ``SecretBox.mac`` under an OTP label). Send
        the code, store the state, and let the code go out of scope. Raises ``ValueError`` for a
        configuration outside the limits (TTL over 10 min, fewer than 6 digits, no attempts).
        """
        if not 0 < ttl_seconds <= MAX_TTL_SECONDS:
            raise ValueError(f"ttl_seconds must be in (0, {MAX_TTL_SECONDS}]")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        code = generate_numeric_code(digits, randbelow=randbelow)
        code_digest = digest(
            _digest_input(
                challenge_id=challenge_id,
                user_id=user_id,
                method=cls.name,
                credential_id=credential_id,
                destination=destination,
                code=code,
            )
        )
        state = OtpChallengeState(
            challenge_id=challenge_id,
            user_id=user_id,
            method=cls.name,
            credential_id=credential_id,
            destination=destination,
            code_digest=code_digest,
            digits=digits,
            issued_at=now,
            expires_at=now + ttl_seconds,
            max_attempts=max_attempts,
        )
        return code, state

    @classmethod
    def complete(
        cls,
        state: OtpChallengeState,
        code: str,
        *,
        now: float,
        digest: Digest,
        expected_user_id: str | None = None,
    ) -> VerifiedFactor:
        """Check ``code`` against ``state``; returns the verified factor or raises.

        Raises :class:`ChallengeNotFound` (state of another channel or, when ``expected_user_id`` is
        given, another user), :class:`CodeUsed`, :class:`CodeExpired` (late, or attempts
        exhausted) or :class:`InvalidCode` with ``attempts_remaining`` (persist
        ``state.with_failure()``; malformed input counts as a wrong code).
        """
        # Same answer for both mismatches, so a caller learns nothing about other users' challenges.
        if state.method is not cls.name or (
            expected_user_id is not None and expected_user_id != state.user_id
        ):
            raise ChallengeNotFound()
        if state.consumed:
            raise CodeUsed()
        if now >= state.expires_at:
            raise CodeExpired()
        if state.attempts_remaining <= 0:
            raise CodeExpired("Too many wrong codes: request a new code.")
        candidate = _SEPARATORS.sub("", code)
        well_formed = len(candidate) == state.digits and candidate.isascii() and candidate.isdigit()
        # The digest is computed even for malformed input so both paths cost about the same.
        matches = constant_time_equals(
            _state_digest(state, candidate if well_formed else "", digest), state.code_digest
        )
        if not (well_formed and matches):
            raise InvalidCode(attempts_remaining=state.attempts_remaining - 1)
        return verified(
            cls.name,
            now=now,
            credential_id=state.credential_id,
            details={"challenge_id": state.challenge_id},
        )


def mask_email(address: str) -> str:
    """``alice@example.com`` → ``a***e@example.com``, for UI and logs (ASVS 16.2.5).

    Local parts of one or two characters keep only their first character; a string without ``@``
    is masked entirely.
    """
    local, at, domain = address.rpartition("@")
    if not at or not local:
        return "***"
    shown = local[0] + "***" + (local[-1] if len(local) > 2 else "")
    return f"{shown}@{domain}"


def mask_phone(number: str) -> str:
    """``+14155550123`` → ``+*******0123``: only the last four digits stay (two if it is short)."""
    digits = "".join(ch for ch in number if ch.isdigit())
    if not digits:
        return "***"
    keep = 4 if len(digits) >= 8 else 2 if len(digits) > 4 else 0
    prefix = "+" if number.strip().startswith("+") else ""
    return prefix + "*" * (len(digits) - keep) + digits[len(digits) - keep :]
