"""Solana wallets: Ed25519 vectors (Wycheproof, RFC 8032, ed25519-speccheck), key binding checks
and the SIWS step-up flow signed by a real PyNaCl key (security-requirements items 40-41)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import base58
import pytest
from nacl.signing import SigningKey

from stepguard.core.assurance import FactorKind, MethodName
from stepguard.core.errors import CodeExpired, InvalidSignature, ValidationFailed
from stepguard.core.methods._wallet import MalformedSignInMessage
from stepguard.core.methods.solana import (
    SiwsState,
    SolanaMethod,
    build_siws_message,
    check_linkable_public_key,
    decode_address,
    parse_siws_message,
    verify_ed25519,
)

VECTORS = Path(__file__).resolve().parents[2] / "vectors"
ED25519_L = 2**252 + 27742317777372353535851937790883648493
NOW = 1_700_000_000.0
DOMAIN = "wallet.example"
URI = "https://wallet.example/step-up"
method = SolanaMethod()


def load(name: str) -> Any:
    return json.loads((VECTORS / name).read_text())


# --- Ed25519 vectors ----------------------------------------------------------------------

WYCHEPROOF = load("wycheproof/ed25519_test.json")
WYCHEPROOF_CASES = [
    (group["publicKey"]["pk"], test)
    for group in WYCHEPROOF["testGroups"]
    for test in group["tests"]
]


def test_wycheproof_case_count() -> None:
    assert len(WYCHEPROOF_CASES) == WYCHEPROOF["numberOfTests"] == 151


@pytest.mark.parametrize(
    ("pk", "case"), WYCHEPROOF_CASES, ids=[f"tc{t['tcId']}" for _, t in WYCHEPROOF_CASES]
)
def test_wycheproof(pk: str, case: dict[str, Any]) -> None:
    # libsodium agrees with every verdict (no exceptions to document).
    args = (bytes.fromhex(pk), bytes.fromhex(case["msg"]), bytes.fromhex(case["sig"]))
    if case["result"] == "valid":
        verify_ed25519(*args)
    else:
        with pytest.raises(InvalidSignature):
            verify_ed25519(*args)


RFC8032 = load("rfc8032_ed25519.json")["cases"]


@pytest.mark.parametrize("case", RFC8032, ids=[c["name"] for c in RFC8032])
def test_rfc8032(case: dict[str, str]) -> None:
    pk = bytes.fromhex(case["public_key_hex"])
    msg = bytes.fromhex(case["message_hex"])
    sig = bytes.fromhex(case["signature_hex"])
    key = SigningKey(bytes.fromhex(case["secret_key_hex"]))
    assert bytes(key.verify_key) == pk
    assert key.sign(msg).signature == sig
    verify_ed25519(pk, msg, sig)
    check_linkable_public_key(pk)
    with pytest.raises(InvalidSignature):
        verify_ed25519(pk, msg + b"\x00", sig)
    # S + L is the same scalar mod L but non-canonical: refused (Wycheproof SignatureMalleability).
    s = int.from_bytes(sig[32:], "little")
    with pytest.raises(InvalidSignature):
        verify_ed25519(pk, msg, sig[:32] + (s + ED25519_L).to_bytes(32, "little"))


SPECCHECK = load("ed25519-speccheck/cases.json")


@pytest.mark.parametrize("index", [0, 1, 2, 3])
def test_speccheck_small_and_mixed_order_keys_cannot_be_linked(index: int) -> None:
    with pytest.raises(ValidationFailed, match="small-order"):
        check_linkable_public_key(bytes.fromhex(SPECCHECK[index]["pub_key"]))


@pytest.mark.parametrize(("index", "accepted"), [(0, False), (1, False), (2, False), (3, True)])
def test_speccheck_verdicts_of_libsodium(index: int, accepted: bool) -> None:
    """Cases 0-2 (small-order A or R) fail in libsodium itself. Case 3 (mixed-order A and R)
    satisfies the cofactorless equation, so libsodium accepts it: this is why the key is
    refused at binding, and why ``begin`` re-checks it."""
    case = SPECCHECK[index]
    args = (
        bytes.fromhex(case["pub_key"]),
        bytes.fromhex(case["message"]),
        bytes.fromhex(case["signature"]),
    )
    if accepted:
        verify_ed25519(*args)
    else:
        with pytest.raises(InvalidSignature):
            verify_ed25519(*args)


def test_linkable_keys() -> None:
    for _ in range(20):
        check_linkable_public_key(bytes(SigningKey.generate().verify_key))
    for bad in (b"", b"\x00" * 31, b"\x01" + b"\x00" * 31, b"\xff" * 32):
        with pytest.raises(ValidationFailed):
            check_linkable_public_key(bad)


def test_verify_rejects_wrong_lengths() -> None:
    key = SigningKey.generate()
    sig = key.sign(b"m").signature
    pk = bytes(key.verify_key)
    for bad_pk, bad_sig in ((pk[:31], sig), (pk, sig[:63]), (pk, sig + b"\x00")):
        with pytest.raises(InvalidSignature):
            verify_ed25519(bad_pk, b"m", bad_sig)


# --- addresses and the SIWS text ----------------------------------------------------------


def test_decode_address() -> None:
    key = SigningKey.generate()
    address = base58.b58encode(bytes(key.verify_key)).decode()
    assert decode_address(address) == bytes(key.verify_key)
    for bad in (
        "",
        "0OIl" * 10,
        "1" + address,
        address[:-3],
        base58.b58encode(b"\x01" * 33).decode(),
    ):
        with pytest.raises(ValidationFailed):
            decode_address(bad)


@pytest.fixture
def wallet() -> tuple[SigningKey, str]:
    key = SigningKey.generate()
    return key, base58.b58encode(bytes(key.verify_key)).decode()


def start(address: str, **kw: Any) -> tuple[str, SiwsState]:
    args: dict[str, Any] = {"domain": DOMAIN, "uri": URI, "address": address, "now": NOW}
    args.update(kw)
    return method.begin(**args)


def test_message_follows_the_wallet_standard_layout(wallet: tuple[SigningKey, str]) -> None:
    _, address = wallet
    text, state = start(address, nonce="Q" * 20)
    assert text == (
        f"{DOMAIN} wants you to sign in with your Solana account:\n{address}\n\n"
        f"URI: {URI}\nVersion: 1\nChain ID: solana:mainnet\nNonce: {'Q' * 20}\n"
        "Issued At: 2023-11-14T22:13:20.000Z\nExpiration Time: 2023-11-14T22:18:20.000Z"
    )
    assert parse_siws_message(text) == state.message
    text, state = start(address, statement="Confirm wallet:export", chain_id="devnet")
    assert f"{address}\n\nConfirm wallet:export\n\nURI: " in text
    assert parse_siws_message(text) == state.message
    assert build_siws_message(state.message) == text


@pytest.mark.parametrize(
    "text",
    [
        "x wants you to sign in with your Ethereum account:\n0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2\n\nURI: https://a\nVersion: 1\nChain ID: 1\nNonce: 12345678\nIssued At: 2021-09-30T16:25:24Z",
        "x wants you to sign in with your Solana account:\nnot-base58\n\nURI: https://a\nVersion: 1\nChain ID: mainnet\nNonce: 12345678\nIssued At: 2021-09-30T16:25:24Z",
    ],
)
def test_malformed_siws(text: str) -> None:
    with pytest.raises(MalformedSignInMessage):
        parse_siws_message(text)


# --- the step-up method -------------------------------------------------------------------


def test_full_flow_with_pynacl(wallet: tuple[SigningKey, str]) -> None:
    key, address = wallet
    text, state = start(address, statement="Confirm wallet:export")
    assert re.search(r"Nonce: [A-Za-z0-9]{22}\n", text)
    raw_sig = key.sign(text.encode()).signature
    factor = method.complete(
        state, text.encode(), raw_sig, now=NOW + 30, allowed_chain_ids=["solana:mainnet"]
    )
    assert factor.method is MethodName.SOLANA and factor.kind is FactorKind.REAUTH
    assert factor.credential_id == address
    assert factor.details == {
        "address": address,
        "chain_id": "solana:mainnet",
        "nonce": state.nonce,
    }
    # The same answer as text + base58 signature, as a browser hand-off sends it.
    method.complete(
        state,
        text,
        base58.b58encode(raw_sig).decode(),
        now=NOW,
        allowed_chain_ids=["solana:mainnet"],
    )


def test_other_key_cannot_answer(wallet: tuple[SigningKey, str]) -> None:
    _, address = wallet
    text, state = start(address)
    with pytest.raises(InvalidSignature, match="does not verify"):
        method.complete(
            state,
            text,
            SigningKey.generate().sign(text.encode()).signature,
            now=NOW,
            allowed_chain_ids=["solana:mainnet"],
        )


def test_replayed_answer_fails_on_a_new_challenge(wallet: tuple[SigningKey, str]) -> None:
    key, address = wallet
    old_text, _ = start(address)
    sig = key.sign(old_text.encode()).signature
    _, new_state = start(address)
    with pytest.raises(InvalidSignature, match="nonce does not match"):
        method.complete(new_state, old_text, sig, now=NOW, allowed_chain_ids=["solana:mainnet"])


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        (f"{DOMAIN} wants", "evil.example wants", "domain"),
        (f"URI: {URI}", "URI: https://evil.example", "URI"),
        ("Chain ID: solana:mainnet", "Chain ID: solana:devnet", "chain ID"),
        (
            "Expiration Time: 2023-11-14T22:18:20.000Z",
            "Expiration Time: 2024-11-14T22:18:20.000Z",
            "expiration",
        ),
    ],
)
def test_tampered_fields_fail_even_when_signed(
    wallet: tuple[SigningKey, str], old: str, new: str, field: str
) -> None:
    key, address = wallet
    text, state = start(address)
    tampered = text.replace(old, new)
    assert tampered != text
    with pytest.raises(InvalidSignature, match=f"{field}.* does not match"):
        method.complete(
            state,
            tampered,
            key.sign(tampered.encode()).signature,
            now=NOW,
            allowed_chain_ids=["solana:mainnet", "solana:devnet"],
        )


def test_another_wallet_in_the_message_fails(wallet: tuple[SigningKey, str]) -> None:
    _, address = wallet
    thief = SigningKey.generate()
    thief_address = base58.b58encode(bytes(thief.verify_key)).decode()
    text, state = start(address)
    forged = text.replace(address, thief_address)
    with pytest.raises(InvalidSignature, match="address does not match"):
        method.complete(
            state,
            forged,
            thief.sign(forged.encode()).signature,
            now=NOW,
            allowed_chain_ids=["solana:mainnet"],
        )


def test_signature_must_cover_the_exact_bytes(wallet: tuple[SigningKey, str]) -> None:
    key, address = wallet
    text, state = start(address)
    sig = key.sign((text + "\n").encode()).signature
    with pytest.raises(InvalidSignature, match="does not verify"):
        method.complete(state, text, sig, now=NOW, allowed_chain_ids=["solana:mainnet"])


def test_non_canonical_signature_fails(wallet: tuple[SigningKey, str]) -> None:
    key, address = wallet
    text, state = start(address)
    sig = key.sign(text.encode()).signature
    s = int.from_bytes(sig[32:], "little")
    malleated = sig[:32] + (s + ED25519_L).to_bytes(32, "little")
    with pytest.raises(InvalidSignature):
        method.complete(state, text, malleated, now=NOW, allowed_chain_ids=["solana:mainnet"])


def test_chain_allowlist_and_expiry(wallet: tuple[SigningKey, str]) -> None:
    key, address = wallet
    text, state = start(address, chain_id="solana:devnet", ttl_seconds=120)
    sig = key.sign(text.encode()).signature
    with pytest.raises(InvalidSignature, match="not allowed"):
        method.complete(state, text, sig, now=NOW, allowed_chain_ids=["solana:mainnet"])
    with pytest.raises(CodeExpired):
        method.complete(state, text, sig, now=NOW + 121, allowed_chain_ids=["solana:devnet"])
    method.complete(state, text, sig, now=NOW + 119, allowed_chain_ids=["solana:devnet"])


@pytest.mark.parametrize("bad_sig", [b"\x00" * 63, "0OIl", "x" * 200, b""])
def test_malformed_signatures(wallet: tuple[SigningKey, str], bad_sig: Any) -> None:
    _, address = wallet
    text, state = start(address)
    with pytest.raises(InvalidSignature):
        method.complete(state, text, bad_sig, now=NOW, allowed_chain_ids=["solana:mainnet"])


def test_non_utf8_message_fails(wallet: tuple[SigningKey, str]) -> None:
    key, address = wallet
    _, state = start(address)
    with pytest.raises(InvalidSignature, match="UTF-8"):
        method.complete(
            state,
            b"\xff\xfe",
            key.sign(b"\xff\xfe").signature,
            now=NOW,
            allowed_chain_ids=["solana:mainnet"],
        )


def test_begin_refuses_weak_keys_and_bad_input(wallet: tuple[SigningKey, str]) -> None:
    _, address = wallet
    small_order = base58.b58encode(bytes.fromhex(SPECCHECK[0]["pub_key"])).decode()
    mixed_order = base58.b58encode(bytes.fromhex(SPECCHECK[3]["pub_key"])).decode()
    for kw in (
        {"address": small_order},
        {"address": mixed_order},
        {"address": "notbase58!"},
        {"chain_id": "ethereum"},
        {"nonce": "abc"},
        {"statement": "multi\nline"},
        {"ttl_seconds": 3600},
    ):
        with pytest.raises(ValidationFailed):
            start(kw.pop("address", address), **kw)
