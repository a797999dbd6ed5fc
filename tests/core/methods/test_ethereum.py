"""Ethereum wallets: EIP-4361 parsing vectors, EIP-191 recovery, SIWE verification vectors, and
the step-up flow signed by a real eth-account key (security-requirements items 37-38)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct

from stepguard.core.assurance import FactorKind, MethodName
from stepguard.core.errors import CodeExpired, InvalidSignature, ValidationFailed
from stepguard.core.methods._wallet import (
    MalformedSignInMessage,
    SignInMessage,
    check_issued_at,
    format_timestamp,
    new_nonce,
    parse_timestamp,
)
from stepguard.core.methods.ethereum import (
    EthereumMethod,
    SiweState,
    build_siwe_message,
    is_checksum_address,
    parse_siwe_message,
    recover_personal_sign,
    to_checksum_address,
    verify_siwe,
)

VECTORS = Path(__file__).resolve().parents[2] / "vectors" / "siwe"
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
NOW = 1_700_000_000.0
DOMAIN = "wallet.example"
URI = "https://wallet.example/step-up"
method = EthereumMethod()


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VECTORS / name).read_text())
    return data


# --- EIP-4361 parsing (spruceid/siwe vectors) ---------------------------------------------

POSITIVE = load("parsing_positive.json")
NEGATIVE = load("parsing_negative.json")
NEGATIVE_OBJECTS = load("parsing_negative_objects.json")


def as_fields(msg: SignInMessage) -> dict[str, Any]:
    out: dict[str, Any] = {
        "scheme": msg.scheme,
        "domain": msg.domain,
        "address": msg.address,
        "statement": msg.statement,
        "uri": msg.uri,
        "version": msg.version,
        "chainId": int(msg.chain_id),
        "nonce": msg.nonce,
        "issuedAt": msg.issued_at,
        "expirationTime": msg.expiration_time,
        "notBefore": msg.not_before,
        "requestId": msg.request_id,
        "resources": list(msg.resources) or None,
    }
    return out


def test_vector_counts() -> None:
    assert len(POSITIVE) == 19 and len(NEGATIVE) == 29 and len(NEGATIVE_OBJECTS) == 18


@pytest.mark.parametrize("name", sorted(POSITIVE))
def test_parsing_positive(name: str) -> None:
    case = POSITIVE[name]
    msg = parse_siwe_message(case["message"])
    got = as_fields(msg)
    expected = {k: None for k in got} | case["fields"]
    assert got == expected
    # The builder prints exactly the same text back.
    assert build_siwe_message(msg) == case["message"]


@pytest.mark.parametrize("name", sorted(NEGATIVE))
def test_parsing_negative(name: str) -> None:
    with pytest.raises(MalformedSignInMessage):
        parse_siwe_message(NEGATIVE[name])


def message_from_fields(fields: dict[str, Any]) -> SignInMessage:
    """spruceid's field names to ours; a missing required field becomes an empty value."""
    return SignInMessage(
        domain=fields.get("domain", ""),
        address=fields.get("address", ""),
        uri=fields.get("uri", ""),
        version=str(fields.get("version", "")),
        chain_id=str(fields.get("chainId", "")),
        nonce=fields.get("nonce", ""),
        issued_at=fields.get("issuedAt", ""),
        scheme=fields.get("scheme"),
        statement=fields.get("statement"),
        expiration_time=fields.get("expirationTime"),
        not_before=fields.get("notBefore"),
        request_id=fields.get("requestId"),
        resources=tuple(fields.get("resources", ())),
    )


@pytest.mark.parametrize("name", sorted(NEGATIVE_OBJECTS))
def test_building_from_invalid_fields_fails(name: str) -> None:
    with pytest.raises(MalformedSignInMessage):
        build_siwe_message(message_from_fields(NEGATIVE_OBJECTS[name]))


@pytest.mark.parametrize(
    "text",
    [
        POSITIVE["no optional field"]["message"] + "\n",  # trailing newline
        POSITIVE["no optional field"]["message"].replace("\n", "\r\n"),
        POSITIVE["no optional field"]["message"].replace("Version: 1", "version: 1"),
        POSITIVE["no optional field"]["message"].replace(
            "Issued At: 2021-09-30T16:25:24.000Z", "Issued At: 2021-09-30T24:25:24Z"
        ),
        POSITIVE["no optional field"]["message"].replace("Ethereum account", "Solana account"),
        "x" * 5000,
    ],
)
def test_other_malformed_messages(text: str) -> None:
    with pytest.raises(MalformedSignInMessage):
        parse_siwe_message(text)


