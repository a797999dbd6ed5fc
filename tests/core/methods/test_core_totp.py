"""TOTP: RFC 4226/6238 vectors, acceptance window, replay, malformed input, enrolment helpers."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from stepguard.core.assurance import FactorKind, MethodName
from stepguard.core.errors import CodeUsed, InvalidCode
from stepguard.core.methods.totp import (
    TotpDeviceState,
    TotpMethod,
    generate_secret,
    hotp_at,
    provisioning_uri,
    qr_svg,
    totp_at,
)

VECTORS = Path(__file__).resolve().parents[2] / "vectors"
HOTP = json.loads((VECTORS / "rfc4226_hotp.json").read_text())
TOTP = json.loads((VECTORS / "rfc6238_totp.json").read_text())


# --- RFC vectors -----------------------------------------------------------------------------


def test_vector_files_are_complete() -> None:
    assert len(HOTP["cases"]) == 10
    assert len(TOTP["cases"]) == 18
    assert {c["mode"] for c in TOTP["cases"]} == {"SHA1", "SHA256", "SHA512"}


@pytest.mark.parametrize("case", HOTP["cases"], ids=lambda c: f"counter={c['counter']}")
def test_rfc4226_appendix_d(case: dict[str, Any]) -> None:
    secret = bytes.fromhex(HOTP["secret_hex"])
    assert hotp_at(secret, case["counter"], digits=HOTP["digits"]) == case["hotp"]


@pytest.mark.parametrize("case", TOTP["cases"], ids=lambda c: f"{c['mode']}-T{c['time']}")
def test_rfc6238_appendix_b(case: dict[str, Any]) -> None:
    secret = bytes.fromhex(case["seed_hex"])
    assert int(case["time"]) // TOTP["step"] == int(case["counter_hex"], 16)
    code = totp_at(secret, case["time"], TOTP["digits"], TOTP["step"], case["mode"])
    assert code == case["totp"]


@pytest.mark.parametrize("case", TOTP["cases"], ids=lambda c: f"{c['mode']}-T{c['time']}")
def test_rfc6238_vectors_verify_through_the_method(case: dict[str, Any]) -> None:
    state = TotpDeviceState(
        device_id="dev",
        secret=base64.b32encode(bytes.fromhex(case["seed_hex"])).decode(),
        last_used_step=None,
        digits=TOTP["digits"],
        period=TOTP["step"],
        algorithm=case["mode"],
    )
    factor = TotpMethod.complete(state, case["totp"], now=case["time"])
    assert factor.details == {"step": int(case["counter_hex"], 16)}


# --- verification ---------------------------------------------------------------------------

SECRET = generate_secret(lambda n: bytes(range(1, n + 1)))
RAW = base64.b32decode(SECRET + "=" * (-len(SECRET) % 8))
NOW = 1_700_000_015.0  # mid-step
STEP = int(NOW // 30)


def device(last_used_step: int | None = None) -> TotpDeviceState:
    return TotpDeviceState(device_id="dev-1", secret=SECRET, last_used_step=last_used_step)


def code_at_step(step: int) -> str:
    return hotp_at(RAW, step)


def test_current_code_verifies_as_mfa() -> None:
    factor = TotpMethod.complete(device(), code_at_step(STEP), now=NOW)
    assert factor.method is MethodName.TOTP
    assert factor.kind is FactorKind.MFA
    assert factor.amr == ("otp", "swk")
    assert factor.credential_id == "dev-1"
    assert factor.details == {"step": STEP}


@pytest.mark.parametrize("offset", [-1, 0, 1])
def test_one_step_either_side_is_accepted(offset: int) -> None:
    factor = TotpMethod.complete(device(), code_at_step(STEP + offset), now=NOW)
    assert factor.details == {"step": STEP + offset}


@pytest.mark.parametrize("offset", [-2, -3, 2, 3, -100])
def test_steps_outside_the_window_are_refused(offset: int) -> None:
    with pytest.raises(InvalidCode):
        TotpMethod.complete(device(), code_at_step(STEP + offset), now=NOW)


def test_step_boundaries_use_the_server_clock() -> None:
    start = STEP * 30.0
    code = code_at_step(STEP)
    # Valid through the current step and the next (one back), not two steps later.
    TotpMethod.complete(device(), code, now=start)
    TotpMethod.complete(device(), code, now=start + 59.999)
    with pytest.raises(InvalidCode):
        TotpMethod.complete(device(), code, now=start + 60)


def test_replay_of_a_used_step_is_refused() -> None:
    code = code_at_step(STEP)
    factor = TotpMethod.complete(device(), code, now=NOW)
    state = device().after_use(factor.details["step"])
    with pytest.raises(CodeUsed) as info:
        TotpMethod.complete(state, code, now=NOW + 1)
    assert info.value.code == "code_used"
    # Still refused in the next step, while the code is inside the window.
    with pytest.raises(CodeUsed):
        TotpMethod.complete(state, code, now=NOW + 30)


def test_older_step_after_a_newer_one_is_refused() -> None:
    state = device(last_used_step=STEP)
    with pytest.raises(CodeUsed):
        TotpMethod.complete(state, code_at_step(STEP - 1), now=NOW)
    # The next step is still fresh.
    factor = TotpMethod.complete(state, code_at_step(STEP + 1), now=NOW)
    assert factor.details == {"step": STEP + 1}


def test_wrong_code_is_invalid() -> None:
    right = code_at_step(STEP)
    window = {code_at_step(STEP + d) for d in (-1, 0, 1)}
    wrong = next(
        c for c in (f"{(int(right) + i) % 10**6:06d}" for i in range(1, 10)) if c not in window
    )
    with pytest.raises(InvalidCode):
        TotpMethod.complete(device(), wrong, now=NOW)


@pytest.mark.parametrize("bad", ["", "12345", "1234567", "abcdef", "١٢٣٤٥٦", "12 34 5", "+12345"])
def test_malformed_input_is_invalid(bad: str) -> None:
    with pytest.raises(InvalidCode):
        TotpMethod.complete(device(), bad, now=NOW)


def test_spaces_in_a_code_are_tolerated() -> None:
    code = code_at_step(STEP)
    TotpMethod.complete(device(), f"{code[:3]} {code[3:]}", now=NOW)


def test_a_code_from_another_secret_is_refused() -> None:
    other = TotpDeviceState(device_id="dev-2", secret=generate_secret(), last_used_step=None)
    with pytest.raises(InvalidCode):
        TotpMethod.complete(other, code_at_step(STEP), now=NOW)


def test_early_epoch_has_no_negative_step() -> None:
    state = device()
    factor = TotpMethod.complete(state, code_at_step(0), now=5)
    assert factor.details == {"step": 0}


# --- enrolment helpers ------------------------------------------------------------------------


def test_generated_secret_has_at_least_160_bits() -> None:
    secret = generate_secret()
    raw = base64.b32decode(secret + "=" * (-len(secret) % 8))
    assert len(raw) >= 20
    assert "=" not in secret
    assert len({generate_secret() for _ in range(100)}) == 100
    with pytest.raises(ValueError):
        generate_secret(length=10)
    with pytest.raises(ValueError):
        generate_secret(lambda n: b"short")


def test_generate_secret_uses_the_injected_randomness() -> None:
    assert generate_secret(lambda n: b"\x00" * n) == "A" * 32


def test_provisioning_uri() -> None:
    uri = provisioning_uri(SECRET, account_name="alice@example.com", issuer="Shop")
    parsed = urlparse(uri)
    assert parsed.scheme == "otpauth"
    assert parsed.netloc == "totp"
    assert "alice%40example.com" in parsed.path and "Shop" in parsed.path
    query = parse_qs(parsed.query)
    assert query["secret"] == [SECRET]
    assert query["issuer"] == ["Shop"]


def test_provisioning_uri_non_default_parameters() -> None:
    uri = provisioning_uri(
        SECRET, account_name="a", issuer="I", digits=8, period=60, algorithm="SHA256"
    )
    query = parse_qs(urlparse(uri).query)
    assert query["digits"] == ["8"]
    assert query["period"] == ["60"]
    assert query["algorithm"] == ["SHA256"]


def test_qr_svg_is_inline_svg() -> None:
    svg = qr_svg(provisioning_uri(SECRET, account_name="alice", issuer="Shop"))
    assert svg.startswith("<svg")
    assert svg.rstrip().endswith("</svg>")
    assert "<?xml" not in svg
    assert SECRET not in svg  # the secret is only in the QR modules, not as text
