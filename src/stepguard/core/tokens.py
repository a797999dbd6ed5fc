"""Minting and verifying elevated access tokens.

An elevated access token is a compact JWS (RFC 7515) with header ``typ: elevated+jwt`` and claims
``iss aud sub sid jti iat exp auth_time scope amr single_use`` (optional ``txn``). Keys are
imported and checked through joserfc; the claim checks are ours and follow RFC 7519 §7.2 and the
JWT BCP (RFC 8725): one algorithm pinned per key (§3.1), keys only by ``kid`` from a local keyset
(§3.10), explicit ``typ`` (§3.11), exact ``iss`` and ``aud`` (§3.8, §3.9).

Hot path. Signature verification dominates a guarded request (performance.md §2.1), so each key
keeps a ready verifier: Ed25519 goes through libsodium (PyNaCl, about half the cost of OpenSSL's
Ed25519 here, goal G12; it is also the stricter of the two: it rejects small-order and
non-canonical points that OpenSSL accepts), P-256 through ``cryptography`` with the key object
loaded. The header is parsed once (goal G2) and every segment is base64url-decoded strictly, as
joserfc does. Minting signs the same bytes joserfc would produce, with the header segment
encoded once per signer. ``tests/core/test_tokens_fast_path.py`` proves both paths equivalent.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import nacl.exceptions
import nacl.signing
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from joserfc._rfc8037.jws_eddsa import EdDSAAlgorithm
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, OKPKey
from joserfc.jws import JWSRegistry
from joserfc.util import json_b64encode, urlsafe_b64decode, urlsafe_b64encode

from stepguard.core.errors import (
    AuthTooOld,
    ElevatedTokenExpired,
    ElevatedTokenInvalid,
    ElevatedTokenRequired,
    ScopeNotGranted,
    SubjectMismatch,
)
from stepguard.core.keys import JwsAlgorithm, KeyMaterial

__all__ = [
    "DEFAULT_LEEWAY",
    "MAX_TOKEN_BYTES",
    "TOKEN_TYPE",
    "ElevatedClaims",
    "TokenKeySet",
    "TokenSigner",
    "UnknownKeyId",
    "VerifiedElevatedToken",
    "check_grant",
    "new_jti",
    "unverified_claims",
    "verify_elevated_token",
]

TOKEN_TYPE = "elevated+jwt"  # noqa: S105 (a media type, not a secret)
_ACCEPTED_TYP = frozenset({TOKEN_TYPE, "application/" + TOKEN_TYPE})
#: RFC 7519 §4.1.4 allows "a small leeway"; the guard contract caps it at 60 s.
DEFAULT_LEEWAY = 60
MAX_LEEWAY = 60
MAX_TOKEN_BYTES = 8192
_HEADER_KEYS = frozenset({"alg", "typ", "kid"})


class _QuietEdDSA(EdDSAAlgorithm):
    # RFC 9864 renames the Ed25519 JWS algorithm "Ed25519"; our contract (DESIGN.md) is "EdDSA",
    # which stays unambiguous here because every key is pinned to Ed25519.
    security_warning = None  # type: ignore[assignment]


class _Registry(JWSRegistry):
    algorithms = {**JWSRegistry.algorithms, "EdDSA": _QuietEdDSA()}


class UnknownKeyId(ElevatedTokenInvalid):
    """The token names a ``kid`` the keyset does not hold (a cue to refresh a remote JWKS)."""

    description = "The elevated access token was signed by an unknown key."


_ES256 = ec.ECDSA(hashes.SHA256())
_MAX_HEADER_SEGMENT = JWSRegistry.max_header_length  # joserfc's cap, kept
_SIG_BYTES = 64  # Ed25519 signatures, and ES256's r || s (RFC 7518 §3.4), are both 64 bytes


class _SignatureCheck:
    """Verifies one key's JWS signatures; built once per key, not per token."""

    __slots__ = ("_check",)

    def __init__(self, alg: JwsAlgorithm, key: OKPKey | ECKey) -> None:
        op_key = key.get_op_key("verify")
        if alg is JwsAlgorithm.EDDSA:
            if not isinstance(op_key, ed25519.Ed25519PublicKey):
                raise ValueError("EdDSA needs an Ed25519 public key")
            raw = op_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            self._check = self._ed25519(nacl.signing.VerifyKey(raw))
        else:
            if not isinstance(op_key, ec.EllipticCurvePublicKey) or not isinstance(
                op_key.curve, ec.SECP256R1
            ):
                raise ValueError("ES256 needs a P-256 public key")
            self._check = self._es256(op_key)

    @staticmethod
    def _ed25519(verify_key: Any) -> Any:
        def check(message: bytes, signature: bytes) -> bool:
            try:
                verify_key.verify(message, signature)
            except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError):
                return False
            return True

        return check

    @staticmethod
    def _es256(public_key: ec.EllipticCurvePublicKey) -> Any:
        def check(message: bytes, signature: bytes) -> bool:
            der = encode_dss_signature(
                int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
            )
            try:
                public_key.verify(der, message, _ES256)
            except InvalidSignature:
                return False
            return True

        return check

    def __call__(self, message: bytes, signature: bytes) -> bool:
        """True only for a valid signature of exactly 64 bytes over ``message``."""
        if len(signature) != _SIG_BYTES:
            return False
        return bool(self._check(message, signature))


