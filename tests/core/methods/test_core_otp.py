"""Email/SMS one-time codes: begin/complete, binding, expiry, attempts, replay, masking."""

from __future__ import annotations

import itertools
import json
import secrets
from collections.abc import Callable

import pytest

from stepguard.core.assurance import FactorKind, MethodName
from stepguard.core.errors import ChallengeNotFound, CodeExpired, CodeUsed, InvalidCode
from stepguard.core.keys import SecretBox
from stepguard.core.methods.email_otp import EmailOtpMethod
from stepguard.core.methods.otp import OtpChallengeState, mask_email, mask_phone
from stepguard.core.methods.sms_otp import SmsOtpMethod

NOW = 1_700_000_000.0
BOX = SecretBox(b"k" * 32)


def digest(message: str) -> str:
    return BOX.mac(b"otp", message.encode())


def begin(
    method: type[EmailOtpMethod] | type[SmsOtpMethod] = EmailOtpMethod,
    *,
    challenge_id: str = "chal-A",
    user_id: str = "user-1",
    destination: str = "alice@example.com",
    code_value: int | None = None,
    ttl_seconds: int = 300,
    digits: int = 6,
    max_attempts: int = 5,
) -> tuple[str, OtpChallengeState]:
    randbelow: Callable[[int], int] = secrets.randbelow
    if code_value is not None:
        value = code_value
        randbelow = lambda _bound: value  # noqa: E731
    return method.begin(
        challenge_id=challenge_id,
        user_id=user_id,
        credential_id="cred-1",
        destination=destination,
        now=NOW,
        digest=digest,
        ttl_seconds=ttl_seconds,
        digits=digits,
        max_attempts=max_attempts,
        randbelow=randbelow,
    )


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 10 ** len(code):0{len(code)}d}"


def test_round_trip_returns_a_reauth_factor() -> None:
    code, state = begin()
    assert len(code) == 6 and code.isdigit()
    factor = EmailOtpMethod.complete(state, code, now=NOW + 10, digest=digest)
    assert factor.method is MethodName.EMAIL_OTP
    assert factor.kind is FactorKind.REAUTH
    assert factor.amr == ("otp", "email")
    assert factor.credential_id == "cred-1"
    assert factor.verified_at == NOW + 10
    assert factor.details == {"challenge_id": "chal-A"}


def test_sms_round_trip() -> None:
    code, state = begin(SmsOtpMethod, destination="+14155550123")
    assert state.method is MethodName.SMS_OTP
    factor = SmsOtpMethod.complete(state, code, now=NOW, digest=digest)
    assert factor.amr == ("otp", "sms")


def test_state_never_holds_the_code() -> None:
    code, state = begin(code_value=123456)
    assert code == "123456"
    assert state.code_digest != code
    assert code not in state.code_digest
    assert code not in json.dumps(state.to_dict())
    assert len(state.code_digest) == 64  # HMAC-SHA256 hex


def test_digest_depends_on_the_server_key() -> None:
    # A stolen state cannot be brute-forced offline without the server's MAC key.
    other = SecretBox(b"o" * 32)
    code, state = begin(code_value=1)
    with pytest.raises(InvalidCode):
        EmailOtpMethod.complete(
            state, code, now=NOW, digest=lambda m: other.mac(b"otp", m.encode())
        )


def test_state_round_trips_through_json() -> None:
    code, state = begin()
    restored = OtpChallengeState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert restored == state
    EmailOtpMethod.complete(restored, code, now=NOW, digest=digest)


def test_code_accepts_spaces_and_dashes() -> None:
    _, state = begin(code_value=123456)
    EmailOtpMethod.complete(state, "123 456", now=NOW, digest=digest)
    EmailOtpMethod.complete(state, "123-456", now=NOW, digest=digest)


# --- attacks ---------------------------------------------------------------------------------


def test_wrong_code_reports_attempts_remaining() -> None:
    code, state = begin()
    with pytest.raises(InvalidCode) as info:
        EmailOtpMethod.complete(state, wrong(code), now=NOW, digest=digest)
    assert info.value.extra == {"attempts_remaining": 4}
    assert info.value.code == "invalid_code"


@pytest.mark.parametrize("bad", ["", "12345", "1234567", "abcdef", "١٢٣٤٥٦", "12345\x00", " " * 6])
def test_malformed_code_is_invalid(bad: str) -> None:
    _, state = begin(code_value=123456)
    with pytest.raises(InvalidCode):
        EmailOtpMethod.complete(state, bad, now=NOW, digest=digest)


def test_expired_code_is_refused() -> None:
    code, state = begin(ttl_seconds=300)
    EmailOtpMethod.complete(state, code, now=NOW + 299.9, digest=digest)
    with pytest.raises(CodeExpired):
        EmailOtpMethod.complete(state, code, now=NOW + 300, digest=digest)
    with pytest.raises(CodeExpired):
        EmailOtpMethod.complete(state, code, now=NOW + 86_400, digest=digest)


@pytest.mark.parametrize("ttl", [0, -1, 601, 3600])
def test_ttl_above_ten_minutes_is_refused(ttl: int) -> None:
    with pytest.raises(ValueError):
        begin(ttl_seconds=ttl)


