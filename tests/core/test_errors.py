"""The error tree: stable codes, statuses, JSON bodies."""

from __future__ import annotations

import pytest

from stepguard.core import errors
from stepguard.core.errors import (
    AuthTooOld,
    ElevatedTokenError,
    InvalidScopes,
    RateLimited,
    StepGuardError,
    error_for_code,
)

# Codes named in DESIGN.md ("Wire conventions"): a public contract.
GUARD_CODES = {
    "elevated_token_required",
    "elevated_token_invalid",
    "elevated_token_expired",
    "elevated_token_used",
    "scope_not_granted",
    "subject_mismatch",
}
SERVER_CODES = {
    "invalid_code",
    "code_expired",
    "rate_limited",
    "method_not_allowed",
    "mfa_required",
    "invalid_scopes",
}


def _classes() -> list[type[StepGuardError]]:
    return [
        obj
        for obj in vars(errors).values()
        if isinstance(obj, type) and issubclass(obj, StepGuardError)
    ]


def test_design_codes_exist() -> None:
    codes = {cls.code for cls in _classes()}
    assert GUARD_CODES | SERVER_CODES <= codes
    for code in GUARD_CODES:
        assert issubclass(error_for_code(code), ElevatedTokenError)
        assert error_for_code(code).status == 401


@pytest.mark.parametrize("cls", _classes(), ids=lambda c: c.__name__)
def test_every_error_has_a_code_a_status_and_a_body(cls: type[StepGuardError]) -> None:
    assert cls.code and cls.code == cls.code.lower() and " " not in cls.code
    assert 400 <= cls.status <= 599
    assert cls.description.endswith(".")
    exc = cls() if cls is not RateLimited else cls(retry_after=1.2)
    body = exc.to_dict()
    assert body["code"] == cls.code and body["error"] == cls.description
    assert str(exc) == cls.description


def test_codes_map_back_to_the_most_general_class() -> None:
    assert error_for_code("invalid_scopes") is InvalidScopes
    # AuthTooOld shares elevated_token_expired with its parent; the parent is returned.
    assert error_for_code("elevated_token_expired") is errors.ElevatedTokenExpired
    assert AuthTooOld.code == "elevated_token_expired"
    assert error_for_code("no_such_code") is StepGuardError


def test_all_codes_are_unique_except_documented_aliases() -> None:
    seen: dict[str, list[str]] = {}
    for cls in _classes():
        seen.setdefault(cls.code, []).append(cls.__name__)
    shared = {code: sorted(names) for code, names in seen.items() if len(names) > 1}
    assert shared == {
        "elevated_token_expired": ["AuthTooOld", "ElevatedTokenExpired"],
        "elevated_token_invalid": ["ElevatedTokenError", "ElevatedTokenInvalid"],
    }


def test_detail_and_extra_fields() -> None:
    exc = InvalidScopes("unknown: x:y", scopes=["x:y"])
    assert exc.to_dict() == {"code": "invalid_scopes", "error": "unknown: x:y", "scopes": ["x:y"]}
    assert exc.status == 422


def test_rate_limited_rounds_retry_after_up() -> None:
    exc = RateLimited(retry_after=1.2)
    assert exc.retry_after == 1.2 and exc.to_dict()["retry_after"] == 2
    assert RateLimited(retry_after=-5).retry_after == 0.0
    assert RateLimited().status == 429