# --- EIP-191 recovery ---------------------------------------------------------------------

# security-requirements.md item 37; signature from the eth-account documentation
# (``Account.sign_message(encode_defunct(text="I♥SF"), private_key=0xb25c7db3...b364)``).
ISF_SIGNATURE = bytes.fromhex(
    "e6ca9bba58c88611fad66a6ce8f996908195593807c4b38bd528d2cff09d4eb3"
    "3e5bfbbf4d3e39b1a2fd816a7680c19ebebaf3a141b239934ad43cb33fcec8ce1c"
)
ISF_ADDRESS = "0x5ce9454909639D2D17A3F753ce7d93fa0b9aB12E"


def test_eip191_public_vector() -> None:
    assert recover_personal_sign("I♥SF".encode(), ISF_SIGNATURE) == ISF_ADDRESS


@pytest.mark.parametrize("v", [0, 1, 27, 28])
def test_both_recovery_id_conventions_are_accepted(v: int) -> None:
    sig = ISF_SIGNATURE[:64] + bytes([v])
    recovered = recover_personal_sign("I♥SF".encode(), sig)
    # v 28/1 names the right key, 27/0 the other candidate: never the same address for both.
    assert (recovered == ISF_ADDRESS) == (v in (1, 28))


@pytest.mark.parametrize("v", [2, 26, 29, 35, 37])
def test_other_recovery_ids_are_refused(v: int) -> None:
    with pytest.raises(InvalidSignature, match="recovery id"):
        recover_personal_sign(b"I\xe2\x99\xa5SF", ISF_SIGNATURE[:64] + bytes([v]))


