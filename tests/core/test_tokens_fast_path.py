"""The direct signing/verification path in ``stepguard.core.tokens`` is equivalent to joserfc's.

``TokenSigner`` signs and ``verify_elevated_token`` verifies without going through
``jws.serialize_compact``/``jws.deserialize_compact`` (libsodium for Ed25519). These tests use joserfc
as the oracle: identical bytes out of the signer, the same accept/reject verdict on every tampered
token, plus the Wycheproof and ed25519-speccheck vectors for the signature checks themselves.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from joserfc import jws
from joserfc.errors import JoseError

from stepguard.core.errors import ElevatedTokenInvalid
from stepguard.core.keys import JwsAlgorithm, KeyMaterial, generate_key
from stepguard.core.tokens import (
    TOKEN_TYPE,
    ElevatedClaims,
    TokenKeySet,
    TokenSigner,
    UnknownKeyId,
    _Registry,
    _SignatureCheck,
    verify_elevated_token,
)

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
NOW = 1_700_000_100
ISS, AUD = "https://stepguard.example.test", "https://api.example.test"
B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(**over: Any) -> ElevatedClaims:
    base: dict[str, Any] = {
        "iss": ISS,
        "aud": AUD,
        "sub": "user-1",
        "sid": "sess-1",
        "jti": "jti-0001",
        "iat": NOW - 10,
        "exp": NOW + 290,
        "auth_time": NOW - 10,
        "scopes": ("payments:write",),
        "amr": ("otp",),
        "single_use": True,
        "txn": "txn-7",
    }
    base.update(over)
    return ElevatedClaims(**base)


def verify(token: str, keys: TokenKeySet) -> object:
    return verify_elevated_token(
        token, keys=keys, expected_issuer=ISS, expected_audience=AUD, now=NOW
    )


def joserfc_sign(material: KeyMaterial, header: dict[str, Any], payload: bytes) -> str:
    """The reference signer: what ``TokenSigner`` did before the direct path."""
    return jws.serialize_compact(
        header,
        payload,
        material.private_key(),
        algorithms=[material.alg.value],
        registry=_Registry(algorithms=[material.alg.value]),
    )


def raw_sign(material: KeyMaterial, signing_input: bytes) -> bytes:
    """A valid JWS signature over arbitrary bytes (to build well-signed but odd tokens)."""
    key = load_pem_private_key(material.private_pem, password=None)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(signing_input)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def reference_accepts(token: str, keys: TokenKeySet) -> bool:
    """joserfc's verdict on the signature step, after the same header routing as ours."""
    try:
        header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
        found = keys.lookup(header["kid"])
        assert found is not None
        alg, key, registry = found
        if header.get("alg") != alg.value or set(header) - {"alg", "typ", "kid"}:
            return False
        jws.deserialize_compact(token, key, algorithms=[alg.value], registry=registry)
    except (JoseError, ValueError, UnicodeError, KeyError, TypeError, AssertionError):
        return False
    return True


def fast_accepts(token: str, keys: TokenKeySet) -> bool:
    try:
        verify(token, keys)
    except ElevatedTokenInvalid:
        return False
    return True


@pytest.fixture(params=list(JwsAlgorithm), ids=lambda a: a.value)
def setup(request: pytest.FixtureRequest) -> tuple[KeyMaterial, TokenSigner, TokenKeySet]:
    material = generate_key(request.param)
    keys = TokenKeySet()
    keys.add_material(material)
    return material, TokenSigner(material), keys


# ------------------------------------------------------------------------------------- signing


def test_eddsa_token_is_byte_identical_to_joserfc() -> None:
    material = generate_key(JwsAlgorithm.EDDSA)
    signer = TokenSigner(material)
    for c in (claims(), claims(txn=None, amr=(), scopes=("a", "b:c")), claims(sub="ü-ñ")):
        header = {"alg": "EdDSA", "typ": TOKEN_TYPE, "kid": material.kid}
        payload = json.dumps(c.to_dict(), separators=(",", ":")).encode()
        assert signer.sign(c) == joserfc_sign(material, header, payload)  # Ed25519 is deterministic


