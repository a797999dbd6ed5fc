"""What each verification method proves, as data.

Policy reads these records instead of branching on method names: a method either proves a second
factor (``MFA``: passkey, TOTP, recovery code) or re-authenticates the user with a credential they
already hold (``REAUTH``: email or SMS code, an external wallet's signature, an external assertion).
``amr`` values follow RFC 8176 where one fits; ``email`` has no registered value.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["ASSURANCE", "Assurance", "FactorKind", "MethodName"]


class MethodName(StrEnum):
    """Stable names of the verification methods (used in policy, audit and the API)."""

    EMAIL_OTP = "email_otp"
    SMS_OTP = "sms_otp"
    TOTP = "totp"
    PASSKEY = "passkey"
    RECOVERY_CODE = "recovery_code"
    ETHEREUM = "ethereum"
    SOLANA = "solana"
    EXTERNAL = "external"


class FactorKind(StrEnum):
    MFA = "mfa"
    REAUTH = "reauth"
    SERVER = "server"  # the app's backend vouches (bring-your-own-auth)


@dataclass(frozen=True, slots=True)
class Assurance:
    method: MethodName
    kind: FactorKind
    amr: tuple[str, ...]
    phishing_resistant: bool = False


ASSURANCE: dict[MethodName, Assurance] = {
    MethodName.EMAIL_OTP: Assurance(MethodName.EMAIL_OTP, FactorKind.REAUTH, ("otp", "email")),
    MethodName.SMS_OTP: Assurance(MethodName.SMS_OTP, FactorKind.REAUTH, ("otp", "sms")),
    MethodName.TOTP: Assurance(MethodName.TOTP, FactorKind.MFA, ("otp", "swk")),
    MethodName.PASSKEY: Assurance(MethodName.PASSKEY, FactorKind.MFA, ("hwk", "user", "pop"), True),
    MethodName.RECOVERY_CODE: Assurance(MethodName.RECOVERY_CODE, FactorKind.MFA, ("kba",)),
    MethodName.ETHEREUM: Assurance(MethodName.ETHEREUM, FactorKind.REAUTH, ("pop", "swk")),
    MethodName.SOLANA: Assurance(MethodName.SOLANA, FactorKind.REAUTH, ("pop", "swk")),
    MethodName.EXTERNAL: Assurance(MethodName.EXTERNAL, FactorKind.SERVER, ("ext",)),
}
