"""The scope catalogue and scope normalisation."""

from __future__ import annotations

import pytest

from stepguard.core.errors import InvalidScopes
from stepguard.core.scopes import (
    BUILTIN_SCOPES,
    TokenScope,
    is_valid_scope_name,
    normalize_scopes,
)

# DESIGN.md, "Scopes and policy": these names are a public contract.
DESIGN_SCOPES = {
    "wallet:export",
    "wallet:sign",
    "wallet:delegate",
    "wallet:delete",
    "wallet:restore",
    "credential:link",
    "credential:unlink",
    "credential:update",
    "user:update",
    "user:delete",
    "console:member:invite",
    "console:mfa:reset",
    "console:project:delete",
    "console:settings:update",
    "console:sso:update",
    "console:user:delete",
}


def test_catalogue_holds_the_design_scopes() -> None:
    assert DESIGN_SCOPES <= BUILTIN_SCOPES
    assert any(s.startswith("business_account:") for s in BUILTIN_SCOPES)
    assert BUILTIN_SCOPES == {s.value for s in TokenScope}
    assert all(is_valid_scope_name(s) for s in BUILTIN_SCOPES)


@pytest.mark.parametrize(
    "name",
    ["app:x", "a:b:c:d:e", "billing_v2:refund_all", "x" * 32 + ":y"],
)
def test_valid_names(name: str) -> None:
    assert is_valid_scope_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "",
        "wallet",
        ":export",
        "wallet:",
        "Wallet:export",
        "wallet export",
        "wallet:export ",
        "wallet::export",
        "1wallet:export",
        "a:b:c:d:e:f",
        "x" * 33 + ":y",
        "wallet:exp-ort",
        "wallet:exp\u00f6rt",
        "wallet:export\n",
    ],
)
def test_invalid_names(name: str) -> None:
    assert not is_valid_scope_name(name)


def test_normalize_sorts_and_deduplicates() -> None:
    got = normalize_scopes(["wallet:sign", "user:update", "wallet:sign"])
    assert got == ("user:update", "wallet:sign")


def test_normalize_refuses_unknown_malformed_and_empty() -> None:
    with pytest.raises(InvalidScopes) as e:
        normalize_scopes(["wallet:export", "app:custom", "BAD"])
    assert e.value.code == "invalid_scopes" and sorted(e.value.extra["scopes"]) == [
        "BAD",
        "app:custom",
    ]
    with pytest.raises(InvalidScopes):
        normalize_scopes([])
    with pytest.raises(InvalidScopes):
        normalize_scopes("wallet:export")  # a string is not a list of scopes
    with pytest.raises(InvalidScopes):
        normalize_scopes([1, None])  # type: ignore[list-item]
    long = "x" * 500
    with pytest.raises(InvalidScopes) as e:
        normalize_scopes([long])
    assert all(len(s) <= 64 for s in e.value.extra["scopes"])  # echoed back, but truncated


def test_custom_catalogue() -> None:
    known = BUILTIN_SCOPES | {"app:custom"}
    assert normalize_scopes(["app:custom"], known=known) == ("app:custom",)
