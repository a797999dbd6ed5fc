"""Ethereum wallet re-authentication: Sign-In with Ethereum (EIP-4361) over EIP-191 signatures.

``begin`` issues a SIWE message with a fresh nonce; ``complete`` parses the signed text strictly,
demands it equals the issued message field by field, checks the chain allowlist and time window
(see :mod:`._wallet`), then recovers the signer of the EIP-191 ``personal_sign`` digest with
libsecp256k1 (coincurve) and compares addresses. Recovering through coincurve directly, instead
of eth-account's ``recover_message``, keeps the cost near the libsecp256k1 floor
(performance.md G8/G11). Only externally owned accounts are supported; contract wallets
(ERC-1271, ERC-6492) are not verified here and fail as a wrong signer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import ClassVar

import coincurve
from eth_hash.auto import keccak

from stepguard.core.assurance import MethodName
from stepguard.core.errors import InvalidSignature, ValidationFailed
from stepguard.core.methods._wallet import (
    DEFAULT_TTL_SECONDS,
    SignInMessage,
    WalletChallenge,
    build_sign_in_message,
    check_response,
    check_validity_period,
    issue_challenge,
    make_format,
    parse_sign_in_message,
)
from stepguard.core.methods.base import VerificationMethod, VerifiedFactor, verified

__all__ = [
    "SIWE_FORMAT",
    "EthereumMethod",
    "SiweState",
    "build_siwe_message",
    "is_checksum_address",
    "parse_siwe_message",
    "personal_sign_digest",
    "recover_personal_sign",
    "to_checksum_address",
    "verify_siwe",
]

_HEX_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_HALF_N = _SECP256K1_N // 2


@lru_cache(maxsize=4096)
def _checksum(hex40: str) -> str:
    # Cached: the same bound wallets are checked at every begin and complete (a keccak each).
    lower = hex40.lower()
    digest = keccak(lower.encode()).hex()[:40]
    return "0x" + "".join(
        c.upper() if h in "89abcdef" else c for c, h in zip(lower, digest, strict=True)
    )


def is_checksum_address(address: str) -> bool:
    """True if ``address`` is ``0x`` + 40 hex digits in its exact EIP-55 mixed-case form."""
    return _HEX_ADDRESS.fullmatch(address) is not None and _checksum(address[2:]) == address


def to_checksum_address(address: str | bytes) -> str:
    """The EIP-55 form of a 20-byte address (bytes, or hex text).

    Mixed-case text must already carry a valid checksum (a typo is caught, not silently fixed);
    all-lower or all-upper text is accepted and checksummed. Raises :class:`ValidationFailed`.
    """
    if isinstance(address, bytes):
        if len(address) != 20:
            raise ValidationFailed("an Ethereum address is 20 bytes")
        return _checksum(address.hex())
    if _HEX_ADDRESS.fullmatch(address) is None:
        raise ValidationFailed("an Ethereum address is 0x followed by 40 hex digits")
    body = address[2:]
    fixed = _checksum(body)
    if body not in (body.lower(), body.upper()) and fixed != address:
        raise ValidationFailed("the address has a wrong EIP-55 checksum")
    return fixed


SIWE_FORMAT = make_format(
    chain="Ethereum",
    address=r"0x[0-9a-fA-F]{40}",
    chain_id=r"[0-9]{1,20}",
    blank_line_without_statement=True,
    address_case_insensitive=True,
    address_valid=is_checksum_address,
)


def parse_siwe_message(text: str) -> SignInMessage:
    """Parse an EIP-4361 message strictly; raises ``MalformedSignInMessage`` (``validation_error``)."""
    return parse_sign_in_message(text, SIWE_FORMAT)


def build_siwe_message(msg: SignInMessage) -> str:
    """The EIP-4361 text of ``msg``; raises ``MalformedSignInMessage`` for an invalid field."""
    return build_sign_in_message(msg, SIWE_FORMAT)


def personal_sign_digest(message: bytes) -> bytes:
    """EIP-191 version 0x45: ``keccak256("\\x19Ethereum Signed Message:\\n" + len + message)``."""
    return keccak(b"\x19Ethereum Signed Message:\n" + str(len(message)).encode() + message)


def recover_personal_sign(message: bytes, signature: bytes) -> str:
    """The EIP-55 address that signed ``message`` with ``personal_sign`` (EIP-191).

    ``signature`` is 65 bytes ``r || s || v`` with v in {27, 28} or {0, 1}. High-s signatures
    (s > n/2, the malleable twin of a valid one) and zero or out-of-range r/s are rejected, so a
    signature has exactly one accepted encoding. Raises :class:`InvalidSignature`.
    """
    return _checksum(_recover_address(message, signature).hex())


def _recover_address(message: bytes, signature: bytes) -> bytes:
    """The signer's 20 address bytes: recover the key, keccak it, keep the last 20 bytes."""
    if len(signature) != 65:
        raise InvalidSignature("an Ethereum signature is 65 bytes")
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:64], "big")
    v = signature[64]
    if v in (27, 28):
        v -= 27
    if v not in (0, 1):
        raise InvalidSignature("invalid recovery id")
    if not (0 < r < _SECP256K1_N) or not (0 < s <= _HALF_N):
        raise InvalidSignature("signature r/s out of range (high-s signatures are refused)")
    try:
        public = coincurve.PublicKey.from_signature_and_message(
            signature[:64] + bytes([v]), personal_sign_digest(message), hasher=None
        )
    except (ValueError, TypeError):
        raise InvalidSignature("no public key recovers from this signature") from None
    return keccak(public.format(compressed=False)[1:])[-20:]


