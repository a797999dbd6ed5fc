"""The SDK's errors, and the mapping from a server answer to one of them.

Every class is a :class:`stepguard.core.errors.StepGuardError`, so ``code`` is a stable machine
code. A verification the server refused raises the :class:`VerificationError` subclass named by
the server's ``code`` (the codes are the ones of :mod:`stepguard.core.errors`); a missing elevation
raises :class:`StepUpRequired`; a prompt the user closed raises :class:`StepUpCancelled`.

    StepGuardError (stepguard.core.errors)
    └── ClientError
        ├── StepUpRequired              a step-up challenge the SDK could not answer by itself
        ├── StepUpCancelled             the user closed a prompt
        ├── PrompterMissing             a prompt was needed but no prompter is configured
        └── ApiError                    any other error answer (``server_code``, ``http_status``)
            ├── SessionInvalid          (invalid_session) the session is missing, expired or revoked
            └── VerificationError       a verification failed
                ├── InvalidCode         (invalid_code; ``attempts_remaining``)
                ├── CodeExpired         (code_expired)
                ├── CodeUsed            (code_used)
                ├── ChallengeNotFound   (challenge_not_found)
                ├── InvalidSignature    (invalid_signature)
                ├── InvalidExternalAuth (invalid_external_auth)
                ├── InvalidScopes       (invalid_scopes)
                ├── MethodNotAllowed    (method_not_allowed)
                ├── MfaRequired         (mfa_required)
                ├── NoMethodsAvailable  (no_methods_available)
                ├── RateLimited         (rate_limited; ``retry_after``)
                └── OtpNotInitiated     (otp_not_initiated) ``verify_otp`` before ``send_otp``
"""

from __future__ import annotations

from typing import Any, ClassVar

import httpx

from stepguard.core import errors as core
from stepguard.core.challenge import parse_challenge

__all__ = [
    "ApiError",
    "ChallengeNotFound",
    "ClientError",
    "CodeExpired",
    "CodeUsed",
    "InvalidCode",
    "InvalidExternalAuth",
    "InvalidScopes",
    "InvalidSignature",
    "MethodNotAllowed",
    "MfaRequired",
    "NoMethodsAvailable",
    "OtpNotInitiated",
    "PrompterMissing",
    "RateLimited",
    "SessionInvalid",
    "StepUpCancelled",
    "StepUpRequired",
    "VerificationError",
    "error_from_response",
]


class ClientError(core.StepGuardError):
    """Base of the SDK's errors."""

    code: ClassVar[str] = "client_error"
    description: ClassVar[str] = "The stepguard client failed."


class StepUpRequired(ClientError):
    """An elevated token for ``scope`` is needed and the SDK could not get one by itself.

    Raised by ``client.http`` (and SDK calls behind the enrolment gate) when no prompter is
    configured, or when the retry after a step-up was challenged again. ``reason`` is the
    challenge's code (``elevated_token_required``, ``elevated_token_expired``, ...).
    """

    code: ClassVar[str] = core.ElevatedTokenRequired.code
    description: ClassVar[str] = "Step-up authentication is required for this action."

    def __init__(
        self,
        scope: str,
        *,
        reason: str | None = None,
        max_age: int | None = None,
        detail: str | None = None,
    ) -> None:
        self.scope = scope
        self.scopes: tuple[str, ...] = tuple(scope.split())
        self.reason = reason or self.code
        self.max_age = max_age
        super().__init__(detail or f"step-up required for {scope!r}", scope=scope)


class StepUpCancelled(ClientError):
    """The user closed a step-up prompt (the prompter answered ``None``)."""

    code: ClassVar[str] = "step_up_cancelled"
    description: ClassVar[str] = "The step-up prompt was closed."


class PrompterMissing(ClientError):
    """A prompt method ran, or a challenge needs answering, with no prompter configured."""

    code: ClassVar[str] = "prompter_missing"
    description: ClassVar[str] = "No prompter is configured: pass prompter= to the client."