def test_fewer_than_six_digits_is_refused() -> None:
    with pytest.raises(ValueError):
        begin(digits=4)


def test_attempts_exhausted_kills_the_code() -> None:
    code, state = begin(max_attempts=5)
    for remaining in (4, 3, 2, 1, 0):
        with pytest.raises(InvalidCode) as info:
            EmailOtpMethod.complete(state, wrong(code), now=NOW, digest=digest)
        assert info.value.extra["attempts_remaining"] == remaining
        state = state.with_failure()
    assert state.attempts_remaining == 0
    # Even the right code is now refused: the code is dead, a new one must be requested.
    with pytest.raises(CodeExpired):
        EmailOtpMethod.complete(state, code, now=NOW, digest=digest)


def test_used_code_cannot_be_replayed() -> None:
    code, state = begin()
    EmailOtpMethod.complete(state, code, now=NOW, digest=digest)
    state = state.used()
    with pytest.raises(CodeUsed):
        EmailOtpMethod.complete(state, code, now=NOW + 1, digest=digest)


def test_code_for_challenge_a_is_refused_on_challenge_b() -> None:
    # Same user, same destination, and (forced) the same code value: only the binding differs.
    code_a, state_a = begin(challenge_id="chal-A", code_value=111111)
    code_b, state_b = begin(challenge_id="chal-B", code_value=111111)
    assert code_a == code_b
    assert state_a.code_digest != state_b.code_digest
    # A digest copied from A's row into B's row does not verify either.
    forged = OtpChallengeState.from_dict({**state_b.to_dict(), "code_digest": state_a.code_digest})
    with pytest.raises(InvalidCode):
        EmailOtpMethod.complete(forged, code_a, now=NOW, digest=digest)
    # And with real random codes, A's code is wrong on B.
    code_a, _ = begin(challenge_id="chal-A", code_value=222222)
    _, state_b = begin(challenge_id="chal-B", code_value=333333)
    with pytest.raises(InvalidCode):
        EmailOtpMethod.complete(state_b, code_a, now=NOW, digest=digest)


@pytest.mark.parametrize(
    "field, value",
    [("user_id", "user-2"), ("destination", "mallory@example.com"), ("credential_id", "cred-2")],
)
def test_state_fields_are_bound_into_the_digest(field: str, value: str) -> None:
    code, state = begin()
    tampered = OtpChallengeState.from_dict({**state.to_dict(), field: value})
    with pytest.raises(InvalidCode):
        EmailOtpMethod.complete(tampered, code, now=NOW, digest=digest)


def test_email_code_is_refused_by_the_sms_method() -> None:
    code, state = begin(EmailOtpMethod)
    with pytest.raises(ChallengeNotFound):
        SmsOtpMethod.complete(state, code, now=NOW, digest=digest)
    # Relabelling the channel in storage does not help: the channel is in the digest.
    relabelled = OtpChallengeState.from_dict({**state.to_dict(), "method": "sms_otp"})
    with pytest.raises(InvalidCode):
        SmsOtpMethod.complete(relabelled, code, now=NOW, digest=digest)


def test_expected_user_mismatch_is_refused() -> None:
    code, state = begin(user_id="user-1")
    EmailOtpMethod.complete(state, code, now=NOW, digest=digest, expected_user_id="user-1")
    with pytest.raises(ChallengeNotFound):
        EmailOtpMethod.complete(state, code, now=NOW, digest=digest, expected_user_id="user-2")


def test_codes_are_random_and_unique_enough() -> None:
    codes = [begin(challenge_id=str(i))[0] for i in range(500)]
    assert len(set(codes)) > 480
    assert all(len(c) == 6 and c.isdigit() for c in codes)


def test_eight_digit_codes() -> None:
    code, state = begin(digits=8)
    assert len(code) == 8
    EmailOtpMethod.complete(state, code, now=NOW, digest=digest)
    with pytest.raises(InvalidCode):
        EmailOtpMethod.complete(state, code[:6], now=NOW, digest=digest)


def test_only_the_right_code_out_of_many_verifies() -> None:
    _, state = begin(code_value=424242)
    hits = [
        c
        for c in (f"{n:06d}" for n in itertools.chain(range(0, 1000), range(424000, 425000)))
        if _verifies(state, c)
    ]
    assert hits == ["424242"]


def _verifies(state: OtpChallengeState, code: str) -> bool:
    try:
        EmailOtpMethod.complete(state, code, now=NOW, digest=digest)
    except InvalidCode:
        return False
    return True


# --- masking ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address, masked",
    [
        ("alice@example.com", "a***e@example.com"),
        ("bo@example.com", "b***@example.com"),
        ("x@example.com", "x***@example.com"),
        ("first.last+tag@mail.example.org", "f***g@mail.example.org"),
        ("not-an-email", "***"),
        ("@example.com", "***"),
    ],
)
def test_mask_email(address: str, masked: str) -> None:
    assert mask_email(address) == masked


@pytest.mark.parametrize(
    "number, masked",
    [
        ("+14155550123", "+*******0123"),
        ("+44 20 7946 0958", "+********0958"),
        ("0612345", "*****45"),
        ("1234", "****"),
        ("", "***"),
    ],
)
def test_mask_phone(number: str, masked: str) -> None:
    assert mask_phone(number) == masked