def new_jti() -> str:
    """A token id with 128 bits from the CSPRNG."""
    return secrets.token_urlsafe(16)


@dataclass(frozen=True, slots=True)
class ElevatedClaims:
    iss: str
    aud: str
    sub: str
    sid: str
    jti: str
    iat: int
    exp: int
    auth_time: int
    scopes: tuple[str, ...]
    amr: tuple[str, ...]
    single_use: bool
    txn: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "iss": self.iss,
            "aud": self.aud,
            "sub": self.sub,
            "sid": self.sid,
            "jti": self.jti,
            "iat": self.iat,
            "exp": self.exp,
            "auth_time": self.auth_time,
            "scope": " ".join(self.scopes),
            "amr": list(self.amr),
            "single_use": self.single_use,
        }
        if self.txn is not None:
            out["txn"] = self.txn
        return out


@dataclass(frozen=True, slots=True)
class VerifiedElevatedToken:
    """A token whose signature and claims passed every check."""

    claims: ElevatedClaims
    kid: str
    raw: Mapping[str, Any] = field(repr=False)

    @property
    def subject(self) -> str:
        return self.claims.sub

    @property
    def jti(self) -> str:
        return self.claims.jti

    @property
    def scopes(self) -> tuple[str, ...]:
        return self.claims.scopes

    @property
    def single_use(self) -> bool:
        return self.claims.single_use

    @property
    def expires_at(self) -> int:
        return self.claims.exp


class TokenSigner:
    """Signs elevated tokens with one key (loaded once, not per token)."""

    def __init__(self, material: KeyMaterial) -> None:
        self.kid = material.kid
        self.alg = material.alg
        self._key = material.private_key()
        self._registry = _Registry(algorithms=[self.alg.value])
        # joserfc checks the key fits the algorithm; we then sign with the loaded key directly.
        self._registry.get_alg(self.alg.value).check_key(self._key)
        op_key = self._key.get_op_key("sign")
        if self.alg is JwsAlgorithm.EDDSA:
            if not isinstance(op_key, ed25519.Ed25519PrivateKey):
                raise ValueError("EdDSA needs an Ed25519 private key")
        elif not isinstance(op_key, ec.EllipticCurvePrivateKey):
            raise ValueError("ES256 needs a P-256 private key")
        self._op_key: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey = op_key
        header = {"alg": self.alg.value, "typ": TOKEN_TYPE, "kid": self.kid}
        self._header_segment = json_b64encode(header) + b"."

    def _signature(self, signing_input: bytes) -> bytes:
        if isinstance(self._op_key, ed25519.Ed25519PrivateKey):
            return self._op_key.sign(signing_input)
        r, s = decode_dss_signature(self._op_key.sign(signing_input, _ES256))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")  # JWS form (RFC 7518 §3.4)

    def sign(self, claims: ElevatedClaims) -> str:
        """The compact JWS of ``claims`` (byte for byte what ``jws.serialize_compact`` makes)."""
        payload = json.dumps(claims.to_dict(), separators=(",", ":")).encode()
        signing_input = self._header_segment + urlsafe_b64encode(payload)
        return (signing_input + b"." + urlsafe_b64encode(self._signature(signing_input))).decode()


