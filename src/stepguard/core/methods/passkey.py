"""Passkeys (WebAuthn) as a second factor, over py_webauthn.

py_webauthn performs the WebAuthn Level 3 §7.1/§7.2 checks it knows (client-data type, challenge,
origin, ``rpIdHash``, UP, UV when asked, attestation, signature, BS-without-BE). This module adds
what it leaves to the relying party (security-requirements §1.4): challenge expiry, the
``allowCredentials`` membership and ownership of the credential, ``userHandle``, refusing
``crossOrigin``/``topOrigin``, BE stability, the ``credentialId`` length and re-registration, and
the sign-counter policy. User verification is always required: without UV a passkey is a single
factor (NIST SP 800-63B 3.1.7.2) and cannot stand in for MFA.

Sans-IO: ``begin*`` returns JSON-ready options and a state for the server to store; ``complete*``
takes that state back with the browser's ``PublicKeyCredential.toJSON()``. The server consumes
the state once, persists what ``complete*`` returns, and keeps credential ids unique across users.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import (
    parse_authentication_credential_json,
    parse_registration_credential_json,
)
from webauthn.helpers.cose import COSEAlgorithmIdentifier
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.options_to_json_dict import options_to_json_dict
from webauthn.helpers.structs import (
    AttestationConveyancePreference,
    AuthenticatorSelectionCriteria,
    CredentialDeviceType,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from stepguard.core.assurance import MethodName
from stepguard.core.errors import (
    CodeExpired,
    Conflict,
    InvalidSignature,
    NoMethodsAvailable,
    ValidationFailed,
)
from stepguard.core.methods.base import VerificationMethod, VerifiedFactor, verified

__all__ = [
    "CHALLENGE_BYTES",
    "MAX_CEREMONY_MS",
    "AuthenticationState",
    "PasskeyMethod",
    "RegisteredPasskey",
    "RegistrationState",
    "StoredPasskey",
]

#: WebAuthn §13.4.3 asks for >= 16 random bytes; we use 32.
CHALLENGE_BYTES = 32
#: A challenge never outlives 5 minutes (WebAuthn §15.1 recommends 5-10 min ceremonies).
MAX_CEREMONY_MS = 300_000
DEFAULT_CEREMONY_MS = 120_000
#: WebAuthn §7.1 step 25: credential ids longer than 1023 bytes are refused.
MAX_CREDENTIAL_ID_BYTES = 1023
#: Ed25519, ES256, RS256: what authenticators and py_webauthn support (§7.1 step 20 allowlist).
SUPPORTED_ALGORITHMS = (
    COSEAlgorithmIdentifier.EDDSA,
    COSEAlgorithmIdentifier.ECDSA_SHA_256,
    COSEAlgorithmIdentifier.RSASSA_PKCS1_v1_5_SHA_256,
)

Credential = Mapping[str, Any] | str


@dataclass(frozen=True, slots=True)
class RegistrationState:
    """What the server keeps between ``begin_registration`` and ``complete_registration``."""

    challenge: bytes
    expires_at: float
    user_id: bytes
    exclude_credential_ids: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class RegisteredPasskey:
    """The credential record to store (WebAuthn §7.1 step 27)."""

    credential_id: bytes
    #: COSE_Key bytes, as py_webauthn expects them back at authentication.
    public_key: bytes
    sign_count: int
    transports: tuple[str, ...]
    backup_eligible: bool
    backup_state: bool
    aaguid: str
    uv_initialized: bool


@dataclass(frozen=True, slots=True)
class AuthenticationState:
    """What the server keeps between ``begin`` and ``complete``."""

    challenge: bytes
    expires_at: float
    allow_credential_ids: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class StoredPasskey:
    """The stored credential record the assertion is checked against."""

    credential_id: bytes
    public_key: bytes
    sign_count: int
    backup_eligible: bool
    #: The user handle given at registration; a returned ``userHandle`` must equal it (§7.2 step 6).
    user_handle: bytes | None = None


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _challenge(challenge: bytes | None) -> bytes:
    if challenge is None:
        return secrets.token_bytes(CHALLENGE_BYTES)
    if len(challenge) < 16:
        raise ValidationFailed("a WebAuthn challenge needs at least 16 bytes")
    return challenge


def _ceremony_seconds(timeout_ms: int) -> float:
    if timeout_ms <= 0:
        raise ValidationFailed("timeout_ms must be positive")
    return min(timeout_ms, MAX_CEREMONY_MS) / 1000


def _origins(expected_origin: str | Sequence[str]) -> str | list[str]:
    return expected_origin if isinstance(expected_origin, str) else list(expected_origin)


def _check_not_embedded(client_data_json: bytes) -> None:
    """Refuse a ceremony run inside a cross-origin iframe (§7.1 step 10, §7.2 step 13).

    py_webauthn parses ``crossOrigin`` but does not enforce it, and ignores ``topOrigin``.
    """
    try:
        client_data = json.loads(client_data_json)
    except (ValueError, UnicodeDecodeError):
        raise ValidationFailed("clientDataJSON is not JSON") from None
    if not isinstance(client_data, dict):
        raise ValidationFailed("clientDataJSON is not a JSON object")
    if client_data.get("crossOrigin") is True or "topOrigin" in client_data:
        raise InvalidSignature("cross-origin WebAuthn ceremonies are not allowed")


class PasskeyMethod:
    """WebAuthn passkeys: registration and step-up assertions, user verification required."""

    name: ClassVar[MethodName] = MethodName.PASSKEY

    def begin_registration(
        self,
        *,
        rp_id: str,
        rp_name: str,
        user_id: bytes,
        user_name: str,
        exclude_credential_ids: Iterable[bytes],
        now: float,
        challenge: bytes | None = None,
        timeout_ms: int = DEFAULT_CEREMONY_MS,
    ) -> tuple[dict[str, Any], RegistrationState]:
        """``PublicKeyCredentialCreationOptions`` as JSON, and the state to keep.

        Attestation ``none``, resident key preferred, user verification required; the user's
        existing credentials go in ``excludeCredentials`` so one authenticator is not registered
        twice. The challenge is 32 random bytes and expires after ``timeout_ms`` (<= 5 min).
        """
        excluded = tuple(exclude_credential_ids)
        chal = _challenge(challenge)
        seconds = _ceremony_seconds(timeout_ms)
        try:
            options = generate_registration_options(
                rp_id=rp_id,
                rp_name=rp_name,
                user_id=user_id,
                user_name=user_name,
                challenge=chal,
                timeout=int(seconds * 1000),
                attestation=AttestationConveyancePreference.NONE,
                authenticator_selection=AuthenticatorSelectionCriteria(
                    resident_key=ResidentKeyRequirement.PREFERRED,
                    user_verification=UserVerificationRequirement.REQUIRED,
                ),
                exclude_credentials=[PublicKeyCredentialDescriptor(id=c) for c in excluded],
                supported_pub_key_algs=list(SUPPORTED_ALGORITHMS),
            )
        except ValueError as exc:
            raise ValidationFailed(f"invalid registration options: {exc}") from None
        state = RegistrationState(
            challenge=chal,
            expires_at=now + seconds,
            user_id=user_id,
            exclude_credential_ids=excluded,
        )
        return options_to_json_dict(options), state

    def complete_registration(
        self,
        state: RegistrationState,
        credential: Credential,
        *,
        now: float,
        expected_origin: str | Sequence[str],
        expected_rp_id: str,
    ) -> RegisteredPasskey:
        """Verify ``navigator.credentials.create()``'s JSON and return the record to store.

        Raises ``CodeExpired``, ``ValidationFailed`` (malformed), :class:`InvalidSignature` (any
        §7.1 check, including UV), or ``Conflict`` (the credential is already registered).
        """
        if now > state.expires_at:
            raise CodeExpired("the passkey registration challenge has expired")
        try:
            parsed = parse_registration_credential_json(
                dict(credential) if isinstance(credential, Mapping) else credential
            )
        except (WebAuthnException, ValueError, TypeError) as exc:
            raise ValidationFailed(f"malformed passkey registration: {exc}") from None
        _check_not_embedded(parsed.response.client_data_json)
        try:
            result = verify_registration_response(
                credential=parsed,
                expected_challenge=state.challenge,
                expected_rp_id=expected_rp_id,
                expected_origin=_origins(expected_origin),
                require_user_presence=True,
                require_user_verification=True,
                supported_pub_key_algs=list(SUPPORTED_ALGORITHMS),
            )
        except (WebAuthnException, ValueError, TypeError, KeyError) as exc:
            raise InvalidSignature(f"passkey registration rejected: {exc}") from None
        if len(result.credential_id) > MAX_CREDENTIAL_ID_BYTES:
            raise ValidationFailed("the credential id is longer than 1023 bytes")
        if result.credential_id in state.exclude_credential_ids:
            raise Conflict("this passkey is already registered")
        transports = tuple(t.value for t in parsed.response.transports or ())
        return RegisteredPasskey(
            credential_id=result.credential_id,
            public_key=result.credential_public_key,
            sign_count=result.sign_count,
            transports=transports,
            backup_eligible=result.credential_device_type == CredentialDeviceType.MULTI_DEVICE,
            backup_state=result.credential_backed_up,
            aaguid=result.aaguid,
            uv_initialized=result.user_verified,
        )

    def begin(
        self,
        *,
        rp_id: str,
        allow_credential_ids: Iterable[bytes],
        now: float,
        challenge: bytes | None = None,
        timeout_ms: int = DEFAULT_CEREMONY_MS,
    ) -> tuple[dict[str, Any], AuthenticationState]:
        """``PublicKeyCredentialRequestOptions`` as JSON for the user's passkeys, and the state.

        Step-up knows the user, so ``allowCredentials`` lists their credentials (never empty);
        user verification is required.
        """
        allowed = tuple(allow_credential_ids)
        if not allowed:
            raise NoMethodsAvailable("the user has no passkey")
        chal = _challenge(challenge)
        seconds = _ceremony_seconds(timeout_ms)
        try:
            options = generate_authentication_options(
                rp_id=rp_id,
                challenge=chal,
                timeout=int(seconds * 1000),
                allow_credentials=[PublicKeyCredentialDescriptor(id=c) for c in allowed],
                user_verification=UserVerificationRequirement.REQUIRED,
            )
        except ValueError as exc:
            raise ValidationFailed(f"invalid authentication options: {exc}") from None
        state = AuthenticationState(
            challenge=chal, expires_at=now + seconds, allow_credential_ids=allowed
        )
        return options_to_json_dict(options), state

    def complete(
        self,
        state: AuthenticationState,
        credential: Credential,
        *,
        now: float,
        stored: StoredPasskey,
        expected_origin: str | Sequence[str],
        expected_rp_id: str,
    ) -> VerifiedFactor:
        """Verify ``navigator.credentials.get()``'s JSON against ``stored``.

        ``details`` carries the new ``sign_count`` and ``backup_state`` to persist. Raises
        ``CodeExpired``, ``ValidationFailed`` (malformed) or :class:`InvalidSignature` (every
        §7.2 check, "sign counter regression" when the counter did not grow).
        """
        if now > state.expires_at:
            raise CodeExpired("the passkey challenge has expired")
        try:
            parsed = parse_authentication_credential_json(
                dict(credential) if isinstance(credential, Mapping) else credential
            )
        except (WebAuthnException, ValueError, TypeError) as exc:
            raise ValidationFailed(f"malformed passkey assertion: {exc}") from None
        if parsed.raw_id not in state.allow_credential_ids:
            raise InvalidSignature("this passkey was not offered for this challenge")
        if parsed.raw_id != stored.credential_id:
            raise InvalidSignature("the assertion is for another passkey")
        handle = parsed.response.user_handle
        if handle and stored.user_handle is not None and handle != stored.user_handle:
            raise InvalidSignature("the passkey belongs to another user")
        _check_not_embedded(parsed.response.client_data_json)
        try:
            # The counter is checked below, after the signature, so a clone signal is only ever
            # raised for a genuine signature (py_webauthn would test it first).
            result = verify_authentication_response(
                credential=parsed,
                expected_challenge=state.challenge,
                expected_rp_id=expected_rp_id,
                expected_origin=_origins(expected_origin),
                credential_public_key=stored.public_key,
                credential_current_sign_count=0,
                require_user_verification=True,
            )
        except (WebAuthnException, ValueError, TypeError, KeyError) as exc:
            raise InvalidSignature(f"passkey assertion rejected: {exc}") from None
        if not result.user_verified:
            raise InvalidSignature("user verification is required")
        backup_eligible = result.credential_device_type == CredentialDeviceType.MULTI_DEVICE
        if backup_eligible != stored.backup_eligible:
            # BE is fixed at creation (§6.1.3); a change means another authenticator.
            raise InvalidSignature("the passkey's backup eligibility changed")
        new_count = result.new_sign_count
        if (new_count or stored.sign_count) and new_count <= stored.sign_count:
            # §6.1.1: a counter that does not grow signals a cloned authenticator.
            raise InvalidSignature("sign counter regression")
        return verified(
            self.name,
            now=now,
            credential_id=_b64url(parsed.raw_id),
            details={"sign_count": new_count, "backup_state": result.credential_backed_up},
        )


_: type[VerificationMethod] = PasskeyMethod