def test_es256_token_matches_joserfc_and_verifies_there() -> None:
    material = generate_key(JwsAlgorithm.ES256)
    signer = TokenSigner(material)
    c = claims()
    ours = signer.sign(c)
    header = {"alg": "ES256", "typ": TOKEN_TYPE, "kid": material.kid}
    theirs = joserfc_sign(material, header, json.dumps(c.to_dict(), separators=(",", ":")).encode())
    assert ours.rsplit(".", 1)[0] == theirs.rsplit(".", 1)[0]  # same header and payload segments
    assert len(base64.urlsafe_b64decode(ours.rsplit(".", 1)[1] + "==")) == 64  # r || s, not DER
    keys = TokenKeySet()
    keys.add_material(material)
    _, key, registry = keys.lookup(material.kid)  # type: ignore[misc]
    obj = jws.deserialize_compact(ours, key, algorithms=["ES256"], registry=registry)
    assert json.loads(obj.payload)["jti"] == c.jti
    assert fast_accepts(theirs, keys)


# ------------------------------------------------------------------------------------ verifying


def test_valid_token_accepted_by_both(setup: tuple[KeyMaterial, TokenSigner, TokenKeySet]) -> None:
    _, signer, keys = setup
    token = signer.sign(claims())
    assert reference_accepts(token, keys) and fast_accepts(token, keys)
    assert verify(token, keys).jti == "jti-0001"  # type: ignore[attr-defined]


def test_every_single_character_tamper_is_rejected_like_joserfc(
    setup: tuple[KeyMaterial, TokenSigner, TokenKeySet],
) -> None:
    _, signer, keys = setup
    token = signer.sign(claims())
    checked = 0
    for i, ch in enumerate(token):
        if ch == ".":
            continue
        for repl in (B64URL[(B64URL.index(ch) + 1) % 64], B64URL[(B64URL.index(ch) + 33) % 64]):
            bad = token[:i] + repl + token[i + 1 :]
            ref, fast = reference_accepts(bad, keys), fast_accepts(bad, keys)
            assert ref == fast, (i, repl)
            # Changing the last character's low bits can leave the bytes unchanged; joserfc
            # rejects that non-canonical form, and so must we.
            assert not fast, (i, repl)
            checked += 1
    assert checked > 2 * 400


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda t: t + "=", id="padding-on-signature"),
        pytest.param(lambda t: t.replace(".", "=.", 1), id="padding-on-header"),
        pytest.param(
            lambda t: t.rsplit(".", 1)[0] + "." + "+" + t.rsplit(".", 1)[1][1:], id="std-b64"
        ),
        pytest.param(lambda t: t[:-1], id="truncated-signature"),
        pytest.param(lambda t: t[:-2], id="two-chars-short"),
        pytest.param(lambda t: t + "AA", id="two-chars-long"),
        pytest.param(lambda t: t.rsplit(".", 1)[0] + ".", id="empty-signature"),
        pytest.param(lambda t: t.rsplit(".", 1)[0] + "." + b64(b"\0" * 64), id="zero-signature"),
        pytest.param(lambda t: t.rsplit(".", 1)[0] + "." + b64(b"\0" * 63), id="63-byte-signature"),
        pytest.param(lambda t: t.rsplit(".", 1)[0] + "." + b64(b"\1" * 65), id="65-byte-signature"),
        pytest.param(lambda t: t[:20] + " " + t[20:], id="space-in-header"),
        pytest.param(lambda t: t.replace(".", ".\u00e9", 1), id="non-ascii-in-payload"),
        pytest.param(lambda t: t + ".x", id="four-parts"),
    ],
)
def test_malformed_encodings_rejected_like_joserfc(
    setup: tuple[KeyMaterial, TokenSigner, TokenKeySet], mutate: Any
) -> None:
    _, signer, keys = setup
    bad = mutate(signer.sign(claims()))
    assert reference_accepts(bad, keys) is False
    with pytest.raises(ElevatedTokenInvalid):
        verify(bad, keys)


def test_wrong_alg_in_header_rejected(setup: tuple[KeyMaterial, TokenSigner, TokenKeySet]) -> None:
    material, signer, keys = setup
    token = signer.sign(claims())
    _, payload, sig = token.split(".")
    other = "ES256" if material.alg is JwsAlgorithm.EDDSA else "EdDSA"
    for alg in (other, "none", "HS256", "RS256", "eddsa"):
        header = b64(json.dumps({"alg": alg, "typ": TOKEN_TYPE, "kid": material.kid}).encode())
        with pytest.raises(ElevatedTokenInvalid, match="algorithm not allowed"):
            verify(f"{header}.{payload}.{sig}", keys)
    # alg "none" with an empty signature never reaches the key at all.
    none = b64(json.dumps({"alg": "none", "typ": TOKEN_TYPE, "kid": material.kid}).encode())
    with pytest.raises(ElevatedTokenInvalid):
        verify(f"{none}.{payload}.", keys)