class ApiError(ClientError):
    """An error answer from the stepguard server that has no more precise class here."""

    code: ClassVar[str] = "api_error"
    description: ClassVar[str] = "The stepguard server refused the request."

    def __init__(
        self,
        detail: str | None = None,
        *,
        server_code: str | None = None,
        http_status: int | None = None,
        body: dict[str, Any] | None = None,
    ) -> None:
        #: The ``code`` the server sent (equal to ``code`` for every mapped subclass).
        self.server_code = server_code or self.code
        self.http_status = http_status
        self.body: dict[str, Any] = body or {}
        super().__init__(detail)
        self.extra.update((k, v) for k, v in self.body.items() if k not in ("code", "error"))


class SessionInvalid(ApiError):
    code = core.InvalidSession.code
    description = core.InvalidSession.description


class VerificationError(ApiError):
    """A verification the server refused; ``code`` is the server's stable code."""

    code = core.VerificationFailed.code
    description = core.VerificationFailed.description


class InvalidCode(VerificationError):
    code = core.InvalidCode.code
    description = core.InvalidCode.description

    @property
    def attempts_remaining(self) -> int | None:
        value = self.body.get("attempts_remaining")
        return value if isinstance(value, int) and not isinstance(value, bool) else None


class CodeExpired(VerificationError):
    code = core.CodeExpired.code
    description = core.CodeExpired.description


class CodeUsed(VerificationError):
    code = core.CodeUsed.code
    description = core.CodeUsed.description


class ChallengeNotFound(VerificationError):
    code = core.ChallengeNotFound.code
    description = core.ChallengeNotFound.description


class InvalidSignature(VerificationError):
    code = core.InvalidSignature.code
    description = core.InvalidSignature.description


class InvalidExternalAuth(VerificationError):
    code = core.InvalidExternalAuth.code
    description = core.InvalidExternalAuth.description


class InvalidScopes(VerificationError):
    code = core.InvalidScopes.code
    description = core.InvalidScopes.description


class MethodNotAllowed(VerificationError):
    code = core.MethodNotAllowed.code
    description = core.MethodNotAllowed.description


class MfaRequired(VerificationError):
    code = core.MfaRequired.code
    description = core.MfaRequired.description


class NoMethodsAvailable(VerificationError):
    code = core.NoMethodsAvailable.code
    description = core.NoMethodsAvailable.description


class RateLimited(VerificationError):
    code = core.RateLimited.code
    description = core.RateLimited.description

    @property
    def retry_after(self) -> float:
        value = self.body.get("retry_after")
        return float(value) if isinstance(value, int | float) else 0.0


class OtpNotInitiated(VerificationError):
    code = "otp_not_initiated"
    description = "OTP verification has not been initiated. Call send_otp() first."


_BY_CODE: dict[str, type[ApiError]] = {
    cls.code: cls
    for cls in (
        SessionInvalid,
        VerificationError,
        InvalidCode,
        CodeExpired,
        CodeUsed,
        ChallengeNotFound,
        InvalidSignature,
        InvalidExternalAuth,
        InvalidScopes,
        MethodNotAllowed,
        MfaRequired,
        NoMethodsAvailable,
        RateLimited,
    )
}


def _body(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except (ValueError, httpx.ResponseNotRead):
        return {}
    return data if isinstance(data, dict) else {}


def challenge_of(response: httpx.Response) -> StepUpRequired | None:
    """The step-up challenge in a 401 answer (RFC 9470 §3), or None for any other answer."""
    if response.status_code != 401:
        return None
    params = parse_challenge(response.headers.get("www-authenticate"))
    if params is None:
        return None
    body = _body(response)
    scope = params.get("scope") or str(body.get("scope") or "")
    max_age = params.get("max_age")
    code = body.get("code")
    return StepUpRequired(
        scope,
        reason=code if isinstance(code, str) else None,
        max_age=int(max_age) if max_age and max_age.isdigit() else None,
        detail=params.get("error_description"),
    )


def error_from_response(response: httpx.Response) -> ClientError:
    """The error an unsuccessful answer stands for: a challenge, or the class of its ``code``."""
    challenged = challenge_of(response)
    if challenged is not None:
        return challenged
    body = _body(response)
    code = body.get("code")
    code = code if isinstance(code, str) else f"http_{response.status_code}"
    message = body.get("error")
    cls = _BY_CODE.get(code, ApiError)
    return cls(
        message if isinstance(message, str) else None,
        server_code=code,
        http_status=response.status_code,
        body=body,
    )
