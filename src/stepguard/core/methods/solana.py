"""Solana wallet re-authentication: Sign In With Solana (SIWS) over Ed25519 signatures.

The message is the wallet-standard SIWS text (``<domain> wants you to sign in with your Solana
account:`` then the base58 address and the SIWE-style fields; see :mod:`._wallet`). The
signature is Ed25519 over the exact UTF-8 bytes, checked with libsodium through PyNaCl, which
rejects non-canonical S (S >= L), small-order R and small-order or non-canonical public keys.

libsodium's verification is cofactorless and accepts a *mixed-order* public key (a prime-order
point plus a torsion component; ed25519-speccheck case 3). Wallet binding therefore runs
:func:`check_linkable_public_key`, which admits only canonical points of the prime-order
subgroup, and ``begin`` re-checks the bound key so no challenge is ever issued for a weak key.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import ClassVar

import base58
import nacl.bindings
import nacl.exceptions
import nacl.signing

from stepguard.core.assurance import MethodName
from stepguard.core.errors import InvalidSignature, ValidationFailed
from stepguard.core.methods._wallet import (
    DEFAULT_TTL_SECONDS,
    SignInMessage,
    WalletChallenge,
    build_sign_in_message,
    check_response,
    issue_challenge,
    make_format,
    parse_sign_in_message,
)
from stepguard.core.methods.base import VerificationMethod, VerifiedFactor, verified

__all__ = [
    "SIWS_CHAIN_IDS",
    "SIWS_FORMAT",
    "SiwsState",
    "SolanaMethod",
    "build_siws_message",
    "check_linkable_public_key",
    "decode_address",
    "parse_siws_message",
    "verify_ed25519",
]

#: The chain ids the Solana wallet standard defines for ``SolanaSignInInput.chainId``.
SIWS_CHAIN_IDS = frozenset(
    {
        "mainnet",
        "testnet",
        "devnet",
        "localnet",
        "solana:mainnet",
        "solana:testnet",
        "solana:devnet",
    }
)
_BASE58 = r"[1-9A-HJ-NP-Za-km-z]{32,44}"


@lru_cache(maxsize=4096)  # pure-Python base58; bound addresses recur at every begin/complete
def decode_address(address: str) -> bytes:
    """The 32-byte Ed25519 public key behind a base58 Solana address; raises ValidationFailed."""
    if not isinstance(address, str) or re.fullmatch(_BASE58, address) is None:
        raise ValidationFailed("a Solana address is 32 to 44 base58 characters")
    raw = base58.b58decode(address)
    # base58 has several spellings with leading zeros; only the canonical one is an address.
    if len(raw) != 32 or base58.b58encode(raw).decode() != address:
        raise ValidationFailed("a Solana address encodes exactly 32 bytes")
    return bytes(raw)


def _is_address(address: str) -> bool:
    try:
        decode_address(address)
    except ValidationFailed:
        return False
    return True


SIWS_FORMAT = make_format(
    chain="Solana",
    address=_BASE58,
    chain_id=r"(?:solana:)?[a-z]+",
    blank_line_without_statement=False,
    address_case_insensitive=False,
    address_valid=_is_address,
)


def parse_siws_message(text: str) -> SignInMessage:
    """Parse a SIWS message strictly; raises ``MalformedSignInMessage`` (``validation_error``)."""
    return parse_sign_in_message(text, SIWS_FORMAT)


def build_siws_message(msg: SignInMessage) -> str:
    """The SIWS text of ``msg`` (the wallet standard's ``createSignInMessageText`` layout)."""
    return build_sign_in_message(msg, SIWS_FORMAT)


def check_linkable_public_key(public_key: bytes) -> None:
    """Refuse an Ed25519 key that must never be bound to a user (requirement 41).

    The key must be 32 bytes, a canonical encoding (y < p), not of small order and in the
    prime-order subgroup (libsodium's ``crypto_core_ed25519_is_valid_point``). A small-order key
    verifies forged signatures for any message (ed25519-speccheck case 0: S = 0).
    Raises :class:`ValidationFailed`.
    """
    if not isinstance(public_key, bytes) or len(public_key) != 32:
        raise ValidationFailed("an Ed25519 public key is 32 bytes")
    if not nacl.bindings.crypto_core_ed25519_is_valid_point(public_key):
        raise ValidationFailed(
            "the Ed25519 public key is small-order, non-canonical or outside the prime-order group"
        )


def verify_ed25519(public_key: bytes, message: bytes, signature: bytes) -> None:
    """Verify an Ed25519 signature over the exact ``message`` bytes with libsodium.

    Raises :class:`InvalidSignature` for a wrong length, S >= L, a small-order R or key, or a
    signature that does not verify.
    """
    if len(public_key) != 32:
        raise InvalidSignature("an Ed25519 public key is 32 bytes")
    if len(signature) != 64:
        raise InvalidSignature("an Ed25519 signature is 64 bytes")
    try:
        nacl.signing.VerifyKey(public_key).verify(message, signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, ValueError):
        raise InvalidSignature("the Ed25519 signature does not verify") from None


def _decode_signature(signature: str | bytes) -> bytes:
    if isinstance(signature, bytes):
        return signature
    if len(signature) > 100 or re.fullmatch(r"[1-9A-HJ-NP-Za-km-z]+", signature) is None:
        raise InvalidSignature("the signature is not base58")
    return bytes(base58.b58decode(signature))


@dataclass(frozen=True, slots=True)
class SiwsState(WalletChallenge):
    """A pending SIWS challenge: the issued message, its text and when it expires."""


class SolanaMethod:
    """Re-authentication by an external Solana wallet's SIWS signature."""

    name: ClassVar[MethodName] = MethodName.SOLANA

    def begin(
        self,
        *,
        domain: str,
        uri: str,
        address: str,
        now: float,
        chain_id: str = "solana:mainnet",
        nonce: str | None = None,
        statement: str | None = None,
        ttl_seconds: int = DEFAULT_TTL_SECONDS,
        request_id: str | None = None,
        resources: Iterable[str] = (),
    ) -> tuple[str, SiwsState]:
        """The SIWS message for the wallet to sign, and the state to keep until ``complete``.

        ``address`` is the user's bound wallet; its key is re-checked with
        :func:`check_linkable_public_key`. ``chain_id`` is one of :data:`SIWS_CHAIN_IDS`.
        """
        check_linkable_public_key(decode_address(address))
        if chain_id not in SIWS_CHAIN_IDS:
            raise ValidationFailed(f"unknown Solana chain id {chain_id!r}")
        msg, text, expires_at = issue_challenge(
            SIWS_FORMAT,
            domain=domain,
            uri=uri,
            address=address,
            chain_id=chain_id,
            now=now,
            nonce=nonce,
            statement=statement,
            ttl_seconds=ttl_seconds,
            request_id=request_id,
            resources=resources,
        )
        return text, SiwsState(message=msg, text=text, expires_at=expires_at)

    def complete(
        self,
        state: SiwsState,
        message: str | bytes,
        signature: str | bytes,
        *,
        now: float,
        allowed_chain_ids: Iterable[str],
    ) -> VerifiedFactor:
        """Verify the wallet's ``signedMessage`` (text or UTF-8 bytes) and ``signature``.

        ``signature`` is the 64 raw bytes or their base58 text. The signature is checked over
        the exact bytes received, after every field was matched against the issued ``state``.
        Raises ``CodeExpired``, ``MalformedSignInMessage`` or :class:`InvalidSignature`.
        """
        if isinstance(message, bytes):
            try:
                raw, text = message, message.decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidSignature("the signed message is not UTF-8") from None
        else:
            raw, text = message.encode("utf-8"), message
        msg = check_response(state, text, SIWS_FORMAT, now=now, allowed_chain_ids=allowed_chain_ids)
        verify_ed25519(decode_address(msg.address), raw, _decode_signature(signature))
        return verified(
            self.name,
            now=now,
            credential_id=msg.address,
            details={"address": msg.address, "chain_id": msg.chain_id, "nonce": msg.nonce},
        )


_: type[VerificationMethod] = SolanaMethod
