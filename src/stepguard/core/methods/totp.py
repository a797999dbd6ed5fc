"""TOTP authenticator apps (RFC 6238) as a second factor (sans-IO).

Codes are computed by ``pyotp``; this module decides which steps are acceptable:

* the time step comes from the server's clock only (``now``), never from the client (ASVS 6.5.8);
* the current step and one step either side are accepted (RFC 6238 §5.2 allows one step back for
  transmission delay; one step ahead absorbs an authenticator clock running slightly fast);
* any step at or before the device's ``last_used_step`` is refused with :class:`CodeUsed`, so a
  code works once even inside its own 30 s window (RFC 6238 §5.2, NIST 800-63B §3.1.4.2).

Wrong codes count toward the authenticator's consecutive-failure lockout, which the server keeps
with :mod:`stepguard.core.safety` (RFC 4226 §7.3, NIST 800-63B §3.2.2).
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import ClassVar

import pyotp
import segno

from stepguard.core.assurance import MethodName
from stepguard.core.errors import CodeUsed, InvalidCode
from stepguard.core.methods.base import VerificationMethod, VerifiedFactor, verified
from stepguard.core.safety import constant_time_equals

__all__ = [
    "SECRET_BYTES",
    "TotpAlgorithm",
    "TotpDeviceState",
    "TotpMethod",
    "generate_secret",
    "hotp_at",
    "provisioning_uri",
    "qr_svg",
    "totp_at",
]

#: RFC 4226 R6 recommends 160 bits; also NIST's ≥ 112-bit key strength.
SECRET_BYTES = 20
#: Steps accepted before and after the current one.
PAST_STEPS = 1
FUTURE_STEPS = 1

_SEPARATORS = re.compile(r"[\s\-]")


class TotpAlgorithm(StrEnum):
    """HMAC hash of the OTP (RFC 6238 §1.2). SHA1 is what authenticator apps support widely."""

    SHA1 = "SHA1"
    SHA256 = "SHA256"
    SHA512 = "SHA512"


_HASHES: dict[TotpAlgorithm, Callable[..., object]] = {
    TotpAlgorithm.SHA1: hashlib.sha1,
    TotpAlgorithm.SHA256: hashlib.sha256,
    TotpAlgorithm.SHA512: hashlib.sha512,
}


def _b32(secret: bytes) -> str:
    return base64.b32encode(secret).decode("ascii").rstrip("=")


def generate_secret(
    randbytes: Callable[[int], bytes] = secrets.token_bytes, *, length: int = SECRET_BYTES
) -> str:
    """A new TOTP seed: ``length`` (≥ 20) random bytes, base32 without padding (RFC 4226 R6)."""
    if length < SECRET_BYTES:
        raise ValueError(f"TOTP secrets need at least {SECRET_BYTES} bytes (160 bits)")
    raw = randbytes(length)
    if len(raw) != length:
        raise ValueError("randbytes returned the wrong number of bytes")
    return _b32(raw)


class _Hotp(pyotp.HOTP):
    """pyotp's HOTP over raw secret bytes, without re-decoding base32 on every code."""

    def __init__(self, secret: bytes, digits: int, algorithm: TotpAlgorithm | str) -> None:
        self._raw = secret  # before super(): pyotp's constructor calls byte_secret()
        super().__init__(_b32(secret), digits=digits, digest=_HASHES[TotpAlgorithm(algorithm)])

    def byte_secret(self) -> bytes:
        return self._raw


def hotp_at(
    secret: bytes,
    counter: int,
    *,
    digits: int = 6,
    algorithm: TotpAlgorithm | str = TotpAlgorithm.SHA1,
) -> str:
    """The HOTP value for ``counter`` (RFC 4226 §5.3, with RFC 6238's hash choice)."""
    code: str = _Hotp(secret, digits, algorithm).at(counter)
    return code


def totp_at(
    secret: bytes,
    for_time: float,
    digits: int = 6,
    period: int = 30,
    algorithm: TotpAlgorithm | str = TotpAlgorithm.SHA1,
) -> str:
    """The TOTP value at Unix time ``for_time`` (RFC 6238 §4.2, T0 = 0)."""
    return hotp_at(secret, int(for_time // period), digits=digits, algorithm=algorithm)


def provisioning_uri(
    secret: str,
    *,
    account_name: str,
    issuer: str,
    digits: int = 6,
    period: int = 30,
    algorithm: TotpAlgorithm | str = TotpAlgorithm.SHA1,
) -> str:
    """The ``otpauth://totp/...`` URI authenticator apps scan (Key Uri Format)."""
    uri: str = pyotp.TOTP(
        secret,
        digits=digits,
        interval=period,
        digest=_HASHES[TotpAlgorithm(algorithm)],
    ).provisioning_uri(name=account_name, issuer_name=issuer)
    return uri


def qr_svg(uri: str) -> str:
    """An inline SVG QR code of ``uri`` (no XML declaration, ready to embed in HTML)."""
    svg: str = segno.make(uri, error="m").svg_inline(scale=4, title="TOTP setup QR code")
    return svg


@dataclass(frozen=True, slots=True)
class TotpDeviceState:
    """One enrolled authenticator. ``secret`` is base32 (the server keeps it sealed at rest)."""

    device_id: str
    secret: str
    #: The last accepted time step; ``None`` before the first use (enrolment check included).
    last_used_step: int | None = None
    digits: int = 6
    period: int = 30
    algorithm: str = TotpAlgorithm.SHA1.value

    def after_use(self, step: int) -> TotpDeviceState:
        """The state to persist after a success at ``step`` (from ``details["step"]``)."""
        return replace(self, last_used_step=step)


def _secret_bytes(secret: str) -> bytes:
    padded = secret.upper() + "=" * (-len(secret) % 8)
    return base64.b32decode(padded)


class TotpMethod:
    """TOTP second factor. No challenge: the device's state is all ``complete`` needs."""

    name: ClassVar[MethodName] = MethodName.TOTP

    @classmethod
    def complete(cls, state: TotpDeviceState, code: str, *, now: float) -> VerifiedFactor:
        """Check ``code`` at server time ``now``; ``details["step"]`` is the step to persist.

        Raises :class:`InvalidCode` (malformed or wrong) or :class:`CodeUsed` (the code's step is
        not after ``last_used_step``: a replay, or an older code after a newer one).
        """
        candidate = _SEPARATORS.sub("", code)
        if not (len(candidate) == state.digits and candidate.isascii() and candidate.isdigit()):
            raise InvalidCode(f"The code must be {state.digits} digits.")
        otp = _Hotp(_secret_bytes(state.secret), state.digits, state.algorithm)
        current = int(now // state.period)
        matched: list[int] = []
        # Every candidate step is computed and compared, matched or not.
        for step in range(current - PAST_STEPS, current + FUTURE_STEPS + 1):
            if step < 0:
                continue
            if constant_time_equals(candidate, otp.at(step)):
                matched.append(step)
        if not matched:
            raise InvalidCode()
        last = state.last_used_step
        fresh = [step for step in matched if last is None or step > last]
        if not fresh:
            raise CodeUsed("This code was already used; wait for the next one.")
        # The earliest fresh step: accepting a later one would burn codes still to come.
        step = min(fresh)
        return verified(cls.name, now=now, credential_id=state.device_id, details={"step": step})


_: type[VerificationMethod] = TotpMethod
