"""Passkeys: real registration and assertion responses from a software authenticator, and mutants.

Each mutant is *correctly signed* by the software authenticator with one thing wrong, so only
the check under test can reject it (security-requirements items 32-36).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from _soft_authenticator import SoftwareAuthenticator, b64url, b64url_decode

from stepguard.core.assurance import FactorKind, MethodName
from stepguard.core.errors import (
    CodeExpired,
    Conflict,
    InvalidSignature,
    NoMethodsAvailable,
    ValidationFailed,
)
from stepguard.core.methods.passkey import (
    CHALLENGE_BYTES,
    AuthenticationState,
    PasskeyMethod,
    RegisteredPasskey,
    StoredPasskey,
)

RP_ID = "wallet.example"
ORIGIN = "https://wallet.example"
NOW = 1_700_000_000.0
USER_ID = b"user-0001"
method = PasskeyMethod()


def register(auth: SoftwareAuthenticator, **create_kw: Any) -> RegisteredPasskey:
    options, state = method.begin_registration(
        rp_id=RP_ID,
        rp_name="Wallet",
        user_id=USER_ID,
        user_name="alice@example.com",
        exclude_credential_ids=[],
        now=NOW,
    )
    response = auth.create(options, **create_kw)
    return method.complete_registration(
        state, response, now=NOW + 5, expected_origin=ORIGIN, expected_rp_id=RP_ID
    )


def stored_of(reg: RegisteredPasskey, **overrides: Any) -> StoredPasskey:
    fields: dict[str, Any] = {
        "credential_id": reg.credential_id,
        "public_key": reg.public_key,
        "sign_count": reg.sign_count,
        "backup_eligible": reg.backup_eligible,
        "user_handle": USER_ID,
    }
    fields.update(overrides)
    return StoredPasskey(**fields)


@pytest.fixture
def auth() -> SoftwareAuthenticator:
    return SoftwareAuthenticator(RP_ID, ORIGIN)


@pytest.fixture
def reg(auth: SoftwareAuthenticator) -> RegisteredPasskey:
    return register(auth)


def challenge_for(reg: RegisteredPasskey) -> tuple[dict[str, Any], AuthenticationState]:
    return method.begin(rp_id=RP_ID, allow_credential_ids=[reg.credential_id], now=NOW)


def finish(
    state: AuthenticationState,
    response: dict[str, Any] | str,
    stored: StoredPasskey,
    now: float = NOW + 10,
):
    return method.complete(
        state, response, now=now, stored=stored, expected_origin=ORIGIN, expected_rp_id=RP_ID
    )


# --- registration -------------------------------------------------------------------------


def test_registration_options_require_uv_and_prefer_resident_keys() -> None:
    options, state = method.begin_registration(
        rp_id=RP_ID,
        rp_name="Wallet",
        user_id=USER_ID,
        user_name="alice@example.com",
        exclude_credential_ids=[b"old-cred"],
        now=NOW,
    )
    json.dumps(options)  # JSON-ready
    assert options["authenticatorSelection"]["userVerification"] == "required"
    assert options["authenticatorSelection"]["residentKey"] == "preferred"
    assert options["attestation"] == "none"
    assert options["rp"] == {"id": RP_ID, "name": "Wallet"}
    assert b64url_decode(options["user"]["id"]) == USER_ID
    assert [b64url_decode(c["id"]) for c in options["excludeCredentials"]] == [b"old-cred"]
    assert {p["alg"] for p in options["pubKeyCredParams"]} == {-8, -7, -257}
    assert len(state.challenge) == CHALLENGE_BYTES
    assert b64url_decode(options["challenge"]) == state.challenge
    assert state.expires_at == NOW + 120
    assert options["timeout"] == 120_000


def test_challenges_are_fresh_and_timeout_is_capped_at_five_minutes() -> None:
    _, a = method.begin(rp_id=RP_ID, allow_credential_ids=[b"c"], now=NOW, timeout_ms=3_600_000)
    _, b = method.begin(rp_id=RP_ID, allow_credential_ids=[b"c"], now=NOW)
    assert a.challenge != b.challenge and len(a.challenge) == 32
    assert a.expires_at == NOW + 300


def test_short_challenge_and_empty_allow_list_are_refused() -> None:
    with pytest.raises(ValidationFailed):
        method.begin(rp_id=RP_ID, allow_credential_ids=[b"c"], now=NOW, challenge=b"short")
    with pytest.raises(NoMethodsAvailable):
        method.begin(rp_id=RP_ID, allow_credential_ids=[], now=NOW)


def test_registration_returns_the_credential_record(auth: SoftwareAuthenticator) -> None:
    reg = register(auth)
    assert reg.credential_id in auth.credentials
    assert reg.sign_count == 0
    assert reg.transports == ("hybrid", "internal")
    assert reg.backup_eligible is True and reg.backup_state is True
    assert reg.uv_initialized is True
    assert reg.aaguid == "00000000-0000-0000-0000-000000000000"
    assert reg.public_key  # COSE key bytes


@pytest.mark.parametrize(
    ("create_kw", "match"),
    [
        ({"user_verified": False}, "User verification is required"),
        ({"user_present": False}, "User presence was required"),
        ({"origin": "https://evil.example"}, "Unexpected client data origin"),
        ({"rp_id": "evil.example"}, "Unexpected RP ID hash"),
        ({"challenge": b64url(b"\x00" * 32)}, "challenge was not expected"),
        ({"client_data_extra": {"crossOrigin": True}}, "cross-origin"),
        ({"client_data_extra": {"topOrigin": "https://evil.example"}}, "cross-origin"),
        ({"client_data_extra": {"type": "webauthn.get"}}, "Unexpected client data type"),
    ],
)
def test_registration_mutants_fail(
    auth: SoftwareAuthenticator, create_kw: dict[str, Any], match: str
) -> None:
    with pytest.raises(InvalidSignature, match=match):
        register(auth, **create_kw)


def test_registration_rejects_backup_state_without_eligibility() -> None:
    auth = SoftwareAuthenticator(RP_ID, ORIGIN, backup_eligible=False, backup_state=True)
    with pytest.raises(InvalidSignature, match="backed up"):
        register(auth)


def test_registration_expires(auth: SoftwareAuthenticator) -> None:
    options, state = method.begin_registration(
        rp_id=RP_ID, rp_name="W", user_id=USER_ID, user_name="a", exclude_credential_ids=[], now=NOW
    )
    response = auth.create(options)
    with pytest.raises(CodeExpired):
        method.complete_registration(
            state, response, now=NOW + 121, expected_origin=ORIGIN, expected_rp_id=RP_ID
        )


def test_registration_refuses_an_already_registered_credential(auth: SoftwareAuthenticator) -> None:
    options, state = method.begin_registration(
        rp_id=RP_ID, rp_name="W", user_id=USER_ID, user_name="a", exclude_credential_ids=[], now=NOW
    )
    response = auth.create(options)
    cred_id = b64url_decode(response["id"])
    replayed = type(state)(
        challenge=state.challenge,
        expires_at=state.expires_at,
        user_id=state.user_id,
        exclude_credential_ids=(cred_id,),
    )
    with pytest.raises(Conflict):
        method.complete_registration(
            replayed, response, now=NOW, expected_origin=ORIGIN, expected_rp_id=RP_ID
        )


@pytest.mark.parametrize("bad", ["not json", "[]", {"id": "x"}, {}])
def test_malformed_registration_is_a_validation_error(bad: Any) -> None:
    _, state = method.begin_registration(
        rp_id=RP_ID, rp_name="W", user_id=USER_ID, user_name="a", exclude_credential_ids=[], now=NOW
    )
    with pytest.raises(ValidationFailed):
        method.complete_registration(
            state, bad, now=NOW, expected_origin=ORIGIN, expected_rp_id=RP_ID
        )


def test_registration_accepts_a_list_of_origins(auth: SoftwareAuthenticator) -> None:
    options, state = method.begin_registration(
        rp_id=RP_ID, rp_name="W", user_id=USER_ID, user_name="a", exclude_credential_ids=[], now=NOW
    )
    reg = method.complete_registration(
        state,
        json.dumps(auth.create(options)),
        now=NOW,
        expected_origin=["https://other.example", ORIGIN],
        expected_rp_id=RP_ID,
    )
    assert reg.credential_id in auth.credentials


# --- authentication -----------------------------------------------------------------------


def test_assertion_verifies_and_reports_the_new_counter(
    auth: SoftwareAuthenticator, reg: RegisteredPasskey
) -> None:
    options, state = challenge_for(reg)
    assert options["userVerification"] == "required"
    assert [b64url_decode(c["id"]) for c in options["allowCredentials"]] == [reg.credential_id]
    assert b64url_decode(options["challenge"]) == state.challenge
    factor = finish(state, auth.get(options), stored_of(reg))
    assert factor.method is MethodName.PASSKEY
    assert factor.kind is FactorKind.MFA
    assert factor.credential_id == b64url(reg.credential_id)
    assert factor.details == {"sign_count": 1, "backup_state": True}
    assert factor.verified_at == NOW + 10

    # The next ceremony, with the persisted counter, goes through too (as a JSON string).
    options, state = challenge_for(reg)
    factor = finish(state, json.dumps(auth.get(options)), stored_of(reg, sign_count=1))
    assert factor.details["sign_count"] == 2


def test_authenticators_without_a_counter_pass(reg: RegisteredPasskey) -> None:
    auth = SoftwareAuthenticator(RP_ID, ORIGIN, counter_step=0)
    reg = register(auth)
    options, state = challenge_for(reg)
    assert finish(state, auth.get(options), stored_of(reg)).details["sign_count"] == 0


def _flip_challenge(options: dict[str, Any]) -> str:
    raw = bytearray(b64url_decode(options["challenge"]))
    raw[0] ^= 0x01
    return b64url(bytes(raw))


def _flip_signature(response: dict[str, Any]) -> dict[str, Any]:
    sig = bytearray(b64url_decode(response["response"]["signature"]))
    sig[-1] ^= 0x01  # the last byte of s: the DER framing stays valid
    response["response"]["signature"] = b64url(bytes(sig))
    return response


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda a, o: a.get(o, challenge=_flip_challenge(o)), "challenge was not expected"),
        (lambda a, o: a.get(o, origin="https://wallet.example.evil"), "origin"),
        (lambda a, o: a.get(o, origin="http://wallet.example"), "origin"),
        (lambda a, o: a.get(o, rp_id="example"), "RP ID hash"),
        (lambda a, o: a.get(o, user_present=False), "not present"),
        (lambda a, o: a.get(o, user_verified=False), "User verification is required"),
        (lambda a, o: _flip_signature(a.get(o)), "Could not verify authentication signature"),
        (lambda a, o: a.get(o, client_data_extra={"type": "webauthn.create"}), "client data type"),
        (lambda a, o: a.get(o, client_data_extra={"crossOrigin": True}), "cross-origin"),
        (
            lambda a, o: a.get(o, client_data_extra={"topOrigin": "https://x.example"}),
            "cross-origin",
        ),
    ],
    ids=[
        "flipped-challenge",
        "wrong-origin",
        "http-origin",
        "wrong-rpIdHash",
        "UP-off",
        "UV-off",
        "bad-signature-byte",
        "wrong-type",
        "cross-origin",
        "top-origin",
    ],
)
def test_assertion_mutants_fail(
    auth: SoftwareAuthenticator, reg: RegisteredPasskey, mutate: Any, match: str
) -> None:
    options, state = challenge_for(reg)
    with pytest.raises(InvalidSignature, match=match):
        finish(state, mutate(auth, options), stored_of(reg))


@pytest.mark.parametrize("signed_count", [4, 5])
def test_lowered_or_repeated_counter_is_a_clone_signal(
    auth: SoftwareAuthenticator, reg: RegisteredPasskey, signed_count: int
) -> None:
    options, state = challenge_for(reg)
    response = auth.get(options, sign_count=signed_count)
    with pytest.raises(InvalidSignature, match="sign counter regression"):
        finish(state, response, stored_of(reg, sign_count=5))


def test_counter_dropping_to_zero_is_a_regression(
    auth: SoftwareAuthenticator, reg: RegisteredPasskey
) -> None:
    options, state = challenge_for(reg)
    with pytest.raises(InvalidSignature, match="sign counter regression"):
        finish(state, auth.get(options, sign_count=0), stored_of(reg, sign_count=3))


def test_counter_is_checked_only_after_the_signature(
    auth: SoftwareAuthenticator, reg: RegisteredPasskey
) -> None:
    options, state = challenge_for(reg)
    response = _flip_signature(auth.get(options, sign_count=1))
    with pytest.raises(InvalidSignature, match="Could not verify"):
        finish(state, response, stored_of(reg, sign_count=5))


def test_expired_challenge_fails(auth: SoftwareAuthenticator, reg: RegisteredPasskey) -> None:
    options, state = challenge_for(reg)
    response = auth.get(options)
    with pytest.raises(CodeExpired):
        finish(state, response, stored_of(reg), now=state.expires_at + 0.001)
    # ... and the same response a moment earlier is fine (the boundary is the expiry).
    assert finish(state, response, stored_of(reg), now=state.expires_at).details["sign_count"] == 1


def test_credential_not_in_allow_list_fails(
    auth: SoftwareAuthenticator, reg: RegisteredPasskey
) -> None:
    other = register(auth)  # the same authenticator holds a second credential
    options, state = challenge_for(reg)
    response = auth.get(options, credential_id=other.credential_id)
    with pytest.raises(InvalidSignature, match="not offered"):
        finish(state, response, stored_of(other))


def test_assertion_must_match_the_stored_credential(
    auth: SoftwareAuthenticator, reg: RegisteredPasskey
) -> None:
    other = register(auth)
    _, state = method.begin(
        rp_id=RP_ID, allow_credential_ids=[reg.credential_id, other.credential_id], now=NOW
    )
    options, _ = challenge_for(reg)
    options["challenge"] = b64url(state.challenge)
    response = auth.get(options)  # signed by reg's key
    with pytest.raises(InvalidSignature, match="another passkey"):
        finish(state, response, stored_of(other))


def test_signature_from_another_key_fails(reg: RegisteredPasskey) -> None:
    # A different authenticator that claims reg's credential id: a forged assertion.
    thief = SoftwareAuthenticator(RP_ID, ORIGIN)
    stolen_id = register(thief).credential_id
    thief.credentials[reg.credential_id] = thief.credentials.pop(stolen_id)
    thief.credentials[reg.credential_id].credential_id = reg.credential_id
    options, state = challenge_for(reg)
    with pytest.raises(InvalidSignature, match="Could not verify"):
        finish(state, thief.get(options), stored_of(reg))


def test_user_handle_must_match(auth: SoftwareAuthenticator, reg: RegisteredPasskey) -> None:
    options, state = challenge_for(reg)
    with pytest.raises(InvalidSignature, match="another user"):
        finish(state, auth.get(options), stored_of(reg, user_handle=b"user-0002"))


def test_backup_eligibility_must_not_change(
    auth: SoftwareAuthenticator, reg: RegisteredPasskey
) -> None:
    options, state = challenge_for(reg)
    auth.backup_eligible, auth.backup_state = False, False
    with pytest.raises(InvalidSignature, match="backup eligibility"):
        finish(state, auth.get(options), stored_of(reg))


def test_backup_state_is_reported(auth: SoftwareAuthenticator, reg: RegisteredPasskey) -> None:
    options, state = challenge_for(reg)
    auth.backup_state = False
    assert finish(state, auth.get(options), stored_of(reg)).details["backup_state"] is False


def test_wrong_expected_rp_id_fails(auth: SoftwareAuthenticator, reg: RegisteredPasskey) -> None:
    options, state = challenge_for(reg)
    with pytest.raises(InvalidSignature, match="RP ID hash"):
        method.complete(
            state,
            auth.get(options),
            now=NOW,
            stored=stored_of(reg),
            expected_origin=ORIGIN,
            expected_rp_id="other.example",
        )


@pytest.mark.parametrize(
    "bad",
    [
        "{",
        "null",
        {"id": "AA", "rawId": "AA", "type": "public-key"},
        {"id": "AA", "rawId": "AA", "type": "other", "response": {}},
    ],
)
def test_malformed_assertions_are_validation_errors(reg: RegisteredPasskey, bad: Any) -> None:
    _, state = challenge_for(reg)
    with pytest.raises(ValidationFailed):
        finish(state, bad, stored_of(reg))


def test_corrupt_client_data_is_refused(
    auth: SoftwareAuthenticator, reg: RegisteredPasskey
) -> None:
    options, state = challenge_for(reg)
    response = auth.get(options)
    response["response"]["clientDataJSON"] = b64url(b"not json")
    with pytest.raises(ValidationFailed, match="clientDataJSON is not JSON"):
        finish(state, response, stored_of(reg))


def test_truncated_authenticator_data_is_refused(
    auth: SoftwareAuthenticator, reg: RegisteredPasskey
) -> None:
    options, state = challenge_for(reg)
    response = auth.get(options)
    response["response"]["authenticatorData"] = b64url(b"\x00" * 10)
    with pytest.raises(InvalidSignature, match="authenticatorData was malformed"):
        finish(state, response, stored_of(reg))
