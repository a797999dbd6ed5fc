"""Bring-your-own-auth assertions: real RS256/ES256/EdDSA JWTs signed with joserfc, and the
attacks of RFC 8725 (alg none, HMAC confusion, kid games, embedded keys, expiry, lifetime)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc import jws
from joserfc.jwk import ECKey, OKPKey, RSAKey

from stepguard.core.assurance import FactorKind, MethodName
from stepguard.core.errors import InvalidExternalAuth
from stepguard.core.methods.external import ExternalAssertionMethod
from stepguard.core.tokens import _Registry

NOW = 1_700_000_000
method = ExternalAssertionMethod()


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


KEYS: dict[str, Any] = {
    "RS256": RSAKey.generate_key(2048, parameters={"kid": "rsa-1"}),
    "ES256": ECKey.generate_key("P-256", parameters={"kid": "ec-1"}),
    "EdDSA": OKPKey.generate_key("Ed25519", parameters={"kid": "ed-1"}),
}


def public_jwk(which: str, **extra: Any) -> dict[str, Any]:
    jwk: dict[str, Any] = KEYS[which].as_dict(private=False)
    jwk.update(extra)
    return jwk


JWKS = {"keys": [public_jwk(a, use="sig") for a in KEYS]}


def claims(**overrides: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "sub": "user-42",
        "scope": "wallet:export credential:link",
        "jti": "a1b2c3",
        "iat": NOW - 10,
        "exp": NOW + 120,
        "iss": "https://app.example",
        "aud": "env-1",
    }
    out.update(overrides)
    return {k: v for k, v in out.items() if v is not None}


def sign(
    alg: str = "ES256", payload: dict[str, Any] | None = None, *, key: Any = None, **header: Any
) -> str:
    key = key or KEYS[alg]
    head: dict[str, Any] = {"alg": alg, "kid": key.kid, "typ": "JWT"}
    head.update(header)
    head = {k: v for k, v in head.items() if v is not None}
    body = json.dumps(payload if payload is not None else claims()).encode()
    return jws.serialize_compact(
        head, body, key, algorithms=[alg], registry=_Registry(algorithms=[alg])
    )


def check(assertion: str, jwks: dict[str, Any] | None = None, **kw: Any) -> Any:
    args: dict[str, Any] = {"now": NOW, "expected_subject": "user-42"}
    args.update(kw)
    return method.complete(jwks or JWKS, assertion, **args)


@pytest.mark.parametrize("alg", ["RS256", "ES256", "EdDSA"])
def test_valid_assertions(alg: str) -> None:
    factor = check(sign(alg), expected_issuer="https://app.example", expected_audience="env-1")
    assert factor.method is MethodName.EXTERNAL and factor.kind is FactorKind.SERVER
    assert factor.amr == ("ext",)
    assert factor.credential_id == KEYS[alg].kid
    assert factor.details == {
        "jti": "a1b2c3",
        "exp": NOW + 120,
        "scopes": ["wallet:export", "credential:link"],
    }


def test_optional_claims_may_be_absent_when_not_expected() -> None:
    factor = check(sign(payload=claims(iss=None, aud=None, scope="wallet:sign  wallet:sign")))
    assert factor.details["scopes"] == ["wallet:sign"]


def test_audience_list() -> None:
    check(sign(payload=claims(aud=["other", "env-1"])), expected_audience="env-1")
    with pytest.raises(InvalidExternalAuth, match="audience"):
        check(sign(payload=claims(aud=["other"])), expected_audience="env-1")


def _unsigned(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"") -> str:
    return ".".join(
        [b64(json.dumps(header).encode()), b64(json.dumps(payload).encode()), b64(signature)]
    )


def test_alg_none_is_refused() -> None:
    token = _unsigned({"alg": "none", "kid": "ec-1"}, claims()) + "AA"
    with pytest.raises(InvalidExternalAuth, match="not allowed"):
        check(token)


@pytest.mark.parametrize("alg", ["HS256", "HS512"])
def test_hmac_with_the_public_key_as_secret_is_refused(alg: str) -> None:
    # The classic confusion: HMAC keyed with the published RSA key.
    header = {"alg": alg, "kid": "rsa-1"}
    signing_input = ".".join([b64(json.dumps(header).encode()), b64(json.dumps(claims()).encode())])
    secret = json.dumps(public_jwk("RS256")).encode()
    digest = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    with pytest.raises(InvalidExternalAuth, match="not allowed"):
        check(signing_input + "." + b64(digest))


@pytest.mark.parametrize(("alg", "kid"), [("RS256", "ec-1"), ("ES256", "rsa-1"), ("EdDSA", "ec-1")])
def test_algorithm_must_be_the_one_pinned_to_the_key(alg: str, kid: str) -> None:
    with pytest.raises(InvalidExternalAuth, match="pinned"):
        check(sign(alg, kid=kid))


def test_unknown_and_missing_kid() -> None:
    with pytest.raises(InvalidExternalAuth, match="does not hold"):
        check(sign(kid="nope"))
    with pytest.raises(InvalidExternalAuth, match="no key id"):
        check(sign(kid=None))


def test_duplicate_kid_is_ambiguous() -> None:
    other = ECKey.generate_key("P-256", parameters={"kid": "ec-1"})
    jwks = {"keys": [*JWKS["keys"], other.as_dict(private=False)]}
    with pytest.raises(InvalidExternalAuth, match="several keys"):
        check(sign("ES256"), jwks)


def test_signature_by_another_key_with_the_same_kid_fails() -> None:
    impostor = ECKey.generate_key("P-256", parameters={"kid": "ec-1"})
    with pytest.raises(InvalidExternalAuth, match="does not verify"):
        check(sign("ES256", key=impostor))


@pytest.mark.parametrize("alg", ["RS256", "ES256", "EdDSA"])
def test_tampered_payload_or_signature_fails(alg: str) -> None:
    token = sign(alg)
    head, _, sig = token.split(".")
    evil_payload = b64(json.dumps(claims(sub="user-42", scope="console:project:delete")).encode())
    with pytest.raises(InvalidExternalAuth, match="does not verify"):
        check(f"{head}.{evil_payload}.{sig}")
    flipped = sig[:10] + ("A" if sig[10] != "A" else "B") + sig[11:]
    with pytest.raises(InvalidExternalAuth, match="does not verify"):
        check(f"{head}.{token.split('.')[1]}.{flipped}")


@pytest.mark.parametrize(
    "extra",
    [
        {"jku": "https://evil.example/jwks"},
        {"jwk": {"kty": "EC"}},
        {"x5u": "https://evil.example/cert"},
        {"crit": ["exp"]},
    ],
)
def test_embedded_key_references_are_refused(extra: dict[str, Any]) -> None:
    # Refused by the header check, before any key or signature is looked at.
    token = _unsigned({"alg": "ES256", "kid": "ec-1", **extra}, claims(), b"\x01" * 64)
    with pytest.raises(InvalidExternalAuth, match="unexpected assertion header"):
        check(token)


def test_our_own_elevated_token_type_is_refused() -> None:
    with pytest.raises(InvalidExternalAuth, match="elevated access token"):
        check(sign(typ="elevated+jwt"))


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        (claims(exp=None), "exp"),
        (claims(exp=NOW), "expired"),
        (claims(exp=NOW - 1), "expired"),
        (claims(exp="tomorrow"), "exp"),
        (claims(iat=None), "iat"),
        (claims(iat=NOW + 61, exp=NOW + 200), "future"),
        (claims(iat=NOW - 200, exp=NOW + 101), "longer than 300"),
        (claims(nbf=NOW + 61), "not valid yet"),
        (claims(sub="user-43"), "another user"),
        (claims(sub=None), "another user|sub"),
        (claims(jti=None), "jti"),
        (claims(jti=""), "jti"),
        (claims(jti="x" * 257), "too long"),
        (claims(scope=None), "scope"),
        (claims(scope="   "), "no scope"),
        (claims(scope=["wallet:export"]), "scope"),
    ],
)
def test_claim_checks(payload: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidExternalAuth, match=match):
        check(sign(payload=payload))


def test_boundaries_inside_the_skew_pass() -> None:
    check(sign(payload=claims(iat=NOW + 60, exp=NOW + 300)))
    check(sign(payload=claims(iat=NOW - 300, exp=NOW + 1)), max_lifetime=301)
    check(sign(payload=claims(nbf=NOW + 60)))


def test_issuer_and_audience_when_expected() -> None:
    with pytest.raises(InvalidExternalAuth, match="issuer"):
        check(sign(), expected_issuer="https://other.example")
    with pytest.raises(InvalidExternalAuth, match="issuer"):
        check(sign(payload=claims(iss=None)), expected_issuer="https://app.example")
    with pytest.raises(InvalidExternalAuth, match="audience"):
        check(sign(), expected_audience="env-2")


def test_max_lifetime_is_configurable() -> None:
    with pytest.raises(InvalidExternalAuth, match="longer than 60"):
        check(sign(), max_lifetime=60)


def test_weak_and_mismatched_keys_in_the_jwks_are_refused() -> None:
    weak = (
        rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key().public_numbers()
    )
    weak_jwk = {
        "kty": "RSA",
        "kid": "weak",
        "n": b64(weak.n.to_bytes(128, "big")),
        "e": b64(weak.e.to_bytes(3, "big")),
    }
    with pytest.raises(InvalidExternalAuth, match="2048"):
        check(sign("RS256", kid="weak"), {"keys": [weak_jwk]})
    lying = {"keys": [public_jwk("ES256", alg="RS256")]}
    with pytest.raises(InvalidExternalAuth, match="declares algorithm"):
        check(sign("ES256"), lying)
    enc = {"keys": [public_jwk("ES256", use="enc")]}
    with pytest.raises(InvalidExternalAuth, match="not a signing key"):
        check(sign("ES256"), enc)
    p384 = ECKey.generate_key("P-384", parameters={"kid": "ec-1"}).as_dict(private=False)
    with pytest.raises(InvalidExternalAuth, match="unsupported key type"):
        check(sign("ES256"), {"keys": [p384]})
    with pytest.raises(InvalidExternalAuth, match="no keys"):
        check(sign("ES256"), {"keys": "none"})


def test_declared_ed25519_alg_name_is_accepted() -> None:
    check(sign("EdDSA"), {"keys": [public_jwk("EdDSA", alg="Ed25519")]})


@pytest.mark.parametrize(
    "token",
    ["", "abc", "a.b", "a..c", "!!!.e30.AA", b64(b"[1]") + ".e30.AA", "x" * 9000],
)
def test_malformed_assertions(token: str) -> None:
    with pytest.raises(InvalidExternalAuth):
        check(token)


def test_payload_must_be_an_object() -> None:
    key = KEYS["ES256"]
    token = jws.serialize_compact(
        {"alg": "ES256", "kid": "ec-1"},
        b"[1, 2]",
        key,
        algorithms=["ES256"],
        registry=_Registry(algorithms=["ES256"]),
    )
    with pytest.raises(InvalidExternalAuth, match="malformed assertion claims"):
        check(token)
