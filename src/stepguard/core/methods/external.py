"""Bring-your-own-auth: the app's backend vouches for the user with a signed assertion JWT.

The environment configures a JWKS (the app backend's public keys). The backend signs a JWT with
claims ``sub`` (the user), ``scope`` (space-separated scopes it approves), ``jti``, ``iat`` and
``exp`` (optional ``iss``, ``aud``, ``nbf``); the server exchanges it for an elevated token.

Checks follow the JWT BCP (RFC 8725): the key is chosen only by ``kid`` from the configured JWKS
(§3.10; never ``jku``/``jwk``/``x5u`` from the token), each key admits exactly one algorithm
derived from its type, from {RS256, ES256, EdDSA} (§3.1, §3.2: never ``none``, never HMAC), the
signature goes through joserfc, ``exp`` is required and not past, ``iat`` is required and not in
the future beyond 60 s, and the lifetime ``exp - iat`` is capped. The server stores ``jti`` until
``exp`` so an assertion is used once; this module only returns it.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any, ClassVar

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, OKPKey, RSAKey

from stepguard.core.assurance import MethodName
from stepguard.core.errors import InvalidExternalAuth
from stepguard.core.methods.base import VerificationMethod, VerifiedFactor, verified
from stepguard.core.tokens import MAX_TOKEN_BYTES, TOKEN_TYPE, _b64json, _Registry

__all__ = ["ALLOWED_ALGORITHMS", "DEFAULT_MAX_LIFETIME", "ExternalAssertionMethod"]

ALLOWED_ALGORITHMS = frozenset({"RS256", "ES256", "EdDSA"})
DEFAULT_MAX_LIFETIME = 300
#: Clock skew tolerated for ``iat`` and ``nbf`` between the app backend and us.
CLOCK_SKEW_SECONDS = 60
MIN_RSA_BITS = 2048
_HEADER_KEYS = frozenset({"alg", "kid", "typ"})
_MAX_JTI_CHARS = 256

_Key = RSAKey | ECKey | OKPKey


def _fail(detail: str) -> InvalidExternalAuth:
    return InvalidExternalAuth(detail)


def _rsa_bits(jwk: Mapping[str, Any]) -> int:
    n = jwk.get("n")
    if not isinstance(n, str):
        raise _fail("the RSA key has no modulus")
    try:
        raw = base64.urlsafe_b64decode(n + "=" * (-len(n) % 4))
    except (ValueError, binascii.Error):
        raise _fail("the RSA key modulus is not base64url") from None
    return int.from_bytes(raw, "big").bit_length()


def _key_for(jwks: Mapping[str, Any], kid: str) -> tuple[str, _Key]:
    """The one key with this ``kid`` and the single algorithm it is pinned to."""
    keys = jwks.get("keys") if isinstance(jwks, Mapping) else None
    if not isinstance(keys, list):
        raise _fail("the configured JWKS has no keys list")
    matches = [k for k in keys if isinstance(k, Mapping) and k.get("kid") == kid]
    if not matches:
        raise _fail("the assertion names a key id the JWKS does not hold")
    if len(matches) > 1:
        # Two keys under one kid: we cannot tell which is meant, so trust neither (RFC 8725 §3.10).
        raise _fail("the JWKS holds several keys with this key id")
    jwk = matches[0]
    if jwk.get("use", "sig") != "sig":
        raise _fail("the key is not a signing key")
    kty, crv = jwk.get("kty"), jwk.get("crv")
    if kty == "RSA":
        alg = "RS256"
        if _rsa_bits(jwk) < MIN_RSA_BITS:
            raise _fail("the RSA key is shorter than 2048 bits")
        public = {k: jwk[k] for k in ("kty", "n", "e") if k in jwk}
        key_type: type[_Key] = RSAKey
    elif kty == "EC" and crv == "P-256":
        alg, key_type = "ES256", ECKey
        public = {k: jwk[k] for k in ("kty", "crv", "x", "y") if k in jwk}
    elif kty == "OKP" and crv == "Ed25519":
        alg, key_type = "EdDSA", OKPKey
        public = {k: jwk[k] for k in ("kty", "crv", "x") if k in jwk}
    else:
        raise _fail(f"unsupported key type {kty}/{crv}")
    declared = jwk.get("alg")
    if declared is not None and declared != alg and not (alg == "EdDSA" and declared == "Ed25519"):
        raise _fail(f"the key declares algorithm {declared}, not {alg}")
    try:
        return alg, key_type.import_key(public)
    except (JoseError, ValueError, TypeError):
        raise _fail("the JWKS key cannot be loaded") from None


def _int_claim(claims: Mapping[str, Any], name: str) -> int:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(f"missing or malformed {name} claim")
    return int(value)


def _str_claim(claims: Mapping[str, Any], name: str) -> str:
    value = claims.get(name)
    if not isinstance(value, str) or not value:
        raise _fail(f"missing or malformed {name} claim")
    return value


class ExternalAssertionMethod:
    """Step-up vouched for by the app's backend (bring-your-own-auth), as a signed JWT."""

    name: ClassVar[MethodName] = MethodName.EXTERNAL

    def complete(
        self,
        jwks: Mapping[str, Any],
        assertion: str,
        *,
        now: float,
        expected_subject: str,
        expected_issuer: str | None = None,
        expected_audience: str | None = None,
        max_lifetime: int = DEFAULT_MAX_LIFETIME,
    ) -> VerifiedFactor:
        """Verify ``assertion`` against the environment's ``jwks``; raise InvalidExternalAuth.

        Returns a factor whose ``details`` carry ``jti`` and ``exp`` (the server remembers the
        ``jti`` until ``exp`` to refuse a replay) and the approved ``scopes``.
        """
        if not isinstance(assertion, str) or not assertion:
            raise _fail("the assertion is missing")
        if len(assertion) > MAX_TOKEN_BYTES:
            raise _fail("the assertion is too large")
        parts = assertion.split(".")
        if len(parts) != 3 or not all(parts):
            raise _fail("the assertion is not a compact JWS")
        try:
            header = _b64json(parts[0])
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise _fail("malformed assertion header") from None
        if not isinstance(header, dict):
            raise _fail("malformed assertion header")
        if set(header) - _HEADER_KEYS:
            # jku/jwk/x5u/x5c would point at keys we do not configure; crit at semantics we lack.
            raise _fail("unexpected assertion header parameters")
        alg = header.get("alg")
        if alg not in ALLOWED_ALGORITHMS:
            raise _fail(f"algorithm {alg!r} is not allowed")
        typ = header.get("typ")
        if isinstance(typ, str) and typ.lower() in (TOKEN_TYPE, "application/" + TOKEN_TYPE):
            # One of our own elevated tokens is not an app assertion (RFC 8725 §2.8).
            raise _fail("an elevated access token is not an external assertion")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise _fail("the assertion has no key id")
        pinned, key = _key_for(jwks, kid)
        if alg != pinned:
            raise _fail(f"algorithm {alg} is not the one pinned to this key ({pinned})")
        try:
            obj = jws.deserialize_compact(
                assertion, key, algorithms=[pinned], registry=_Registry(algorithms=[pinned])
            )
            claims = json.loads(obj.payload)
        except (JoseError, ValueError, UnicodeDecodeError):
            raise _fail("the assertion signature does not verify") from None
        if not isinstance(claims, dict):
            raise _fail("malformed assertion claims")

        exp = _int_claim(claims, "exp")
        iat = _int_claim(claims, "iat")
        if now >= exp:
            raise _fail("the assertion has expired")
        if iat > now + CLOCK_SKEW_SECONDS:
            raise _fail("the assertion was issued in the future")
        if exp - iat > max_lifetime:
            raise _fail(f"the assertion lives longer than {max_lifetime} s")
        if "nbf" in claims and _int_claim(claims, "nbf") > now + CLOCK_SKEW_SECONDS:
            raise _fail("the assertion is not valid yet")
        if expected_issuer is not None and claims.get("iss") != expected_issuer:
            raise _fail("wrong issuer")
        if expected_audience is not None:
            aud = claims.get("aud")
            if not (
                aud == expected_audience or (isinstance(aud, list) and expected_audience in aud)
            ):
                raise _fail("wrong audience")
        if _str_claim(claims, "sub") != expected_subject:
            raise _fail("the assertion is for another user")
        jti = _str_claim(claims, "jti")
        if len(jti) > _MAX_JTI_CHARS:
            raise _fail("the jti claim is too long")
        scopes = list(dict.fromkeys(_str_claim(claims, "scope").split()))
        if not scopes:
            raise _fail("the assertion grants no scope")
        return verified(
            self.name,
            now=now,
            credential_id=kid,
            details={"jti": jti, "exp": exp, "scopes": scopes},
        )


_: type[VerificationMethod] = ExternalAssertionMethod
