"""SMS one-time codes: :class:`~stepguard.core.methods.otp.OtpMethod` on the SMS channel.

Restricted by NIST 800-63B §3.2.9, hence opt-in per environment (see
:data:`stepguard.core.policy.DEFAULT_ENABLED_METHODS`); a re-authentication factor only.
"""

from __future__ import annotations

from typing import ClassVar

from stepguard.core.assurance import MethodName
from stepguard.core.methods.base import VerificationMethod
from stepguard.core.methods.otp import OtpMethod

__all__ = ["SmsOtpMethod"]


class SmsOtpMethod(OtpMethod):
    """A code sent by SMS to a verified phone number."""

    name: ClassVar[MethodName] = MethodName.SMS_OTP


_: type[VerificationMethod] = SmsOtpMethod