def test_tampered_payload_and_header_with_valid_looking_parts_rejected(
    setup: tuple[KeyMaterial, TokenSigner, TokenKeySet],
) -> None:
    material, signer, keys = setup
    token = signer.sign(claims())
    header, _, sig = token.split(".")
    forged = b64(json.dumps({**claims(sub="admin").to_dict()}, separators=(",", ":")).encode())
    assert not reference_accepts(f"{header}.{forged}.{sig}", keys)
    with pytest.raises(ElevatedTokenInvalid, match="bad signature"):
        verify(f"{header}.{forged}.{sig}", keys)
    # A header re-encoded with the same meaning changes the signing input: rejected too.
    spaced = b64(
        json.dumps({"alg": material.alg.value, "typ": TOKEN_TYPE, "kid": material.kid}).encode()
    )
    assert not reference_accepts(f"{spaced}.{token.split('.')[1]}.{sig}", keys)
    with pytest.raises(ElevatedTokenInvalid, match="bad signature"):
        verify(f"{spaced}.{token.split('.')[1]}.{sig}", keys)


def test_signature_by_another_key_with_the_same_kid_rejected(
    setup: tuple[KeyMaterial, TokenSigner, TokenKeySet],
) -> None:
    material, _, keys = setup
    impostor = KeyMaterial(material.kid, material.alg, generate_key(material.alg).private_pem)
    token = TokenSigner(impostor).sign(claims())
    assert not reference_accepts(token, keys)
    with pytest.raises(ElevatedTokenInvalid, match="bad signature"):
        verify(token, keys)
    keys.remove(material.kid)
    with pytest.raises(UnknownKeyId):
        verify(token, keys)


def test_oversized_header_rejected_even_when_signed(
    setup: tuple[KeyMaterial, TokenSigner, TokenKeySet],
) -> None:
    # joserfc caps the header segment at 512 bytes; the direct path keeps that cap.
    material, signer, keys = setup
    payload = signer.sign(claims()).split(".")[1]
    for pad in (300, 400):
        raw = json.dumps({"alg": material.alg.value, "typ": TOKEN_TYPE, "kid": material.kid})
        header = b64((raw[:-1] + " " * pad + "}").encode())
        signing_input = f"{header}.{payload}"
        token = f"{signing_input}.{b64(raw_sign(material, signing_input.encode()))}"
        assert fast_accepts(token, keys) == reference_accepts(token, keys) == (len(header) <= 512)


def test_non_json_payload_that_is_validly_signed_rejected(
    setup: tuple[KeyMaterial, TokenSigner, TokenKeySet],
) -> None:
    material, _, keys = setup
    header = b64(
        json.dumps({"alg": material.alg.value, "typ": TOKEN_TYPE, "kid": material.kid}).encode()
    )
    for body in (b"not json", b"\xff\xfe\x00", b"[1,2]"):
        signing_input = f"{header}.{b64(body)}"
        token = f"{signing_input}.{b64(raw_sign(material, signing_input.encode()))}"
        with pytest.raises(ElevatedTokenInvalid):
            verify(token, keys)


def test_es256_malleated_signature_gets_the_same_verdict_as_joserfc() -> None:
    # (r, n - s) is also a valid ECDSA signature; both paths must agree on it (both accept:
    # single-use tokens are consumed by jti, not by token bytes, so this opens no replay).
    material = generate_key(JwsAlgorithm.ES256)
    keys = TokenKeySet()
    keys.add_material(material)
    token = TokenSigner(material).sign(claims())
    head, sig = token.rsplit(".", 1)
    raw = base64.urlsafe_b64decode(sig + "==")
    r, s = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
    flipped = f"{head}.{b64(r.to_bytes(32, 'big') + (P256_ORDER - s).to_bytes(32, 'big'))}"
    assert fast_accepts(flipped, keys) == reference_accepts(flipped, keys)
    der = f"{head}.{b64(encode_dss_signature(r, s))}"  # DER instead of r || s
    assert fast_accepts(der, keys) is False and reference_accepts(der, keys) is False


# ------------------------------------------------------------------------- signature vectors


