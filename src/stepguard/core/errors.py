"""One error tree with stable machine codes.

Every security decision that fails raises a subclass of :class:`StepGuardError`. The class carries
its ``code`` (stable, part of the public contract), the HTTP ``status`` the server answers with and a
human ``description``. The server maps an error straight to its JSON body; the guard maps the
``ElevatedTokenError`` branch to an RFC 9470 ``WWW-Authenticate`` challenge.

    StepGuardError
    ├── BadRequest (400: bad_request)
    │   ├── InvalidJson (400: invalid_json)
    │   ├── PayloadTooLarge (413: payload_too_large)
    │   └── ValidationFailed (422: validation_error)
    │       └── InvalidScopes (422: invalid_scopes)
    ├── Unauthorized (401: unauthorized)
    │   ├── InvalidApiKey (401: invalid_api_key)
    │   └── InvalidSession (401: invalid_session)
    ├── Forbidden (403: forbidden)
    │   └── LastCredential (409: last_credential)
    ├── NotFound (404: not_found)
    ├── Conflict (409: conflict)
    ├── VerificationFailed (400: verification_failed)
    │   ├── InvalidCode (400: invalid_code)
    │   ├── CodeExpired (400: code_expired)
    │   ├── CodeUsed (400: code_used)
    │   ├── ChallengeNotFound (400: challenge_not_found)
    │   ├── InvalidSignature (400: invalid_signature)
    │   ├── InvalidExternalAuth (400: invalid_external_auth)
    │   ├── MethodNotAllowed (403: method_not_allowed)
    │   ├── MfaRequired (403: mfa_required)
    │   └── NoMethodsAvailable (400: no_methods_available)
    ├── RateLimited (429: rate_limited)
    ├── DeliveryFailed (502: delivery_failed)
    ├── InvalidConfiguration (500: invalid_configuration)     operator errors (CLI, start-up)
    ├── DatabaseUnavailable (503: database_unavailable)
    └── ElevatedTokenError (401)       the guard's answers (and the server's enrolment gate)
        ├── ElevatedTokenRequired (elevated_token_required)
        ├── ElevatedTokenInvalid (elevated_token_invalid)
        ├── ElevatedTokenExpired (elevated_token_expired)
        ├── ElevatedTokenUsed (elevated_token_used)
        ├── ScopeNotGranted (scope_not_granted)
        ├── SubjectMismatch (subject_mismatch)
        └── AuthTooOld (elevated_token_expired, with max_age)
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "AuthTooOld",
    "BadRequest",
    "ChallengeNotFound",
    "CodeExpired",
    "CodeUsed",
    "Conflict",
    "DatabaseUnavailable",
    "DeliveryFailed",
    "ElevatedTokenError",
    "ElevatedTokenExpired",
    "ElevatedTokenInvalid",
    "ElevatedTokenRequired",
    "ElevatedTokenUsed",
    "Forbidden",
    "InvalidApiKey",
    "InvalidCode",
    "InvalidConfiguration",
    "InvalidExternalAuth",
    "InvalidJson",
    "InvalidScopes",
    "InvalidSession",
    "InvalidSignature",
    "LastCredential",
    "MethodNotAllowed",
    "MfaRequired",
    "NoMethodsAvailable",
    "NotFound",
    "PayloadTooLarge",
    "RateLimited",
    "ScopeNotGranted",
    "StepGuardError",
    "SubjectMismatch",
    "Unauthorized",
    "ValidationFailed",
    "VerificationFailed",
    "error_for_code",
]


class StepGuardError(Exception):
    """Base of every stepguard error. ``code`` is stable; ``description`` is for humans."""

    code: ClassVar[str] = "error"
    status: ClassVar[int] = 400
    description: ClassVar[str] = "The request failed."

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        self.detail = detail or self.description
        #: Extra machine-readable fields for the error body (never secrets).
        self.extra: dict[str, Any] = extra
        super().__init__(self.detail)

    def to_dict(self) -> dict[str, Any]:
        """The JSON body: ``{"code", "error", ...extra}``."""
        body: dict[str, Any] = {"code": self.code, "error": self.detail}
        body.update(self.extra)
        return body


class BadRequest(StepGuardError):
    code = "bad_request"
    status = 400
    description = "The request is malformed."


class InvalidJson(BadRequest):
    code = "invalid_json"
    status = 400
    description = "The request body is not valid JSON."


class PayloadTooLarge(BadRequest):
    code = "payload_too_large"
    status = 413
    description = "The request body is too large."


class ValidationFailed(BadRequest):
    code = "validation_error"
    status = 422
    description = "The request body does not match the expected shape."


class InvalidScopes(ValidationFailed):
    code = "invalid_scopes"
    status = 422
    description = "One or more requested scopes are unknown or not allowed."


class Unauthorized(StepGuardError):
    code = "unauthorized"
    status = 401
    description = "Authentication is required."


class InvalidApiKey(Unauthorized):
    code = "invalid_api_key"
    description = "The admin API key is missing or wrong."


class InvalidSession(Unauthorized):
    code = "invalid_session"
    description = "The session is missing, expired or revoked."


class Forbidden(StepGuardError):
    code = "forbidden"
    status = 403
    description = "This action is not allowed."


class LastCredential(Forbidden):
    code = "last_credential"
    status = 409
    description = "The last sign-in credential cannot be removed."


class NotFound(StepGuardError):
    code = "not_found"
    status = 404
    description = "The resource does not exist."


class Conflict(StepGuardError):
    code = "conflict"
    status = 409
    description = "The resource already exists or is in a conflicting state."


class VerificationFailed(StepGuardError):
    code = "verification_failed"
    status = 400
    description = "Verification failed."


class InvalidCode(VerificationFailed):
    code = "invalid_code"
    description = "The code is wrong."


class CodeExpired(VerificationFailed):
    code = "code_expired"
    description = "The code or challenge has expired."


class CodeUsed(VerificationFailed):
    code = "code_used"
    description = "The code or challenge was already used."


class ChallengeNotFound(VerificationFailed):
    code = "challenge_not_found"
    description = "No pending verification for this request; start one first."


class InvalidSignature(VerificationFailed):
    code = "invalid_signature"
    description = "The signature or assertion does not verify."


class InvalidExternalAuth(VerificationFailed):
    code = "invalid_external_auth"
    description = "The external assertion is not valid."


class MethodNotAllowed(VerificationFailed):
    code = "method_not_allowed"
    status = 403
    description = "This verification method is not allowed for the requested scopes."


class MfaRequired(VerificationFailed):
    code = "mfa_required"
    status = 403
    description = "This user has MFA: step up with a passkey, TOTP or a recovery code."


class NoMethodsAvailable(VerificationFailed):
    code = "no_methods_available"
    description = "The user has no credential that can be used for this verification."


class InvalidConfiguration(StepGuardError):
    """A setting is malformed (raised to the operator, never to an API client)."""

    code = "invalid_configuration"
    status = 500
    description = "The server configuration is invalid."


class DatabaseUnavailable(StepGuardError):
    code = "database_unavailable"
    status = 503
    description = "The database cannot be reached."


class RateLimited(StepGuardError):
    code = "rate_limited"
    status = 429
    description = "Too many attempts; wait before trying again."

    def __init__(self, detail: str | None = None, *, retry_after: float = 0.0, **extra: Any):
        self.retry_after = max(0.0, float(retry_after))
        super().__init__(detail, retry_after=int(self.retry_after + 0.999), **extra)


class DeliveryFailed(StepGuardError):
    code = "delivery_failed"
    status = 502
    description = "The code could not be delivered; try again later."


class ElevatedTokenError(StepGuardError):
    """A missing or insufficient elevated access token, as seen by the guard (RFC 9470)."""

    code = "elevated_token_invalid"
    status = 401
    description = "The elevated access token is not valid."


class ElevatedTokenRequired(ElevatedTokenError):
    code = "elevated_token_required"
    description = "An elevated access token is required."


class ElevatedTokenInvalid(ElevatedTokenError):
    code = "elevated_token_invalid"
    description = "The elevated access token is not valid."


class ElevatedTokenExpired(ElevatedTokenError):
    code = "elevated_token_expired"
    description = "The elevated access token has expired."


class ElevatedTokenUsed(ElevatedTokenError):
    code = "elevated_token_used"
    description = "The single-use elevated access token was already used."


class ScopeNotGranted(ElevatedTokenError):
    code = "scope_not_granted"
    description = "The elevated access token does not grant the required scope."


class SubjectMismatch(ElevatedTokenError):
    code = "subject_mismatch"
    description = "The elevated access token belongs to another user or session."


class AuthTooOld(ElevatedTokenExpired):
    """The user's last authentication is older than the route's ``max_age``."""

    description = "The authentication behind this token is too old for this action."


def _all_subclasses(cls: type[StepGuardError]) -> list[type[StepGuardError]]:
    out: list[type[StepGuardError]] = []
    for sub in cls.__subclasses__():
        out.append(sub)
        out.extend(_all_subclasses(sub))
    return out


def error_for_code(code: str) -> type[StepGuardError]:
    """The most general error class with this ``code`` (for clients mapping a server answer)."""
    candidates: list[type[StepGuardError]] = [StepGuardError, *_all_subclasses(StepGuardError)]
    for cls in candidates:
        if cls.code == code:
            return cls
    return StepGuardError
