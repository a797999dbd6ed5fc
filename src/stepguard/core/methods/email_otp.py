"""Email one-time codes: :class:`~stepguard.core.methods.otp.OtpMethod` on the email channel.

A re-authentication factor only: NIST 800-63B §3.1.3.1 does not accept email as an out-of-band
authenticator, so its ``amr`` (``otp``, ``email``) never satisfies an MFA-only policy.
"""

from __future__ import annotations

from typing import ClassVar

from stepguard.core.assurance import MethodName
from stepguard.core.methods.base import VerificationMethod
from stepguard.core.methods.otp import OtpMethod

__all__ = ["EmailOtpMethod"]


class EmailOtpMethod(OtpMethod):
    """A code sent to a verified email address."""

    name: ClassVar[MethodName] = MethodName.EMAIL_OTP


_: type[VerificationMethod] = EmailOtpMethod