class TokenKeySet:
    """Public verification keys by ``kid``, each pinned to exactly one algorithm."""

    def __init__(self) -> None:
        self._keys: dict[str, tuple[JwsAlgorithm, OKPKey | ECKey, JWSRegistry]] = {}
        self._checks: dict[str, _SignatureCheck] = {}

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, kid: object) -> bool:
        return kid in self._keys

    def kids(self) -> list[str]:
        return list(self._keys)

    def add_material(self, material: KeyMaterial) -> None:
        self.add_jwk(material.public_jwk())

    def add_jwk(self, jwk: Mapping[str, Any]) -> None:
        """Add one public JWK; raises ValueError for anything but an Ed25519 or P-256 signing key."""
        kid = jwk.get("kid")
        if not isinstance(kid, str) or not kid or len(kid) > 128:
            raise ValueError("a JWK needs a kid")
        if jwk.get("use", "sig") != "sig":
            raise ValueError("not a signing key")
        key_ops = jwk.get("key_ops")
        if key_ops is not None and (not isinstance(key_ops, list) or "verify" not in key_ops):
            raise ValueError("the key's key_ops do not allow verify")  # RFC 7517 §4.3
        if "d" in jwk:
            # Private material in a verification keyset is a leak or a mix-up: trust nothing.
            raise ValueError("a verification key must not hold private key material")
        public = {k: v for k, v in jwk.items() if k in {"kty", "crv", "x", "y", "kid"}}
        kty, crv, alg = jwk.get("kty"), jwk.get("crv"), jwk.get("alg")
        key: OKPKey | ECKey
        try:
            if kty == "OKP" and crv == "Ed25519" and alg in (None, "EdDSA", "Ed25519"):
                key, pinned = OKPKey.import_key(public), JwsAlgorithm.EDDSA
            elif kty == "EC" and crv == "P-256" and alg in (None, "ES256"):
                key, pinned = ECKey.import_key(public), JwsAlgorithm.ES256
            else:
                raise ValueError(f"unsupported key type {kty}/{crv}/{alg}")
            check = _SignatureCheck(pinned, key)
        except JoseError as exc:  # malformed members: one exception type for callers
            raise ValueError(f"malformed JWK: {exc}") from None
        self._keys[kid] = (pinned, key, _Registry(algorithms=[pinned.value]))
        self._checks[kid] = check

    def remove(self, kid: str) -> None:
        self._keys.pop(kid, None)
        self._checks.pop(kid, None)

    @classmethod
    def from_jwks(cls, jwks: Mapping[str, Any]) -> TokenKeySet:
        """Build from a JWKS document, skipping keys we cannot pin (never failing open)."""
        ks = cls()
        raw = jwks.get("keys") if isinstance(jwks, Mapping) else None
        if not isinstance(raw, list):
            raise ValueError("a JWKS needs a keys list")
        seen: set[str] = set()
        for jwk in raw:
            if not isinstance(jwk, Mapping):
                continue
            kid = jwk.get("kid")
            if isinstance(kid, str) and kid in seen:
                # Two keys with one kid: ambiguous, so trust neither (RFC 8725 §3.10).
                ks.remove(kid)
                continue
            try:
                ks.add_jwk(jwk)
            except (ValueError, JoseError):
                continue
            finally:
                if isinstance(kid, str):
                    seen.add(kid)
        return ks

    def lookup(self, kid: str) -> tuple[JwsAlgorithm, OKPKey | ECKey, JWSRegistry] | None:
        return self._keys.get(kid)

    def _signature_check(self, kid: str) -> _SignatureCheck | None:
        return self._checks.get(kid)


