"""A software WebAuthn authenticator plus client: passkeys from Python, without a browser.

``SoftwareAuthenticator(rp_id, origin)`` plays the browser and a platform authenticator:
``create(options)`` answers ``PublicKeyCredentialCreationOptions`` JSON with a real ``none``
attestation, ``get(options)`` answers ``PublicKeyCredentialRequestOptions`` JSON with a real
assertion. Both return the shape of the browser's ``PublicKeyCredential.toJSON()``. Keys are
EC P-256 (COSE alg -7) from ``cryptography``; authenticator data, COSE keys and the attestation
object are built byte for byte per WebAuthn Level 3 §6.1, §6.5 and §8.7.

It implements :class:`stepguard.client.Authenticator`, so ``AsyncClient(authenticator=...)`` can
register passkeys and step up with them. Every knob a test needs to build a *mutant* is a keyword of ``create``/``get`` (wrong origin,
wrong RP id hash, UP or UV off, another challenge, a chosen counter) so the mutant is still
correctly signed and only the check under test can catch it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
from dataclasses import dataclass
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

__all__ = ["SoftwareAuthenticator", "b64url", "b64url_decode"]

FLAG_UP = 0x01
FLAG_UV = 0x04
FLAG_BE = 0x08
FLAG_BS = 0x10
FLAG_AT = 0x40
COSE_ALG_ES256 = -7


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _options(options: dict[str, Any] | str) -> dict[str, Any]:
    return json.loads(options) if isinstance(options, str) else dict(options)


@dataclass
class _Credential:
    credential_id: bytes
    private_key: ec.EllipticCurvePrivateKey
    rp_id: str
    user_handle: bytes
    sign_count: int = 0


class SoftwareAuthenticator:
    """A resident-key, user-verifying platform authenticator behind a well-behaved client."""

    def __init__(
        self,
        rp_id: str,
        origin: str,
        *,
        aaguid: bytes = bytes(16),
        backup_eligible: bool = True,
        backup_state: bool = True,
        counter_step: int = 1,
    ) -> None:
        self.rp_id = rp_id
        self.origin = origin
        self.aaguid = aaguid
        self.backup_eligible = backup_eligible
        self.backup_state = backup_state
        #: 0 models authenticators (most synced passkeys) that never count.
        self.counter_step = counter_step
        self.credentials: dict[bytes, _Credential] = {}

    # -- helpers ---------------------------------------------------------------------------
    def _flags(self, *, user_present: bool, user_verified: bool, attested: bool) -> int:
        flags = 0
        if user_present:
            flags |= FLAG_UP
        if user_verified:
            flags |= FLAG_UV
        if self.backup_eligible:
            flags |= FLAG_BE
        if self.backup_state:
            flags |= FLAG_BS
        if attested:
            flags |= FLAG_AT
        return flags

    @staticmethod
    def _cose_key(key: ec.EllipticCurvePrivateKey) -> bytes:
        numbers = key.public_key().public_numbers()
        return cbor2.dumps(
            {
                1: 2,  # kty: EC2
                3: COSE_ALG_ES256,
                -1: 1,  # crv: P-256
                -2: numbers.x.to_bytes(32, "big"),
                -3: numbers.y.to_bytes(32, "big"),
            }
        )

    def _client_data(
        self, typ: str, challenge: str, origin: str | None, extra: dict[str, Any] | None
    ) -> bytes:
        data: dict[str, Any] = {
            "type": typ,
            "challenge": challenge,
            "origin": origin or self.origin,
            "crossOrigin": False,
        }
        data.update(extra or {})
        return json.dumps(data, separators=(",", ":")).encode()

    def _rp_id_hash(self, rp_id: str | None, options_rp_id: str | None) -> bytes:
        return hashlib.sha256((rp_id or options_rp_id or self.rp_id).encode()).digest()

    # -- ceremonies ------------------------------------------------------------------------
    def create(
        self,
        options: dict[str, Any] | str,
        *,
        origin: str | None = None,
        rp_id: str | None = None,
        user_present: bool = True,
        user_verified: bool = True,
        challenge: str | None = None,
        client_data_extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Answer ``navigator.credentials.create()``: a new ES256 key, ``none`` attestation."""
        opts = _options(options)
        if not any(p.get("alg") == COSE_ALG_ES256 for p in opts.get("pubKeyCredParams", [])):
            raise ValueError("the RP does not accept ES256")
        rp = opts.get("rp", {})
        excluded = {b64url_decode(c["id"]) for c in opts.get("excludeCredentials", [])}
        if excluded & set(self.credentials):
            raise ValueError("InvalidStateError: a credential in excludeCredentials is here")
        key = ec.generate_private_key(ec.SECP256R1())
        cred_id = os.urandom(16)
        cred = _Credential(
            credential_id=cred_id,
            private_key=key,
            rp_id=rp.get("id", self.rp_id),
            user_handle=b64url_decode(opts["user"]["id"]),
        )
        self.credentials[cred_id] = cred
        attested = self.aaguid + struct.pack(">H", len(cred_id)) + cred_id + self._cose_key(key)
        auth_data = (
            self._rp_id_hash(rp_id, rp.get("id"))
            + bytes(
                [self._flags(user_present=user_present, user_verified=user_verified, attested=True)]
            )
            + struct.pack(">I", cred.sign_count)
            + attested
        )
        attestation_object = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        client_data = self._client_data(
            "webauthn.create", challenge or opts["challenge"], origin, client_data_extra
        )
        public_der = key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        return {
            "id": b64url(cred_id),
            "rawId": b64url(cred_id),
            "type": "public-key",
            "authenticatorAttachment": "platform",
            "clientExtensionResults": {},
            "response": {
                "clientDataJSON": b64url(client_data),
                "attestationObject": b64url(attestation_object),
                "authenticatorData": b64url(auth_data),
                "transports": ["hybrid", "internal"],
                "publicKeyAlgorithm": COSE_ALG_ES256,
                "publicKey": b64url(public_der),
            },
        }

    def get(
        self,
        options: dict[str, Any] | str,
        *,
        origin: str | None = None,
        rp_id: str | None = None,
        user_present: bool = True,
        user_verified: bool = True,
        challenge: str | None = None,
        sign_count: int | None = None,
        credential_id: bytes | None = None,
        client_data_extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Answer ``navigator.credentials.get()`` with the first allowed credential held here.

        ``credential_id`` forces a credential (even one the RP did not allow), ``sign_count``
        forces the counter value signed into the authenticator data.
        """
        opts = _options(options)
        rp = opts.get("rpId") or self.rp_id
        if credential_id is None:
            allowed = [b64url_decode(c["id"]) for c in opts.get("allowCredentials", [])]
            candidates = (
                [c for c in allowed if c in self.credentials]
                if allowed
                else [c.credential_id for c in self.credentials.values() if c.rp_id == rp]
            )
            if not candidates:
                raise ValueError("NotAllowedError: no matching credential")
            credential_id = candidates[0]
        cred = self.credentials[credential_id]
        if sign_count is None:
            cred.sign_count += self.counter_step
            count = cred.sign_count
        else:
            count = sign_count
        auth_data = (
            self._rp_id_hash(rp_id, rp)
            + bytes(
                [
                    self._flags(
                        user_present=user_present, user_verified=user_verified, attested=False
                    )
                ]
            )
            + struct.pack(">I", count)
        )
        client_data = self._client_data(
            "webauthn.get", challenge or opts["challenge"], origin, client_data_extra
        )
        signature = cred.private_key.sign(
            auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256())
        )
        return {
            "id": b64url(cred.credential_id),
            "rawId": b64url(cred.credential_id),
            "type": "public-key",
            "authenticatorAttachment": "platform",
            "clientExtensionResults": {},
            "response": {
                "clientDataJSON": b64url(client_data),
                "authenticatorData": b64url(auth_data),
                "signature": b64url(signature),
                "userHandle": b64url(cred.user_handle),
            },
        }
