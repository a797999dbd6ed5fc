"""Signing keys for elevated tokens, and encryption of secrets at rest.

Keys are generated and used through ``cryptography``/``joserfc``; nothing here is hand-written
crypto. Private keys and other secrets (TOTP seeds) are sealed with AES-256-GCM under a key derived
(HKDF-SHA256) from the server's secret, with a purpose label as associated data so a sealed value
cannot be moved to another column.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from joserfc.jwk import ECKey, OKPKey

from stepguard.core.errors import StepGuardError

__all__ = [
    "JwsAlgorithm",
    "KeyMaterial",
    "SecretBox",
    "SecretKeyError",
    "generate_key",
    "load_private_key",
    "new_kid",
]

AnyKey = OKPKey | ECKey


class SecretKeyError(StepGuardError):
    code = "secret_key_error"
    status = 500
    description = "A sealed secret could not be opened with the configured secret key."


class JwsAlgorithm(StrEnum):
    EDDSA = "EdDSA"
    ES256 = "ES256"


@dataclass(frozen=True, slots=True)
class KeyMaterial:
    kid: str
    alg: JwsAlgorithm
    private_pem: bytes

    def private_key(self) -> AnyKey:
        return load_private_key(self.alg, self.private_pem, self.kid)

    def public_jwk(self) -> dict[str, Any]:
        jwk: dict[str, Any] = self.private_key().as_dict(private=False)
        jwk.update({"kid": self.kid, "alg": self.alg.value, "use": "sig"})
        return jwk


def new_kid() -> str:
    return secrets.token_urlsafe(12)


def generate_key(alg: JwsAlgorithm = JwsAlgorithm.EDDSA, *, kid: str | None = None) -> KeyMaterial:
    """A fresh signing key for ``alg``."""
    kid = kid or new_kid()
    key: AnyKey
    if alg is JwsAlgorithm.EDDSA:
        key = OKPKey.generate_key("Ed25519", parameters={"kid": kid})
    else:
        key = ECKey.generate_key("P-256", parameters={"kid": kid})
    pem = key.as_pem(private=True)
    return KeyMaterial(kid=kid, alg=alg, private_pem=pem)


def load_private_key(alg: JwsAlgorithm, pem: bytes, kid: str) -> AnyKey:
    if alg is JwsAlgorithm.EDDSA:
        return OKPKey.import_key(pem, parameters={"kid": kid})
    return ECKey.import_key(pem, parameters={"kid": kid})


class SecretBox:
    """Seals and opens secrets at rest with a key derived from the server secret."""

    VERSION = b"v1"

    def __init__(self, master_secret: bytes) -> None:
        if len(master_secret) < 32:
            raise ValueError("the server secret must be at least 32 bytes")
        self._master = master_secret
        self._mac_keys: dict[bytes, bytes] = {}
        self._aead = AESGCM(self.derive(b"stepguard/seal/v1"))

    def derive(self, label: bytes, length: int = 32) -> bytes:
        """A sub-key for one purpose (HKDF-SHA256 with ``label`` as info)."""
        return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=label).derive(
            self._master
        )

    def seal(self, plaintext: bytes, *, purpose: str) -> str:
        nonce = os.urandom(12)
        ct = self._aead.encrypt(nonce, plaintext, purpose.encode())
        return (self.VERSION + b"." + base64.urlsafe_b64encode(nonce + ct)).decode()

    def open(self, sealed: str, *, purpose: str) -> bytes:
        try:
            version, _, body = sealed.encode().partition(b".")
            if version != self.VERSION:
                raise SecretKeyError("unknown sealed-secret version")
            raw = base64.urlsafe_b64decode(body)
            return self._aead.decrypt(raw[:12], raw[12:], purpose.encode())
        except (InvalidTag, ValueError) as exc:
            raise SecretKeyError() from exc

    def mac(self, label: bytes, message: bytes) -> str:
        """A keyed digest (HMAC-SHA256) for storing codes; compare with :func:`hmac.compare_digest`."""
        key = self._mac_keys.get(label)
        if key is None:
            # HKDF costs ~20 us; derive each purpose's key once.
            key = self._mac_keys[label] = self.derive(b"stepguard/mac/" + label)
        return hmac.new(key, message, hashlib.sha256).hexdigest()