def _b64json(part: str) -> Any:
    pad = "=" * (-len(part) % 4)
    return json.loads(base64.urlsafe_b64decode(part + pad))


def unverified_claims(token: str) -> dict[str, Any]:
    """The payload of a token *without* checking anything (clients use it to read ``exp``/``scope``)."""
    try:
        parts = token.split(".")
        if len(parts) != 3:
            raise ValueError
        data = _b64json(parts[1])
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ElevatedTokenInvalid("malformed token") from None
    if not isinstance(data, dict):
        raise ElevatedTokenInvalid("malformed token")
    return data


def _int_claim(payload: Mapping[str, Any], name: str) -> int:
    value = payload.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ElevatedTokenInvalid(f"missing or malformed {name} claim")
    if isinstance(value, float) and not math.isfinite(value):
        raise ElevatedTokenInvalid(f"missing or malformed {name} claim")
    return int(value)


def _str_claim(payload: Mapping[str, Any], name: str) -> str:
    value = payload.get(name)
    if not isinstance(value, str) or not value:
        raise ElevatedTokenInvalid(f"missing or malformed {name} claim")
    return value


def verify_elevated_token(
    token: str | None,
    *,
    keys: TokenKeySet,
    expected_issuer: str,
    expected_audience: str,
    now: float,
    expected_scope: str | Iterable[str] | None = None,
    expected_subject: str | None = None,
    expected_session: str | None = None,
    max_age: int | None = None,
    leeway: int = DEFAULT_LEEWAY,
) -> VerifiedElevatedToken:
    """Verify ``token`` and return its claims, or raise an :class:`ElevatedTokenError` subclass.

    Checks, in order: presence and size; compact form; header (``typ`` = ``elevated+jwt``, only
    ``alg``/``typ``/``kid``, so no ``crit``/``jku``/``jwk``/``x5u``); ``kid`` known and ``alg`` equal to
    the key's pinned algorithm; signature; ``iss``; ``aud``; ``exp``/``nbf``/``iat`` within ``leeway``
    (at most 60 s); then :func:`check_grant`: ``sub``/``sid``, scope coverage, ``auth_time``
    against ``max_age`` (RFC 9470).
    """
    if not token:
        raise ElevatedTokenRequired()
    if len(token) > MAX_TOKEN_BYTES:
        raise ElevatedTokenInvalid("token too large")
    leeway = min(max(0, leeway), MAX_LEEWAY)
    parts = token.split(".")
    if len(parts) != 3 or not all(parts):
        raise ElevatedTokenInvalid("malformed token")
    try:
        header = json.loads(urlsafe_b64decode(parts[0].encode("ascii")))
        strict_header = True
    except ValueError:  # also binascii.Error, UnicodeError, JSONDecodeError
        # Not strict base64url (or not JSON): a lenient parse decides which error to report; a
        # header that only parses leniently fails the signature step below, as with joserfc.
        try:
            header = _b64json(parts[0])
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise ElevatedTokenInvalid("malformed token header") from None
        strict_header = False
    if not isinstance(header, dict):
        raise ElevatedTokenInvalid("malformed token header")
    if set(header) - _HEADER_KEYS:
        raise ElevatedTokenInvalid("unexpected token header parameters")
    typ = header.get("typ")
    if not isinstance(typ, str) or typ.lower() not in _ACCEPTED_TYP:
        raise ElevatedTokenInvalid("wrong token type")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise ElevatedTokenInvalid("token has no key id")
    found = keys.lookup(kid)
    check = keys._signature_check(kid)
    if found is None or check is None:
        raise UnknownKeyId()
    alg = found[0]
    if header.get("alg") != alg.value:
        raise ElevatedTokenInvalid("algorithm not allowed for this key")
    try:
        # Strict base64url for every segment (no padding, no stray characters, canonical final
        # character) with joserfc's own decoder, and joserfc's header size cap.
        if not strict_header or len(parts[0]) > _MAX_HEADER_SEGMENT:
            raise ValueError
        payload_bytes = urlsafe_b64decode(parts[1].encode("ascii"))
        signature = urlsafe_b64decode(parts[2].encode("ascii"))
        valid = check(f"{parts[0]}.{parts[1]}".encode("ascii"), signature)
        payload = json.loads(payload_bytes) if valid else None
    except ValueError:  # also binascii.Error, UnicodeError, JSONDecodeError
        valid = False
    if not valid:
        raise ElevatedTokenInvalid("bad signature")
    if not isinstance(payload, dict):
        raise ElevatedTokenInvalid("malformed token payload")

    exp = _int_claim(payload, "exp")
    iat = _int_claim(payload, "iat")
    if now > exp + leeway:
        raise ElevatedTokenExpired()
    if iat > now + leeway:
        raise ElevatedTokenInvalid("token issued in the future")
    if "nbf" in payload and _int_claim(payload, "nbf") > now + leeway:
        raise ElevatedTokenInvalid("token not yet valid")
    if payload.get("iss") != expected_issuer:
        raise ElevatedTokenInvalid("wrong issuer")
    aud = payload.get("aud")
    if not (aud == expected_audience or (isinstance(aud, list) and expected_audience in aud)):
        raise ElevatedTokenInvalid("wrong audience")
    sub = _str_claim(payload, "sub")
    sid = _str_claim(payload, "sid")
    jti = _str_claim(payload, "jti")
    auth_time = _int_claim(payload, "auth_time")
    scope = payload.get("scope")
    if not isinstance(scope, str) or not scope.strip():
        raise ElevatedTokenInvalid("missing or malformed scope claim")
    single_use = payload.get("single_use")
    if not isinstance(single_use, bool):
        raise ElevatedTokenInvalid("missing or malformed single_use claim")
    amr = payload.get("amr", [])
    if not isinstance(amr, list) or not all(isinstance(a, str) for a in amr):
        raise ElevatedTokenInvalid("malformed amr claim")
    txn = payload.get("txn")
    if txn is not None and not isinstance(txn, str):
        raise ElevatedTokenInvalid("malformed txn claim")

    claims = ElevatedClaims(
        iss=expected_issuer,
        aud=expected_audience,
        sub=sub,
        sid=sid,
        jti=jti,
        iat=iat,
        exp=exp,
        auth_time=auth_time,
        scopes=tuple(scope.split()),
        amr=tuple(amr),
        single_use=single_use,
        txn=txn,
    )
    check_grant(
        claims,
        now=now,
        expected_scope=expected_scope,
        expected_subject=expected_subject,
        expected_session=expected_session,
        max_age=max_age,
        leeway=leeway,
    )
    return VerifiedElevatedToken(claims=claims, kid=kid, raw=payload)