def test_high_s_twin_is_refused() -> None:
    s = int.from_bytes(ISF_SIGNATURE[32:64], "big")
    twin = ISF_SIGNATURE[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes([27])
    # The twin is a valid ECDSA signature for the same key, which is why it must be refused.
    assert Account.recover_message(encode_defunct(text="I♥SF"), signature=twin) == ISF_ADDRESS
    with pytest.raises(InvalidSignature, match="high-s"):
        recover_personal_sign("I♥SF".encode(), twin)


@pytest.mark.parametrize("length", [0, 64, 66, 130])
def test_wrong_length_is_refused(length: int) -> None:
    sig = (ISF_SIGNATURE * 3)[:length]
    with pytest.raises(InvalidSignature, match="65 bytes"):
        recover_personal_sign(b"I\xe2\x99\xa5SF", sig)


@pytest.mark.parametrize("r", [0, SECP256K1_N, 2**256 - 1])
def test_out_of_range_r_is_refused(r: int) -> None:
    sig = r.to_bytes(32, "big") + ISF_SIGNATURE[32:]
    with pytest.raises(InvalidSignature):
        recover_personal_sign(b"I\xe2\x99\xa5SF", sig)


def test_recovery_agrees_with_eth_account() -> None:
    for i in range(8):
        acct = Account.create()
        text = f"message {i} ✓ " + "x" * i * 37
        signed = Account.sign_message(encode_defunct(text=text), private_key=acct.key)
        assert recover_personal_sign(text.encode(), bytes(signed.signature)) == acct.address


def test_checksum_helpers() -> None:
    assert is_checksum_address(ISF_ADDRESS)
    assert not is_checksum_address(ISF_ADDRESS.lower())
    assert to_checksum_address(ISF_ADDRESS.lower()) == ISF_ADDRESS
    assert to_checksum_address("0x" + ISF_ADDRESS[2:].upper()) == ISF_ADDRESS
    assert to_checksum_address(bytes.fromhex(ISF_ADDRESS[2:])) == ISF_ADDRESS
    broken = ISF_ADDRESS[:3] + ISF_ADDRESS[3].swapcase() + ISF_ADDRESS[4:]
    for bad in (broken, "0x1234", ISF_ADDRESS[2:], b"\x00" * 19):
        with pytest.raises(ValidationFailed):
            to_checksum_address(bad)


# --- SIWE verification vectors (spruceid/siwe), each with its ``time`` -------------------

#: The verification time for vectors without ``time`` (spruceid uses the wall clock).
VECTOR_DEFAULT_TIME = "2025-01-01T00:00:00Z"


def render(fields: dict[str, Any]) -> str:
    """An independent EIP-4361 renderer, so invalid dates reach the verifier instead of the builder."""
    head = f"{fields['domain']} wants you to sign in with your Ethereum account:\n{fields['address']}\n\n"
    head += f"{fields['statement']}\n\n" if fields.get("statement") else "\n"
    lines = [
        f"URI: {fields['uri']}",
        f"Version: {fields['version']}",
        f"Chain ID: {fields['chainId']}",
        f"Nonce: {fields['nonce']}",
        f"Issued At: {fields['issuedAt']}",
    ]
    for key, label in (("expirationTime", "Expiration Time"), ("notBefore", "Not Before")):
        if key in fields:
            lines.append(f"{label}: {fields[key]}")
    return head + "\n".join(lines)


def verify_siwe_vector(case: dict[str, Any]) -> SignInMessage:
    now = parse_timestamp(case.get("time", VECTOR_DEFAULT_TIME))
    return verify_siwe(
        render(case),
        case["signature"],
        now=now,
        expected_domain=case.get("domainBinding"),
        expected_nonce=case.get("matchNonce"),
    )


VERIFY_POSITIVE = load("verification_positive.json")
VERIFY_NEGATIVE = load("verification_negative.json")


@pytest.mark.parametrize("name", sorted(VERIFY_POSITIVE))
def test_verification_positive(name: str) -> None:
    case = VERIFY_POSITIVE[name]
    msg = verify_siwe_vector(case)
    assert msg.address == case["address"]
    assert build_siwe_message(msg) == render(case)


@pytest.mark.parametrize("name", sorted(VERIFY_NEGATIVE))
def test_verification_negative(name: str) -> None:
    with pytest.raises((InvalidSignature, CodeExpired, MalformedSignInMessage)):
        verify_siwe_vector(VERIFY_NEGATIVE[name])


def test_verification_negative_reasons() -> None:
    reasons = {}
    for name, case in VERIFY_NEGATIVE.items():
        with pytest.raises((InvalidSignature, CodeExpired, MalformedSignInMessage)) as info:
            verify_siwe_vector(case)
        reasons[name] = (type(info.value).__name__, info.value.detail)
    assert reasons["expired message"][0] == "CodeExpired"
    assert reasons["custom time"][0] == "CodeExpired"
    assert reasons["not yet valid"] == ("InvalidSignature", "the sign-in message is not valid yet")
    assert "another domain" in reasons["domain binding"][1]
    assert "another nonce" in reasons["custom nonce"][1]
    assert "65 bytes" in reasons["malformed signature"][1]
    assert "not signed by its address" in reasons["wrong signature"][1]
    for name in ("invalid issuedAt", "invalid notBefore", "invalid expirationTime"):
        assert reasons[name][0] == "MalformedSignInMessage", name


# --- the step-up method -------------------------------------------------------------------


@pytest.fixture
def account() -> Any:
    return Account.create()


def sign(acct: Any, text: str) -> str:
    return (
        "0x"
        + bytes(
            Account.sign_message(encode_defunct(text=text), private_key=acct.key).signature
        ).hex()
    )


def start(acct: Any, **kw: Any) -> tuple[str, SiweState]:
    args: dict[str, Any] = {
        "domain": DOMAIN,
        "uri": URI,
        "address": acct.address,
        "chain_id": 1,
        "now": NOW,
        "statement": "Confirm wallet:export",
    }
    args.update(kw)
    return method.begin(**args)


def test_begin_builds_a_siwe_message(account: Any) -> None:
    text, state = start(account)
    msg = parse_siwe_message(text)
    assert text == state.text and msg == state.message
    assert text.startswith(
        f"{DOMAIN} wants you to sign in with your Ethereum account:\n{account.address}\n\n"
    )
    assert msg.uri == URI and msg.version == "1" and msg.chain_id == "1"
    assert msg.statement == "Confirm wallet:export"
    assert re.fullmatch(r"[A-Za-z0-9]{22}", msg.nonce)
    assert msg.issued_at == format_timestamp(NOW) == "2023-11-14T22:13:20.000Z"
    assert msg.expiration_time == format_timestamp(NOW + 300)
    assert state.expires_at == NOW + 300


def test_full_flow_with_eth_account(account: Any) -> None:
    text, state = start(account)
    factor = method.complete(
        state, text, sign(account, text), now=NOW + 20, allowed_chain_ids=[1, 10]
    )
    assert factor.method is MethodName.ETHEREUM and factor.kind is FactorKind.REAUTH
    assert factor.amr == ("pop", "swk")
    assert factor.credential_id == account.address
    assert factor.details == {"address": account.address, "chain_id": 1, "nonce": state.nonce}


def test_signature_encodings(account: Any) -> None:
    text, state = start(account)
    sig = sign(account, text)
    for form in (sig[2:], sig.upper().replace("0X", "0x"), bytes.fromhex(sig[2:])):
        method.complete(state, text, form, now=NOW, allowed_chain_ids=[1])


def test_lowercase_bound_address_is_checksummed(account: Any) -> None:
    text, state = start(account, address=account.address.lower())
    assert state.message.address == account.address
    method.complete(state, text, sign(account, text), now=NOW, allowed_chain_ids=[1])


def test_other_wallet_cannot_answer(account: Any) -> None:
    text, state = start(account)
    thief = Account.create()
    with pytest.raises(InvalidSignature, match="not signed by its address"):
        method.complete(state, text, sign(thief, text), now=NOW, allowed_chain_ids=[1])
    # Nor by putting its own address in the message: the address must be the issued one.
    forged = text.replace(account.address, thief.address)
    with pytest.raises(InvalidSignature, match="address does not match"):
        method.complete(state, forged, sign(thief, forged), now=NOW, allowed_chain_ids=[1])


def test_replay_against_a_new_challenge_fails(account: Any) -> None:
    old_text, old_state = start(account)
    old_sig = sign(account, old_text)
    _, new_state = start(account)
    with pytest.raises(InvalidSignature, match="nonce does not match"):
        method.complete(new_state, old_text, old_sig, now=NOW, allowed_chain_ids=[1])


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        (f"{DOMAIN} wants", "evil.example wants", "domain"),
        (f"{DOMAIN} wants", f"https://{DOMAIN} wants", "scheme"),
        (f"URI: {URI}", "URI: https://evil.example/", "URI"),
        ("Chain ID: 1", "Chain ID: 5", "chain ID"),
        ("Chain ID: 1", "Chain ID: 01", "chain ID"),
        ("Confirm wallet:export", "Confirm anything", "statement"),
        ("Issued At: 2023-11-14T22:13:20.000Z", "Issued At: 2023-11-14T22:13:21.000Z", "issued-at"),
        (
            "Expiration Time: 2023-11-14T22:18:20.000Z",
            "Expiration Time: 2033-11-14T22:18:20.000Z",
            "expiration",
        ),
    ],
)
def test_tampered_fields_are_refused_even_when_signed(
    account: Any, old: str, new: str, field: str
) -> None:
    text, state = start(account)
    assert old in text
    tampered = text.replace(old, new)
    with pytest.raises(InvalidSignature, match=f"{field}.* does not match"):
        method.complete(state, tampered, sign(account, tampered), now=NOW, allowed_chain_ids=[1, 5])


