"""Plain data the SDK returns, and the effects its sans-IO flows yield to a driver.

A flow (see :mod:`._flows`) is a generator. It yields one of:

* an :class:`httpx.Request`, answered with the :class:`httpx.Response` (transport errors are
  thrown into the flow);
* a :class:`PromptNeeded`, answered by the configured :class:`~._prompt.Prompter` with a string,
  or ``None`` when the user closed the prompt;
* a :class:`Call` of an app-supplied object (wallet signer, passkey authenticator), answered with
  its result (awaited by the async driver when it is awaitable);
* an :class:`Exclusive` sub-flow, which the driver runs while holding a lock for its key, so that
  concurrent requests hitting the same challenge share one prompt.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

import httpx

__all__ = [
    "CONTINUE_IN_BROWSER",
    "Call",
    "Credential",
    "Effect",
    "Exclusive",
    "Flow",
    "MfaDevice",
    "OtpVerification",
    "PromptKind",
    "PromptNeeded",
    "RESEND_CODE",
    "RecoveryCodes",
    "Session",
    "StepUpCheck",
    "StepUpState",
    "TotpDevice",
]

T = TypeVar("T")


def _str(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    return value if isinstance(value, str) else None


def _float(data: Mapping[str, Any], key: str) -> float | None:
    value = data.get(key)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


@dataclass(frozen=True, slots=True)
class Credential:
    """A credential of the user (``format``: email, phone_number, blockchain, totp, passkey,
    recovery_code)."""

    id: str
    format: str
    type: str | None = None
    alias: str | None = None
    verified: bool = True
    default: bool = False

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Credential:
        return cls(
            id=str(data.get("id", "")),
            format=str(data.get("format", "")),
            type=_str(data, "type"),
            alias=_str(data, "alias"),
            verified=data.get("verified", True) is not False,
            default=data.get("default") is True,
        )

    @property
    def is_mfa(self) -> bool:
        return self.format in ("totp", "passkey", "recovery_code")


@dataclass(frozen=True, slots=True)
class StepUpCheck:
    """The answer of ``check_step_up_auth``: empty ``credentials`` when not required."""

    is_required: bool
    credentials: tuple[Credential, ...] = ()
    default_credential_id: str | None = None


@dataclass(frozen=True, slots=True)
class OtpVerification:
    """A pending one-time-code verification (the code went to ``destination``)."""

    verification_id: str
    channel: str | None = None
    destination: str | None = None
    expires_at: float | None = None
    resend_after: float | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> OtpVerification:
        return cls(
            verification_id=str(data.get("verification_id", "")),
            channel=_str(data, "channel"),
            destination=_str(data, "destination"),
            expires_at=_float(data, "expires_at"),
            resend_after=_float(data, "resend_after"),
        )


@dataclass(frozen=True, slots=True)
class TotpDevice:
    """A new TOTP device: show ``uri`` (or ``qr_svg``) once; it is unverified until a code."""

    id: str
    secret: str
    uri: str
    qr_svg: str | None = None
    verified: bool = False


@dataclass(frozen=True, slots=True)
class MfaDevice:
    """An MFA device (``type``: totp or passkey)."""

    id: str
    type: str
    alias: str | None = None
    verified: bool = False
    default: bool = False
    created_at: float | None = None
    verified_at: float | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MfaDevice:
        return cls(
            id=str(data.get("id", "")),
            type=str(data.get("type") or data.get("format") or ""),
            alias=_str(data, "alias"),
            verified=data.get("verified") is True,
            default=data.get("default") is True,
            created_at=_float(data, "created_at"),
            verified_at=_float(data, "verified_at"),
        )


@dataclass(frozen=True, slots=True)
class RecoveryCodes:
    """Recovery codes: ``codes`` only right after generation (shown once), and how many remain."""

    codes: tuple[str, ...]
    remaining: int


@dataclass(frozen=True, slots=True)
class Session:
    """A signed-in session (``session_token`` only when this client created it)."""

    session_id: str
    user_id: str
    expires_at: float | None = None
    environment_id: str | None = None
    session_token: str | None = field(default=None, repr=False)


@dataclass(slots=True)
class StepUpState:
    """The step-up module's flow state (what ``reset_state`` clears; never the tokens)."""

    otp_verification: OtpVerification | None = None
    error: str | None = None
    is_loading: bool = False
    captcha_required: bool = False


class PromptKind(StrEnum):
    """What a prompt asks the user for."""

    CHOOSE_METHOD = "choose_method"  # answer: the id of one of ``options``
    OTP_CODE = "otp_code"  # the code sent by email or SMS
    TOTP_CODE = "totp_code"  # the authenticator app's code
    RECOVERY_CODE = "recovery_code"  # one of the user's recovery codes
    SIGN_IN_CODE = "sign_in_code"  # the sign-in code sent by email


@dataclass(frozen=True, slots=True)
class PromptNeeded:
    """A question for the user. The prompter answers a string, or ``None`` to cancel."""

    kind: PromptKind
    scopes: tuple[str, ...] = ()
    options: tuple[Credential, ...] = ()
    default: str | None = None
    destination: str | None = None
    #: The previous attempt's error on a retry (e.g. "The code is wrong.").
    error: str | None = None
    attempts_remaining: int | None = None
    #: One-time codes: Unix times when the code expires and when a new one may be sent. A prompt
    #: with ``resend_after`` accepts :data:`RESEND_CODE` as its answer (send a new code, ask again).
    expires_at: float | None = None
    resend_after: float | None = None


#: The answer that asks for a new one-time code instead of entering one (never a valid code).
RESEND_CODE = "\x00resend"

#: The answer to a method choice that hands the whole step-up to the browser instead (offered by
#: a prompter whose ``handoff`` is a :class:`~stepguard.client.BrowserHandoff`; never an id).
CONTINUE_IN_BROWSER = "\x00browser"


@dataclass(frozen=True, slots=True)
class Call:
    """Call an app-supplied object (signer, authenticator); the async driver awaits awaitables."""

    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()


@dataclass(frozen=True, slots=True)
class Exclusive:
    """Run ``flow()`` holding the driver's lock for ``key`` (one prompt per challenged scope)."""

    key: str
    flow: Callable[[], Generator[Effect, Any, Any]]


Effect = httpx.Request | PromptNeeded | Call | Exclusive
Flow = Generator[Effect, Any, T]
