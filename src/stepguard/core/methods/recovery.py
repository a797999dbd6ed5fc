"""Recovery codes: single-use look-up secrets that stand in for a lost second factor (sans-IO).

Each code carries 120 random bits (15 bytes from a CSPRNG), written as 24 lower-case base32
characters in six groups of four (``abcd-efgh-ijkl-mnop-qrst-uvwx``). At ≥ 112 bits a keyed
SHA-256 is an acceptable store (NIST 800-63B §3.1.2.2; ASVS 6.5.2), so the state holds HMAC digests
from the injected ``digest`` (the server passes ``SecretBox.mac``), never a code.

A used code's slot becomes ``None``: the server persists ``state.used(index)`` atomically
(compare-and-set) after a success, so each code works once (NIST 3.1.2.2), and should notify the
user and offer regeneration (NIST 4.2.1.1, 4.6). Wrong codes count toward the authenticator's
lockout in :mod:`stepguard.core.safety` (NIST 3.2.2).
"""

from __future__ import annotations

import base64
import re
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import ClassVar

from stepguard.core.assurance import MethodName
from stepguard.core.errors import InvalidCode
from stepguard.core.methods.base import VerificationMethod, VerifiedFactor, verified
from stepguard.core.safety import constant_time_equals

__all__ = [
    "CODE_BYTES",
    "DEFAULT_CODE_COUNT",
    "RecoveryCodeMethod",
    "RecoveryCodeState",
    "generate_recovery_codes",
    "normalize_code",
]

#: 120 bits: above NIST's 112-bit line for storing with a plain (keyed) hash.
CODE_BYTES = 15
CODE_LENGTH = CODE_BYTES * 8 // 5  # 24 base32 characters, no padding
GROUP = 4
DEFAULT_CODE_COUNT = 10

Digest = Callable[[str], str]

_IGNORED = re.compile(r"[\s\-]")
_BASE32 = re.compile(r"[a-z2-7]+")
_DOMAIN = "stepguard/recovery/v1:"


def normalize_code(code: str) -> str:
    """Canonical form of a typed code: lower case, spaces and dashes removed."""
    return _IGNORED.sub("", code).lower()


def _format(raw: bytes) -> str:
    text = base64.b32encode(raw).decode("ascii").lower()
    return "-".join(text[i : i + GROUP] for i in range(0, len(text), GROUP))


def generate_recovery_codes(
    n: int = DEFAULT_CODE_COUNT, *, randbytes: Callable[[int], bytes] = secrets.token_bytes
) -> list[str]:
    """``n`` distinct codes of 120 bits each, formatted for reading aloud or printing."""
    if n < 1:
        raise ValueError("n must be at least 1")
    codes: dict[str, None] = {}
    # A CSPRNG never repeats at 120 bits; the bound only stops a broken injected source.
    for _ in range(n * 4):
        raw = randbytes(CODE_BYTES)
        if len(raw) != CODE_BYTES:
            raise ValueError("randbytes returned the wrong number of bytes")
        codes[_format(raw)] = None
        if len(codes) == n:
            return list(codes)
    raise ValueError("the randomness source keeps repeating itself")


def _code_digest(normalized: str, digest: Digest) -> str:
    return digest(_DOMAIN + normalized)


@dataclass(frozen=True, slots=True)
class RecoveryCodeState:
    """A user's recovery-code set: one digest per code, ``None`` once that code is used."""

    digests: tuple[str | None, ...]

    @classmethod
    def from_codes(cls, codes: Iterable[str], *, digest: Digest) -> RecoveryCodeState:
        """The state to store for freshly generated ``codes``."""
        return cls(tuple(_code_digest(normalize_code(code), digest) for code in codes))

    @property
    def remaining(self) -> int:
        """How many codes are still unused."""
        return sum(d is not None for d in self.digests)

    def used(self, index: int) -> RecoveryCodeState:
        """The state to persist after the code at ``index`` (``details["index"]``) verified."""
        digests = list(self.digests)
        digests[index] = None
        return RecoveryCodeState(tuple(digests))


class RecoveryCodeMethod:
    """Recovery-code second factor. No challenge: the code set's state is all it needs."""

    name: ClassVar[MethodName] = MethodName.RECOVERY_CODE

    @classmethod
    def complete(
        cls,
        state: RecoveryCodeState,
        code: str,
        *,
        now: float,
        digest: Digest,
        credential_id: str | None = None,
    ) -> VerifiedFactor:
        """Find ``code`` in ``state``; ``details["index"]`` is the slot to mark used.

        Raises :class:`InvalidCode` for a malformed, unknown or already used code (a used slot
        holds no digest, so reuse looks exactly like a wrong code).
        """
        candidate = normalize_code(code)
        if len(candidate) != CODE_LENGTH or not _BASE32.fullmatch(candidate):
            raise InvalidCode("Not a recovery code.")
        wanted = _code_digest(candidate, digest)
        # Compare with every slot, used ones against a same-length dummy, without stopping at a
        # match, so timing does not tell which slot (or whether any) matched.
        dummy = "\x00" * len(wanted)
        found = -1
        for index, stored in enumerate(state.digests):
            hit = constant_time_equals(wanted, stored if stored is not None else dummy)
            if hit and stored is not None and found < 0:
                found = index
        if found < 0:
            raise InvalidCode()
        return verified(cls.name, now=now, credential_id=credential_id, details={"index": found})


_: type[VerificationMethod] = RecoveryCodeMethod