def test_added_fields_are_refused(account: Any) -> None:
    text, state = start(account)
    for extra in (
        "\nNot Before: 2023-11-14T22:13:20.000Z",
        "\nRequest ID: abc",
        "\nResources:\n- https://x.example",
    ):
        tampered = text + extra
        with pytest.raises(InvalidSignature, match="does not match"):
            method.complete(
                state, tampered, sign(account, tampered), now=NOW, allowed_chain_ids=[1]
            )


def test_signature_over_other_bytes_fails(account: Any) -> None:
    text, state = start(account)
    other_sig = sign(account, text + " ")
    with pytest.raises(InvalidSignature, match="not signed by its address"):
        method.complete(state, text, other_sig, now=NOW, allowed_chain_ids=[1])


def test_chain_must_be_allowlisted(account: Any) -> None:
    text, state = start(account, chain_id=137)
    sig = sign(account, text)
    with pytest.raises(InvalidSignature, match="chain ID 137 is not allowed"):
        method.complete(state, text, sig, now=NOW, allowed_chain_ids=[1])
    method.complete(state, text, sig, now=NOW, allowed_chain_ids=[1, 137])


def test_expired_challenge_fails(account: Any) -> None:
    text, state = start(account, ttl_seconds=60)
    sig = sign(account, text)
    with pytest.raises(CodeExpired):
        method.complete(state, text, sig, now=NOW + 61, allowed_chain_ids=[1])
    method.complete(state, text, sig, now=NOW + 59, allowed_chain_ids=[1])


