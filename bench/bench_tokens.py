"""Elevated tokens: mint and verify against the raw signature floors (performance.md §2.1, §3 G1/G12).

Floors are measured in the same run on the same signing input (the token's ``header.payload``):
``cryptography`` sign/verify with the key object already loaded, and libsodium (PyNaCl) Ed25519
verify. Goal (issue target, G1): our full verify, claim checks included, <= 1.5x the raw verify of
its algorithm. The "parse only" and "joserfc compact verify" rows show where the rest goes.
"""

from __future__ import annotations

import base64
import json

import nacl.signing
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from joserfc import jws

from bench._harness import Case, Report
from stepguard.core.keys import JwsAlgorithm, generate_key
from stepguard.core.tokens import (
    ElevatedClaims,
    TokenKeySet,
    TokenSigner,
    new_jti,
    verify_elevated_token,
)

NOW = 1_700_000_100
ISSUER = "https://stepguard.example.test"
AUDIENCE = "https://api.example.test"
VERIFY_GOAL = 1.5


def _claims() -> ElevatedClaims:
    # Representative of a real grant: 12 claims like the token measured in performance.md §2.0.
    return ElevatedClaims(
        iss=ISSUER,
        aud=AUDIENCE,
        sub="user_3f9a1c2e7b",
        sid="sess_9b1f0c47d2e8",
        jti=new_jti(),
        iat=NOW - 10,
        exp=NOW + 290,
        auth_time=NOW - 10,
        scopes=("payments:write", "profile:email"),
        amr=("otp", "mfa"),
        single_use=False,
        txn="txn_4711",
    )


def _b64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def run(report: Report) -> None:
    for alg in (JwsAlgorithm.EDDSA, JwsAlgorithm.ES256):
        _bench_alg(report, alg)


def _bench_alg(report: Report, alg: JwsAlgorithm) -> None:
    material = generate_key(alg)
    signer = TokenSigner(material)
    keys = TokenKeySet()
    keys.add_material(material)
    claims = _claims()
    token = signer.sign(claims)
    signing_input, _, sig_b64 = token.rpartition(".")
    message = signing_input.encode()
    signature = _b64(sig_b64)
    private = load_pem_private_key(material.private_pem, password=None)
    public = private.public_key()
    _, joserfc_key, registry = keys.lookup(material.kid)  # type: ignore[misc]

    def verify() -> object:
        return verify_elevated_token(
            token,
            keys=keys,
            expected_issuer=ISSUER,
            expected_audience=AUDIENCE,
            expected_scope="payments:write",
            now=NOW,
        )

    def parse_only() -> object:
        h, p, _s = token.split(".")
        return json.loads(_b64(h)), json.loads(_b64(p)), _b64(_s)

    def joserfc_verify() -> object:
        return jws.deserialize_compact(token, joserfc_key, [alg.value], registry=registry)

    cases: list[Case]
    a = alg.value
    if alg is JwsAlgorithm.EDDSA:
        assert isinstance(private, ed25519.Ed25519PrivateKey)
        assert isinstance(public, ed25519.Ed25519PublicKey)
        raw_pub = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        nacl_key = nacl.signing.VerifyKey(raw_pub)
        priv_ed, pub_ed = private, public
        cases = [
            Case(f"{a} raw sign (cryptography)", lambda: priv_ed.sign(message), floor=True),
            Case(
                f"{a} raw verify (cryptography)",
                lambda: pub_ed.verify(signature, message),
                floor=True,
            ),
            Case(
                f"{a} raw verify (PyNaCl/libsodium)",
                lambda: nacl_key.verify(message, signature),
                vs=f"{a} raw verify (cryptography)",
            ),
        ]
    else:
        assert isinstance(private, ec.EllipticCurvePrivateKey)
        assert isinstance(public, ec.EllipticCurvePublicKey)
        der = encode_dss_signature(
            int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
        )
        ecdsa = ec.ECDSA(hashes.SHA256())
        priv_ec, pub_ec = private, public
        cases = [
            Case(f"{a} raw sign (cryptography)", lambda: priv_ec.sign(message, ecdsa), floor=True),
            Case(
                f"{a} raw verify (cryptography)",
                lambda: pub_ec.verify(der, message, ecdsa),
                floor=True,
            ),
        ]
    raw_verify = f"{a} raw verify (cryptography)"
    cases += [
        Case(f"{a} parse only (b64+json, no crypto)", parse_only, vs=raw_verify),
        Case(f"{a} joserfc compact verify", joserfc_verify, vs=raw_verify),
        Case(
            f"{a} mint (TokenSigner.sign)",
            lambda: signer.sign(claims),
            vs=f"{a} raw sign (cryptography)",
        ),
        Case(f"{a} verify (verify_elevated_token)", verify, vs=raw_verify, max_ratio=VERIFY_GOAL),
    ]
    report.section(f"{a} ({len(token)}-byte token, {len(message)}-byte signing input)")
    results = report.group(cases)
    ours = results[-1]
    if alg is JwsAlgorithm.EDDSA:
        sodium = report.find(f"{a} raw verify (PyNaCl/libsodium)")
        report.note(
            f"{a} verify_elevated_token = {ours.median_s / sodium.median_s:.2f}x the PyNaCl "
            f"verify; PyNaCl = {sodium.ratio:.2f}x OpenSSL Ed25519 (G12 goal <= 0.75x)"
        )
    mint = report.find(f"{a} mint (TokenSigner.sign)")
    report.note(f"{a}: {mint.ops_per_s:,.0f} mint/s, {ours.ops_per_s:,.0f} verify/s per core")
