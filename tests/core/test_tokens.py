"""Elevated tokens: mint/verify round trips (EdDSA, ES256), every verification check, Wycheproof.

Attack tokens are signed here with ``cryptography`` directly (not with our signer), so a check can
be shown to hold even for a correctly signed token that breaks exactly one rule.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from stepguard.core.assurance import MethodName
from stepguard.core.elevation import ElevationRequest, build_claims, decide_elevation
from stepguard.core.errors import (
    AuthTooOld,
    ElevatedTokenError,
    ElevatedTokenExpired,
    ElevatedTokenInvalid,
    ElevatedTokenRequired,
    MethodNotAllowed,
    MfaRequired,
    ScopeNotGranted,
    SubjectMismatch,
    ValidationFailed,
)
from stepguard.core.keys import JwsAlgorithm, KeyMaterial, generate_key
from stepguard.core.methods.base import verified
from stepguard.core.policy import EnvironmentPolicy
from stepguard.core.tokens import (
    MAX_TOKEN_BYTES,
    TOKEN_TYPE,
    ElevatedClaims,
    TokenKeySet,
    TokenSigner,
    UnknownKeyId,
    new_jti,
    unverified_claims,
    verify_elevated_token,
)

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "wycheproof"
NOW = 1_700_000_000
ISS = "https://sg.example"
AUD = "env_test"
CLAIM_NAMES = {"iss", "aud", "sub", "sid", "jti", "iat", "exp", "auth_time", "scope", "amr"}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64json(obj: Any) -> str:
    return b64(json.dumps(obj, separators=(",", ":")).encode())


def claims(**changes: Any) -> ElevatedClaims:
    values: dict[str, Any] = {
        "iss": ISS,
        "aud": AUD,
        "sub": "usr_1",
        "sid": "ses_1",
        "jti": new_jti(),
        "iat": NOW,
        "exp": NOW + 300,
        "auth_time": NOW,
        "scopes": ("wallet:export",),
        "amr": ("otp", "email"),
        "single_use": True,
    }
    values.update(changes)
    return ElevatedClaims(**values)


def payload(**changes: Any) -> dict[str, Any]:
    """A correct payload as a dict; ``None`` values delete the claim."""
    out = claims().to_dict()
    for k, v in changes.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = v
    return out


def raw_sign(material: KeyMaterial, signing_input: bytes) -> bytes:
    key = serialization.load_pem_private_key(material.private_pem, password=None)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(signing_input)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def forge(material: KeyMaterial, header: dict[str, Any] | None = None, body: Any = None) -> str:
    """A token with exactly this header and payload, correctly signed by ``material``."""
    hdr = (
        header
        if header is not None
        else {"alg": material.alg.value, "typ": TOKEN_TYPE, "kid": material.kid}
    )
    body_segment = (
        b64(body) if isinstance(body, bytes) else b64json(payload() if body is None else body)
    )
    signing_input = f"{b64json(hdr)}.{body_segment}"
    return f"{signing_input}.{b64(raw_sign(material, signing_input.encode()))}"


@pytest.fixture(params=[JwsAlgorithm.EDDSA, JwsAlgorithm.ES256], ids=["EdDSA", "ES256"])
def material(request: pytest.FixtureRequest) -> KeyMaterial:
    return generate_key(request.param)


@pytest.fixture
def keys(material: KeyMaterial) -> TokenKeySet:
    ks = TokenKeySet()
    ks.add_material(material)
    return ks


def verify(token: str | None, keys: TokenKeySet, **kw: Any) -> Any:
    args: dict[str, Any] = {
        "keys": keys,
        "expected_issuer": ISS,
        "expected_audience": AUD,
        "now": NOW + 10,
    }
    args.update(kw)
    return verify_elevated_token(token, **args)


# -- round trip -------------------------------------------------------------------------------


def test_round_trip_has_every_claim_and_header(material: KeyMaterial, keys: TokenKeySet) -> None:
    c = claims(scopes=("wallet:export", "wallet:sign"), txn="sha256:abc")
    token = TokenSigner(material).sign(c)
    header_segment = token.split(".")[0]
    header = json.loads(base64.urlsafe_b64decode(header_segment + "=" * (-len(header_segment) % 4)))
    assert header == {"alg": material.alg.value, "typ": "elevated+jwt", "kid": material.kid}

    out = verify(token, keys, expected_scope="wallet:sign", expected_subject="usr_1")
    assert out.claims == c
    assert out.kid == material.kid and out.jti == c.jti and out.single_use is True
    assert set(out.raw) == CLAIM_NAMES | {"single_use", "txn"}
    assert out.raw["scope"] == "wallet:export wallet:sign"
    assert out.raw["amr"] == ["otp", "email"]
    assert unverified_claims(token) == out.raw


def test_public_jwk_is_public_and_pinned(material: KeyMaterial) -> None:
    jwk = material.public_jwk()
    assert "d" not in jwk
    assert jwk["kid"] == material.kid and jwk["alg"] == material.alg.value and jwk["use"] == "sig"
    assert (jwk["kty"], jwk["crv"]) == (
        ("OKP", "Ed25519") if material.alg is JwsAlgorithm.EDDSA else ("EC", "P-256")
    )


def test_key_material_survives_pem_round_trip(material: KeyMaterial) -> None:
    again = KeyMaterial(material.kid, material.alg, material.private_pem)
    token = TokenSigner(again).sign(claims())
    ks = TokenKeySet()
    ks.add_jwk(material.public_jwk())
    assert verify(token, ks).claims.sub == "usr_1"


# -- each check -------------------------------------------------------------------------------


def test_missing_token_is_required(keys: TokenKeySet) -> None:
    for token in (None, ""):
        with pytest.raises(ElevatedTokenRequired) as e:
            verify(token, keys)
        assert e.value.code == "elevated_token_required"


def test_structure_checks(material: KeyMaterial, keys: TokenKeySet) -> None:
    good = TokenSigner(material).sign(claims())
    h, p, s = good.split(".")
    bad = [
        "x" * (MAX_TOKEN_BYTES + 1),
        "abc",
        f"{h}.{p}",
        f"{h}.{p}.{s}.{s}",
        f"{h}..{s}",
        f".{p}.{s}",
        f"{h}.{p}.",
        f"!!!.{p}.{s}",
        f"{b64(b'not json')}.{p}.{s}",
        f"{b64json([1, 2])}.{p}.{s}",
        f"{h}.{p}.{s[:-4]}",
        f"{h}.{p[:-2]}.{s}",
        f"{h}.{p}.{s}=",
        f"{h}=.{p}.{s}",
    ]
    for token in bad:
        with pytest.raises(ElevatedTokenInvalid):
            verify(token, keys)


@pytest.mark.parametrize(
    "change",
    [
        {"typ": None},
        {"typ": "JWT"},
        {"typ": "at+jwt"},
        {"typ": 1},
        {"kid": None},
        {"kid": ""},
        {"alg": "none"},
        {"alg": "HS256"},
        {"alg": "RS256"},
        {"jku": "https://evil.example/jwks.json"},
        {"jwk": {"kty": "OKP"}},
        {"x5u": "https://evil.example/cert"},
        {"crit": ["exp"]},
        {"cty": "JWT"},
    ],
)
def test_header_checks(material: KeyMaterial, keys: TokenKeySet, change: dict[str, Any]) -> None:
    header: dict[str, Any] = {"alg": material.alg.value, "typ": TOKEN_TYPE, "kid": material.kid}
    for k, v in change.items():
        if v is None:
            header.pop(k)
        else:
            header[k] = v
    with pytest.raises(ElevatedTokenInvalid):
        verify(forge(material, header), keys)


def test_typ_variants_accepted(material: KeyMaterial, keys: TokenKeySet) -> None:
    for typ in ("elevated+jwt", "application/elevated+jwt", "Elevated+JWT"):
        header = {"alg": material.alg.value, "typ": typ, "kid": material.kid}
        assert verify(forge(material, header), keys).claims.sub == "usr_1"


def test_algorithm_of_the_other_kind_is_refused(material: KeyMaterial, keys: TokenKeySet) -> None:
    other = JwsAlgorithm.ES256 if material.alg is JwsAlgorithm.EDDSA else JwsAlgorithm.EDDSA
    header = {"alg": other.value, "typ": TOKEN_TYPE, "kid": material.kid}
    with pytest.raises(ElevatedTokenInvalid, match="algorithm"):
        verify(forge(material, header), keys)


def test_unknown_kid_and_foreign_key(material: KeyMaterial, keys: TokenKeySet) -> None:
    stranger = generate_key(material.alg)
    with pytest.raises(UnknownKeyId):
        verify(TokenSigner(stranger).sign(claims()), keys)
    # Another key claiming our kid: the signature does not verify.
    impostor = KeyMaterial(material.kid, material.alg, stranger.private_pem)
    with pytest.raises(ElevatedTokenInvalid, match="signature"):
        verify(TokenSigner(impostor).sign(claims()), keys)


def test_tampered_payload_is_refused(material: KeyMaterial, keys: TokenKeySet) -> None:
    h, _, s = TokenSigner(material).sign(claims()).split(".")
    evil = b64json(payload(sub="usr_admin"))
    with pytest.raises(ElevatedTokenInvalid, match="signature"):
        verify(f"{h}.{evil}.{s}", keys)


def test_payload_must_be_a_json_object(material: KeyMaterial, keys: TokenKeySet) -> None:
    for body in (b"[1,2]", b"not json", b'"str"', b"\xff\xfe"):
        with pytest.raises(ElevatedTokenInvalid):
            verify(forge(material, body=body), keys)


def test_time_checks(material: KeyMaterial, keys: TokenKeySet) -> None:
    token = TokenSigner(material).sign(claims(exp=NOW + 300))
    assert verify(token, keys, now=NOW + 300 + 60).claims.exp == NOW + 300  # within leeway
    with pytest.raises(ElevatedTokenExpired) as e:
        verify(token, keys, now=NOW + 300 + 61)
    assert e.value.code == "elevated_token_expired"
    with pytest.raises(ElevatedTokenExpired):
        verify(token, keys, now=NOW + 300 + 61, leeway=3600)  # leeway is capped at 60 s
    with pytest.raises(ElevatedTokenExpired):
        verify(token, keys, now=NOW + 301, leeway=0)
    future = forge(material, body=payload(iat=NOW + 200, exp=NOW + 500))
    with pytest.raises(ElevatedTokenInvalid, match="future"):
        verify(future, keys)
    not_yet = forge(material, body=payload(nbf=NOW + 200))
    with pytest.raises(ElevatedTokenInvalid, match="not yet"):
        verify(not_yet, keys)


@pytest.mark.parametrize(
    "change",
    [
        {"iss": "https://evil.example"},
        {"iss": None},
        {"aud": "env_other"},
        {"aud": ["env_other"]},
        {"aud": None},
        {"sub": None},
        {"sub": ""},
        {"sub": 7},
        {"sid": None},
        {"jti": None},
        {"exp": None},
        {"exp": "1700000300"},
        {"exp": True},
        {"iat": None},
        {"auth_time": None},
        {"scope": None},
        {"scope": ""},
        {"scope": ["wallet:export"]},
        {"single_use": None},
        {"single_use": "true"},
        {"amr": "otp"},
        {"amr": [1]},
        {"txn": 5},
    ],
)
def test_claim_checks(material: KeyMaterial, keys: TokenKeySet, change: dict[str, Any]) -> None:
    with pytest.raises(ElevatedTokenInvalid):
        verify(forge(material, body=payload(**change)), keys)


def test_non_finite_or_huge_times_are_refused_not_crashing(
    material: KeyMaterial, keys: TokenKeySet
) -> None:
    """Regression: ``exp: 1e400`` parses as infinity and used to raise OverflowError."""
    for literal in (b"1e400", b"-1e400", b"NaN", b"Infinity"):
        body = json.dumps(payload()).encode().replace(str(NOW + 300).encode(), literal)
        with pytest.raises(ElevatedTokenError):
            verify(forge(material, body=body), keys)
    huge = forge(material, body=payload(exp=10**400))
    assert verify(huge, keys).claims.exp == 10**400  # a (silly) far expiry, still no crash


def test_audience_list_containing_ours_is_accepted(
    material: KeyMaterial, keys: TokenKeySet
) -> None:
    token = forge(material, body=payload(aud=["env_other", AUD]))
    assert verify(token, keys).claims.aud == AUD


def test_subject_session_scope_and_age(material: KeyMaterial, keys: TokenKeySet) -> None:
    token = TokenSigner(material).sign(claims(auth_time=NOW - 100))
    with pytest.raises(SubjectMismatch) as e:
        verify(token, keys, expected_subject="usr_2")
    assert e.value.code == "subject_mismatch"
    with pytest.raises(SubjectMismatch):
        verify(token, keys, expected_session="ses_2")
    with pytest.raises(ScopeNotGranted) as s:
        verify(token, keys, expected_scope=["wallet:export", "wallet:sign"])
    assert s.value.code == "scope_not_granted" and s.value.extra["scope"] == "wallet:sign"
    with pytest.raises(ScopeNotGranted):
        verify(token, keys, expected_scope="wallet:expor")  # no prefix matching
    assert verify(token, keys, max_age=110).claims.auth_time == NOW - 100
    with pytest.raises(AuthTooOld) as a:
        verify(token, keys, max_age=109)
    assert a.value.code == "elevated_token_expired" and a.value.extra["max_age"] == 109


# -- policy to claims (core.elevation) --------------------------------------------------------


def _request(session_expires_at: float = NOW + 86_400) -> ElevationRequest:
    return ElevationRequest(ISS, AUD, "usr_1", "ses_1", session_expires_at)


def test_claims_follow_policy_and_never_outlive_the_session() -> None:
    policy = EnvironmentPolicy()
    factor = verified(MethodName.EMAIL_OTP, now=NOW - 5, credential_id="cred_1")
    eff = decide_elevation(policy, ["wallet:export", "user:update"], factor, user_has_mfa=False)
    c = build_claims(_request(), eff, factor, now=NOW)
    assert (c.exp - c.iat, c.single_use, c.scopes) == (300, True, ("user:update", "wallet:export"))
    assert c.auth_time == NOW - 5 and c.amr == ("otp", "email")
    short = build_claims(_request(NOW + 42), eff, factor, now=NOW)
    assert short.exp == NOW + 42


def test_decide_elevation_refusals() -> None:
    email = verified(MethodName.EMAIL_OTP, now=NOW)
    with pytest.raises(MfaRequired):
        decide_elevation(EnvironmentPolicy(), ["user:update"], email, user_has_mfa=True)
    no_mfa_rule = EnvironmentPolicy.from_dict({"mfa_enabled": False})
    assert decide_elevation(no_mfa_rule, ["user:update"], email, user_has_mfa=True).scopes
    only_totp = EnvironmentPolicy.from_dict(
        {"scopes": {"user:update": {"allowed_methods": ["totp"]}}}
    )
    with pytest.raises(MethodNotAllowed):
        decide_elevation(only_totp, ["user:update"], email, user_has_mfa=False)
    sms = verified(MethodName.SMS_OTP, now=NOW)
    with pytest.raises(MethodNotAllowed):  # SMS is off by default
        decide_elevation(EnvironmentPolicy(), ["user:update"], sms, user_has_mfa=False)
    bound = EnvironmentPolicy.from_dict({"scopes": {"wallet:sign": {"bind_transaction": True}}})
    with pytest.raises(ValidationFailed):
        decide_elevation(bound, ["wallet:sign"], email, user_has_mfa=False)
    assert decide_elevation(bound, ["wallet:sign"], email, user_has_mfa=False, txn="sha256:x")


# -- Wycheproof -------------------------------------------------------------------------------


def _groups(name: str) -> list[dict[str, Any]]:
    data = json.loads((VECTORS / name).read_text())
    return list(data["testGroups"])


def _jwks_of(group: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for field in ("private", "public"):
        doc = group.get(field)
        if isinstance(doc, dict):
            found.extend(doc["keys"] if "keys" in doc else [doc])
    return found


def _acceptable(jwk: dict[str, Any]) -> bool:
    """What our keyset must accept: a public P-256 or Ed25519 signing key, and nothing else."""
    ops = jwk.get("key_ops")
    return (
        "d" not in jwk
        and jwk.get("use", "sig") == "sig"
        and (ops is None or "verify" in ops)
        and (
            (jwk.get("kty"), jwk.get("crv"), jwk.get("alg"))
            in {("EC", "P-256", "ES256"), ("EC", "P-256", None)}
        )
    )


def _signature_stage(token: str, keys: TokenKeySet) -> bool:
    """Our real per-key signature check (the step ``verify_elevated_token`` runs after its header
    checks), for JWS that lack our ``typ`` and so never get that far through the full path."""
    parts = token.split(".")
    if len(parts) != 3 or not all(parts):
        return False
    try:
        header = json.loads(base64.urlsafe_b64decode(parts[0] + "=" * (-len(parts[0]) % 4)))
        kid = header["kid"]
        found = keys.lookup(kid)
        check = keys._signature_check(kid)
        if found is None or check is None or header.get("alg") != found[0].value:
            return False
        if set(header) - {"alg", "kid", "typ"}:
            return False
        sig = base64.urlsafe_b64decode(parts[2] + "=" * (-len(parts[2]) % 4))
        base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
    except (ValueError, KeyError, TypeError):
        return False
    return check(f"{parts[0]}.{parts[1]}".encode(), sig)


def _wycheproof_cases() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    out = []
    for name in ("json_web_signature_test.json", "json_web_key_test.json"):
        for g in _groups(name):
            for t in g["tests"]:
                out.append((name, g, t))
    return out


def test_wycheproof_keys_we_do_not_support_are_refused() -> None:
    accepted: list[dict[str, Any]] = []
    refused = 0
    for name in ("json_web_signature_test.json", "json_web_key_test.json"):
        for g in _groups(name):
            for jwk in _jwks_of(g):
                ks = TokenKeySet()
                if not _acceptable(jwk):
                    with pytest.raises(ValueError):
                        ks.add_jwk(jwk)
                    assert len(ks) == 0
                    refused += 1
                    continue
                try:
                    ks.add_jwk(jwk)
                except ValueError:
                    # Only a key that is not a valid point may fail here.
                    assert any(t["comment"] == "rejectsModifiedKey" for t in g["tests"]), jwk
                    refused += 1
                else:
                    accepted.append(jwk)
    # RSA, HMAC, AES, P-521, enc keys, private keys, bad points, mismatched alg/curve...
    assert refused > 40
    assert {j["y"] for j in accepted} == {"UI8exy-C06a7DUnjIdENkxeFtHM4-l_41LqEw9nVgmw"}


def test_wycheproof_jws_vectors() -> None:
    """Every JWS is refused by ``verify_elevated_token`` (none carries ``typ: elevated+jwt``), and
    for every vector whose key we accept (ES256), our signature check agrees with Wycheproof:
    valid ones verify, every 'invalid' one is rejected."""
    checked = {"valid": 0, "invalid": 0}
    for name, group, t in _wycheproof_cases():
        token = t["jws"]
        if not isinstance(token, str) or token.startswith("{"):
            continue  # JSON serialization: we only take the compact form
        public = group.get("public") or group["private"]
        docs = public["keys"] if "keys" in public else [public]
        ks = TokenKeySet.from_jwks({"keys": docs})
        with pytest.raises(ElevatedTokenError):
            verify_elevated_token(
                token, keys=ks, expected_issuer=ISS, expected_audience=AUD, now=NOW
            )
        if len(ks) == 0:
            continue  # key refused when added (see the test above): nothing can verify
        verdict = _signature_stage(token, ks)
        assert verdict is (t["result"] == "valid"), (name, t["tcId"], t["comment"])
        checked[t["result"]] += 1
    assert checked["valid"] >= 2 and checked["invalid"] >= 30, checked


def test_wycheproof_duplicate_kid_keysets_trust_neither() -> None:
    ec_pub = {
        "kty": "EC",
        "crv": "P-256",
        "kid": "k",
        "x": "04N0xi21hshyvBp7I167sbE_bXqyqkAPfefdklMO7wY",
        "y": "UI8exy-C06a7DUnjIdENkxeFtHM4-l_41LqEw9nVgmw",
    }
    other = generate_key(JwsAlgorithm.ES256).public_jwk()
    ks = TokenKeySet.from_jwks({"keys": [ec_pub, {**other, "kid": "k"}]})
    assert "k" not in ks