def _wycheproof(name: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    data = json.loads((VECTORS / "wycheproof" / name).read_text())
    out = []
    for g in data["testGroups"]:
        jwk = g.get("publicKeyJwk")
        if jwk is None:  # a few EC groups only give the point's coordinates in hex
            pub = g["publicKey"]
            jwk = {
                "kty": "EC",
                "crv": "P-256",
                "x": b64(bytes.fromhex(pub["wx"].rjust(64, "0")[-64:])),
                "y": b64(bytes.fromhex(pub["wy"].rjust(64, "0")[-64:])),
            }
        out += [(jwk, t) for t in g["tests"]]
    return out


def _check(alg: JwsAlgorithm, jwk: dict[str, Any]) -> _SignatureCheck:
    keys = TokenKeySet()
    keys.add_jwk({**jwk, "kid": "k", "alg": alg.value})
    check = keys._signature_check("k")
    assert check is not None
    return check


def test_ed25519_check_matches_wycheproof_and_openssl() -> None:
    cases = _wycheproof("ed25519_test.json")
    assert len(cases) == 151
    for jwk, t in cases:
        msg, sig = bytes.fromhex(t["msg"]), bytes.fromhex(t["sig"])
        expected = t["result"] == "valid"
        assert _check(JwsAlgorithm.EDDSA, jwk)(msg, sig) is expected, t["tcId"]
        keys = TokenKeySet()
        keys.add_jwk({**jwk, "kid": "k"})
        _, key, _ = keys.lookup("k")  # type: ignore[misc]
        try:
            key.get_op_key("verify").verify(sig, msg)
            openssl = True
        except Exception:
            openssl = False
        assert openssl is expected, t["tcId"]


def test_es256_check_matches_wycheproof_p1363() -> None:
    cases = _wycheproof("ecdsa_secp256r1_sha256_p1363_test.json")
    assert len(cases) == 262
    for jwk, t in cases:
        verdict = _check(JwsAlgorithm.ES256, jwk)(bytes.fromhex(t["msg"]), bytes.fromhex(t["sig"]))
        assert verdict is (t["result"] == "valid"), t["tcId"]


def test_ed25519_check_never_accepts_what_openssl_rejects_speccheck() -> None:
    # ed25519-speccheck: small-order and non-canonical points. libsodium is the stricter one.
    cases = json.loads((VECTORS / "ed25519-speccheck" / "cases.json").read_text())
    accepted_by_sodium = []
    for i, c in enumerate(cases):
        pk, msg, sig = (bytes.fromhex(c[k]) for k in ("pub_key", "message", "signature"))
        try:
            ed25519.Ed25519PublicKey.from_public_bytes(pk).verify(sig, msg)
            openssl = True
        except Exception:
            openssl = False
        try:
            sodium = _check(JwsAlgorithm.EDDSA, {"kty": "OKP", "crv": "Ed25519", "x": b64(pk)})(
                msg, sig
            )
        except (ValueError, JoseError):
            sodium = False  # a key joserfc refuses to import never verifies anything
        assert not (sodium and not openssl), i
        if sodium:
            accepted_by_sodium.append(i)
    assert accepted_by_sodium == [3]  # the one plain, canonical case (speccheck README, case 3)


def test_check_rejects_wrong_length_signatures() -> None:
    for alg in JwsAlgorithm:
        material = generate_key(alg)
        keys = TokenKeySet()
        keys.add_material(material)
        check = keys._signature_check(material.kid)
        assert check is not None
        sig = raw_sign(material, b"msg")
        assert check(b"msg", sig) is True
        assert check(b"msg!", sig) is False
        for bad in (b"", sig[:-1], sig + b"\0", sig * 2):
            assert check(b"msg", bad) is False


def test_error_messages_unchanged_for_header_encodings(
    setup: tuple[KeyMaterial, TokenSigner, TokenKeySet],
) -> None:
    # Before the direct path, the header was parsed leniently first and joserfc then rejected
    # a non-strict encoding as a bad signature; the reported errors stay the same.
    _, signer, keys = setup
    token = signer.sign(claims())
    head, payload, sig = token.split(".")
    padded = head + "=" * (-len(head) % 4 or 4)
    for header in (padded, head + "="):
        with pytest.raises(ElevatedTokenInvalid, match="^bad signature$"):
            verify(f"{header}.{payload}.{sig}", keys)
    for header in (b64(b"not json"), b64(b"[1]"), "%%%", "\u00e9", head[:10] + "\n" + head[10:]):
        with pytest.raises(ElevatedTokenInvalid, match="^malformed token header$"):
            verify(f"{header}.{payload}.{sig}", keys)
