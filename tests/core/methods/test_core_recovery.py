"""Recovery codes: entropy, format, normalisation, single use, storage as keyed digests."""

from __future__ import annotations

import base64
import math
import re

import pytest

from stepguard.core.assurance import FactorKind, MethodName
from stepguard.core.errors import InvalidCode
from stepguard.core.keys import SecretBox
from stepguard.core.methods.recovery import (
    RecoveryCodeMethod,
    RecoveryCodeState,
    generate_recovery_codes,
    normalize_code,
)

NOW = 1_700_000_000.0
BOX = SecretBox(b"r" * 32)
FORMAT = re.compile(r"[a-z2-7]{4}(-[a-z2-7]{4}){5}")


def digest(message: str) -> str:
    return BOX.mac(b"recovery", message.encode())


def test_ten_codes_by_default_in_readable_groups() -> None:
    codes = generate_recovery_codes()
    assert len(codes) == 10
    for code in codes:
        assert FORMAT.fullmatch(code), code


def test_each_code_carries_at_least_112_bits() -> None:
    code = generate_recovery_codes(1)[0]
    compact = normalize_code(code)
    # base32: 5 bits per character; the decoded payload is the random bytes themselves.
    assert len(compact) * math.log2(32) >= 112
    raw = base64.b32decode(compact.upper())
    assert len(raw) * 8 >= 112


def test_codes_come_from_the_injected_randomness() -> None:
    requested: list[int] = []
    counter = iter(range(256))

    def randbytes(n: int) -> bytes:
        requested.append(n)
        return bytes([next(counter)]) * n

    codes = generate_recovery_codes(3, randbytes=randbytes)
    assert requested == [15, 15, 15]
    assert codes[0] == "aaaa-aaaa-aaaa-aaaa-aaaa-aaaa"
    assert len(set(codes)) == 3


def test_codes_are_unique() -> None:
    codes = [c for _ in range(50) for c in generate_recovery_codes()]
    assert len(set(codes)) == len(codes) == 500


def test_a_repeating_random_source_is_refused() -> None:
    with pytest.raises(ValueError):
        generate_recovery_codes(2, randbytes=lambda n: b"\x01" * n)
    with pytest.raises(ValueError):
        generate_recovery_codes(1, randbytes=lambda n: b"\x01" * (n - 1))


def test_normalize_code() -> None:
    assert normalize_code(" ABCD-efgh ijkl\tMNOP-qrst-uvwx ") == "abcdefghijklmnopqrstuvwx"


def test_state_stores_digests_only() -> None:
    codes = generate_recovery_codes()
    state = RecoveryCodeState.from_codes(codes, digest=digest)
    assert len(state.digests) == 10
    stored = " ".join(d for d in state.digests if d)
    for code in codes:
        assert code not in stored
        assert normalize_code(code) not in stored
    assert all(d is not None and len(d) == 64 for d in state.digests)


def test_every_code_verifies_and_reports_its_index() -> None:
    codes = generate_recovery_codes()
    state = RecoveryCodeState.from_codes(codes, digest=digest)
    for i, code in enumerate(codes):
        factor = RecoveryCodeMethod.complete(
            state, code, now=NOW, digest=digest, credential_id="set-1"
        )
        assert factor.details == {"index": i}
        assert factor.method is MethodName.RECOVERY_CODE
        assert factor.kind is FactorKind.MFA
        assert factor.credential_id == "set-1"


def test_typed_variants_verify() -> None:
    codes = generate_recovery_codes(2)
    state = RecoveryCodeState.from_codes(codes, digest=digest)
    typed = codes[1].upper().replace("-", " ")
    assert RecoveryCodeMethod.complete(state, typed, now=NOW, digest=digest).details == {"index": 1}


def test_code_used_twice_is_refused_after_the_state_update() -> None:
    codes = generate_recovery_codes()
    state = RecoveryCodeState.from_codes(codes, digest=digest)
    factor = RecoveryCodeMethod.complete(state, codes[3], now=NOW, digest=digest)
    state = state.used(factor.details["index"])
    assert state.digests[3] is None
    assert state.remaining == 9
    with pytest.raises(InvalidCode):
        RecoveryCodeMethod.complete(state, codes[3], now=NOW + 1, digest=digest)
    # The others still work.
    RecoveryCodeMethod.complete(state, codes[4], now=NOW, digest=digest)


def test_all_codes_used() -> None:
    codes = generate_recovery_codes(2)
    state = RecoveryCodeState.from_codes(codes, digest=digest).used(0).used(1)
    assert state.remaining == 0
    for code in codes:
        with pytest.raises(InvalidCode):
            RecoveryCodeMethod.complete(state, code, now=NOW, digest=digest)


def test_unknown_code_is_invalid() -> None:
    state = RecoveryCodeState.from_codes(generate_recovery_codes(), digest=digest)
    with pytest.raises(InvalidCode):
        RecoveryCodeMethod.complete(state, generate_recovery_codes(1)[0], now=NOW, digest=digest)


def test_another_users_codes_do_not_verify() -> None:
    alice = RecoveryCodeState.from_codes(generate_recovery_codes(), digest=digest)
    bob_codes = generate_recovery_codes()
    for code in bob_codes:
        with pytest.raises(InvalidCode):
            RecoveryCodeMethod.complete(alice, code, now=NOW, digest=digest)


def test_digest_needs_the_server_key() -> None:
    codes = generate_recovery_codes(1)
    state = RecoveryCodeState.from_codes(codes, digest=digest)
    other = SecretBox(b"x" * 32)
    with pytest.raises(InvalidCode):
        RecoveryCodeMethod.complete(
            state, codes[0], now=NOW, digest=lambda m: other.mac(b"recovery", m.encode())
        )


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "abcd",
        "aaaa-aaaa-aaaa-aaaa-aaaa-aaa",
        "aaaa-aaaa-aaaa-aaaa-aaaa-aaaa-a",
        "0000-0000-0000-0000-0000-0000",
        "aaaa-aaaa-aaaa-aaaa-aaaa-aaa=",
        "ááaa-aaaa-aaaa-aaaa-aaaa-aaaa",
    ],
)
def test_malformed_codes_are_invalid(bad: str) -> None:
    state = RecoveryCodeState.from_codes(["aaaa-aaaa-aaaa-aaaa-aaaa-aaaa"], digest=digest)
    with pytest.raises(InvalidCode):
        RecoveryCodeMethod.complete(state, bad, now=NOW, digest=digest)
    RecoveryCodeMethod.complete(state, "aaaa-aaaa-aaaa-aaaa-aaaa-aaaa", now=NOW, digest=digest)


def test_search_visits_every_slot(monkeypatch: pytest.MonkeyPatch) -> None:
    # No short-circuit: every slot is compared even when the first one matches.
    from stepguard.core.safety import constant_time_equals as original

    compared: list[str | bytes] = []

    def spy(a: str | bytes, b: str | bytes) -> bool:
        compared.append(b)
        return original(a, b)

    codes = generate_recovery_codes(5)
    state = RecoveryCodeState.from_codes(codes, digest=digest).used(2)
    monkeypatch.setattr("stepguard.core.methods.recovery.constant_time_equals", spy)
    assert RecoveryCodeMethod.complete(state, codes[0], now=NOW, digest=digest).details == {
        "index": 0
    }
    assert len(compared) == 5