def check_grant(
    claims: ElevatedClaims,
    *,
    now: float,
    expected_scope: str | Iterable[str] | None = None,
    expected_subject: str | None = None,
    expected_session: str | None = None,
    max_age: int | None = None,
    leeway: int = DEFAULT_LEEWAY,
) -> None:
    """The checks of verified ``claims`` that depend on the request or the time, not on the
    token's bytes, so a verified token kept in a cache (the guard's) is re-checked on every use
    exactly as :func:`verify_elevated_token` checks it: ``exp`` within ``leeway`` (RFC 7519
    §4.1.4), ``sub`` and ``sid`` (a token is bound to the user and session it was minted for),
    every expected scope granted, ``now - auth_time <= max_age`` (RFC 9470 §3)."""
    if now > claims.exp + min(max(0, leeway), MAX_LEEWAY):
        raise ElevatedTokenExpired()
    if expected_subject is not None and claims.sub != expected_subject:
        raise SubjectMismatch()
    if expected_session is not None and claims.sid != expected_session:
        raise SubjectMismatch("the elevated access token belongs to another session")
    if expected_scope is not None:
        wanted = [expected_scope] if isinstance(expected_scope, str) else list(expected_scope)
        missing = [s for s in wanted if s not in claims.scopes]
        if missing:
            raise ScopeNotGranted(scope=" ".join(missing))
    if max_age is not None and now - claims.auth_time > max_age:
        raise AuthTooOld(max_age=max_age)