def _signature_bytes(signature: str | bytes) -> bytes:
    if isinstance(signature, bytes):
        return signature
    text = signature[2:] if signature[:2] in ("0x", "0X") else signature
    if len(text) != 130:
        raise InvalidSignature("an Ethereum signature is 65 bytes (130 hex digits)")
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise InvalidSignature("the signature is not hex") from None


def _check_signer(msg: SignInMessage, text: str, signature: str | bytes) -> None:
    # Compare raw bytes: the message's address was EIP-55 checked by the parser already.
    signer = _recover_address(text.encode("utf-8"), _signature_bytes(signature))
    if signer != bytes.fromhex(msg.address[2:]):
        raise InvalidSignature("the message was not signed by its address")


def verify_siwe(
    text: str,
    signature: str | bytes,
    *,
    now: float,
    expected_domain: str | None = None,
    expected_nonce: str | None = None,
) -> SignInMessage:
    """Stand-alone SIWE verification, the checks of spruceid's ``SiweMessage.verify``.

    Parses strictly, honours ``expiration-time``/``not-before`` at ``now``, optionally binds the
    domain and nonce, and checks the EIP-191 signer equals the message's address. It does not know
    what the server issued: step-up uses :meth:`EthereumMethod.complete`, which also requires
    every field to equal the issued challenge and the chain to be allowlisted.
    """
    msg = parse_siwe_message(text)
    check_validity_period(msg, now=now)
    if expected_domain is not None and msg.domain != expected_domain:
        raise InvalidSignature("the message is for another domain")
    if expected_nonce is not None and msg.nonce != expected_nonce:
        raise InvalidSignature("the message carries another nonce")
    _check_signer(msg, text, signature)
    return msg


@dataclass(frozen=True, slots=True)
class SiweState(WalletChallenge):
    """A pending SIWE challenge: the issued message, its text and when it expires."""


class EthereumMethod:
    """Re-authentication by an external Ethereum wallet's SIWE signature (externally owned accounts)."""

    name: ClassVar[MethodName] = MethodName.ETHEREUM

    def begin(
        self,
        *,
        domain: str,
        uri: str,
        address: str,
        chain_id: int,
        now: float,
        nonce: str | None = None,
        statement: str | None = None,
        ttl_seconds: int = DEFAULT_TTL_SECONDS,
        scheme: str | None = None,
        request_id: str | None = None,
        resources: Iterable[str] = (),
    ) -> tuple[str, SiweState]:
        """The SIWE message for the wallet to sign, and the state to keep until ``complete``.

        ``address`` is the user's bound wallet (EIP-55 checked); ``nonce`` defaults to 130 random
        bits; the message expires ``ttl_seconds`` (<= 600) after ``now``.
        """
        if isinstance(chain_id, bool) or not isinstance(chain_id, int) or chain_id < 1:
            raise ValidationFailed("chain_id must be a positive integer")
        msg, text, expires_at = issue_challenge(
            SIWE_FORMAT,
            domain=domain,
            uri=uri,
            address=to_checksum_address(address),
            chain_id=str(chain_id),
            now=now,
            nonce=nonce,
            statement=statement,
            ttl_seconds=ttl_seconds,
            scheme=scheme,
            request_id=request_id,
            resources=resources,
        )
        return text, SiweState(message=msg, text=text, expires_at=expires_at)

    def complete(
        self,
        state: SiweState,
        message: str,
        signature: str | bytes,
        *,
        now: float,
        allowed_chain_ids: Iterable[int],
    ) -> VerifiedFactor:
        """Verify the signed SIWE ``message`` against the issued ``state``.

        Raises ``CodeExpired`` (challenge or message expired), ``MalformedSignInMessage`` (ABNF),
        or :class:`InvalidSignature` (a field differs from the issued one, chain not allowed, not
        yet valid, bad or high-s signature, wrong signer). The caller consumes the nonce.
        """
        msg = check_response(
            state,
            message,
            SIWE_FORMAT,
            now=now,
            allowed_chain_ids=(str(c) for c in allowed_chain_ids),
        )
        _check_signer(msg, message, signature)
        return verified(
            self.name,
            now=now,
            credential_id=msg.address,
            details={"address": msg.address, "chain_id": int(msg.chain_id), "nonce": msg.nonce},
        )


_: type[VerificationMethod] = EthereumMethod