def test_malformed_message_and_signature(account: Any) -> None:
    text, state = start(account)
    with pytest.raises(MalformedSignInMessage):
        method.complete(state, "hello", sign(account, "hello"), now=NOW, allowed_chain_ids=[1])
    for bad in ("0x1234", "zz" * 65, ""):
        with pytest.raises(InvalidSignature):
            method.complete(state, text, bad, now=NOW, allowed_chain_ids=[1])


@pytest.mark.parametrize(
    "kw",
    [
        {"address": "0x1234"},
        {"address": ISF_ADDRESS[:3] + ISF_ADDRESS[3].swapcase() + ISF_ADDRESS[4:]},
        {"nonce": "short"},
        {"nonce": "a" * 16},
        {"nonce": "ü" * 20},
        {"statement": "two\nlines"},
        {"statement": 'quotes "are" not allowed'},
        {"ttl_seconds": 0},
        {"ttl_seconds": 601},
        {"chain_id": 0},
        {"domain": "#bad"},
        {"uri": "not a uri"},
        {"scheme": "1http"},
    ],
)
def test_begin_refuses_bad_input(account: Any, kw: dict[str, Any]) -> None:
    with pytest.raises(ValidationFailed):
        start(account, **kw)


def test_caller_nonce_and_optional_fields(account: Any) -> None:
    text, state = start(
        account,
        nonce="N" * 17,
        scheme="https",
        request_id="req-1",
        resources=["https://wallet.example/export"],
    )
    msg = parse_siwe_message(text)
    assert msg.nonce == "N" * 17 and msg.scheme == "https" and msg.request_id == "req-1"
    assert msg.resources == ("https://wallet.example/export",)
    method.complete(state, text, sign(account, text), now=NOW, allowed_chain_ids=[1])


# --- shared wallet helpers ----------------------------------------------------------------


def test_nonces_are_long_alphanumeric_and_fresh() -> None:
    nonces = {new_nonce() for _ in range(200)}
    assert len(nonces) == 200
    assert all(re.fullmatch(r"[A-Za-z0-9]{22}", n) for n in nonces)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2021-09-30T16:25:24Z", 1633019124.0),
        ("2021-09-30T16:25:24.500Z", 1633019124.5),
        ("2021-09-30T16:25:24-02:00", 1633019124.0 + 7200),
        ("2021-09-30t16:25:24+01:30", 1633019124.0 - 5400),
    ],
)
def test_timestamps(text: str, expected: float) -> None:
    assert parse_timestamp(text) == pytest.approx(expected)


@pytest.mark.parametrize(
    "text",
    [
        "2021-09-30 16:25:24Z",
        "2021-02-29T00:00:00Z",
        "2021-09-30T16:25:60Z",
        "2021-09-30T16:25:24+24:00",
        "2021-09-30T16:25:24",
    ],
)
def test_bad_timestamps(text: str) -> None:
    with pytest.raises(MalformedSignInMessage):
        parse_timestamp(text)


def test_issued_at_window(account: Any) -> None:
    _, state = start(account)
    msg = state.message
    check_issued_at(msg, now=NOW + 60, max_age=300)
    with pytest.raises(InvalidSignature, match="future"):
        check_issued_at(msg, now=NOW - 61, max_age=300)
    with pytest.raises(CodeExpired, match="too old"):
        check_issued_at(msg, now=NOW + 301, max_age=300)
