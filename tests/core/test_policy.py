"""Per-environment and per-scope policy: defaults, combination rules, custom scopes, bad input."""

from __future__ import annotations

from typing import Any

import pytest

from stepguard.core.assurance import MethodName
from stepguard.core.errors import InvalidScopes, ValidationFailed
from stepguard.core.policy import (
    DEFAULT_ENABLED_METHODS,
    MAX_TTL_SECONDS,
    EnvironmentPolicy,
    ScopePolicy,
    TokenBehavior,
    default_scope_policy,
)
from stepguard.core.scopes import BUILTIN_SCOPES


@pytest.mark.parametrize("scope", sorted(BUILTIN_SCOPES))
def test_builtin_defaults(scope: str) -> None:
    p = EnvironmentPolicy().policy_for(scope)
    assert p.required is True and p.allowed_methods is None and p.max_age is None
    if scope.startswith("wallet:"):
        assert (p.behavior, p.ttl_seconds) == (TokenBehavior.SINGLE_USE, 300)
    else:
        assert (p.behavior, p.ttl_seconds) == (TokenBehavior.TIME_BOUND, 600)
    assert default_scope_policy(scope) == p


def test_environment_defaults() -> None:
    env = EnvironmentPolicy()
    assert env.enforcement and env.mfa_enabled
    assert MethodName.SMS_OTP not in env.enabled_methods  # opt-in (NIST 800-63B)
    assert env.enabled_methods == DEFAULT_ENABLED_METHODS
    d = env.to_dict()
    assert set(d["scopes"]) == BUILTIN_SCOPES
    assert d["scopes"]["wallet:sign"]["token_behavior"] == "single_use"


def test_several_scopes_most_restrictive_and_shortest_ttl_win() -> None:
    env = EnvironmentPolicy()
    eff = env.resolve(["user:update", "wallet:export"])
    assert eff.single_use is True and eff.ttl_seconds == 300
    assert eff.scopes == ("user:update", "wallet:export")  # sorted
    env = EnvironmentPolicy.from_dict(
        {
            "scopes": {
                "user:update": {"ttl_seconds": 60, "max_age": 900},
                "user:delete": {"max_age": 300, "bind_transaction": True},
            }
        }
    )
    eff = env.resolve(["user:update", "user:delete", "wallet:export"])
    assert eff.ttl_seconds == 60 and eff.single_use is True
    assert eff.max_age == 300 and eff.bind_transaction is True
    eff = env.resolve(["user:update", "user:update"])
    assert eff.scopes == ("user:update",) and eff.single_use is False and eff.max_age == 900


def test_allowed_methods_are_intersected_with_the_environment() -> None:
    env = EnvironmentPolicy.from_dict(
        {
            "enabled_methods": ["email_otp", "totp", "passkey"],
            "scopes": {
                "wallet:export": {"allowed_methods": ["totp", "passkey", "sms_otp"]},
                "wallet:sign": {"allowed_methods": ["passkey", "email_otp"]},
            },
        }
    )
    assert env.resolve(["wallet:export"]).allowed_methods == {MethodName.TOTP, MethodName.PASSKEY}
    assert env.resolve(["wallet:export", "wallet:sign"]).allowed_methods == {MethodName.PASSKEY}
    assert env.resolve(["user:update"]).allowed_methods == {
        MethodName.EMAIL_OTP,
        MethodName.TOTP,
        MethodName.PASSKEY,
    }


def test_enforcement_and_required() -> None:
    off = EnvironmentPolicy.from_dict({"enforcement": False})
    assert off.resolve(["wallet:export"]).required is False
    optional = EnvironmentPolicy.from_dict({"scopes": {"user:update": {"required": False}}})
    assert optional.resolve(["user:update"]).required is False
    assert optional.resolve(["user:update", "user:delete"]).required is True


def test_custom_scopes() -> None:
    env = EnvironmentPolicy.from_dict(
        {
            "custom_scopes": ["app:report:export", "billing:refund"],
            "scopes": {"billing:refund": {"token_behavior": "single_use", "ttl_seconds": 120}},
        }
    )
    assert env.resolve(["app:report:export"]).ttl_seconds == 600  # non-wallet default
    eff = env.resolve(["billing:refund", "user:update"])
    assert eff.single_use and eff.ttl_seconds == 120
    with pytest.raises(InvalidScopes):
        EnvironmentPolicy().resolve(["app:report:export"])  # unknown without the declaration
    # A custom scope under the wallet family takes the wallet default.
    w = EnvironmentPolicy.from_dict({"custom_scopes": ["wallet:custom"]})
    assert w.resolve(["wallet:custom"]).single_use is True


def test_dropping_a_custom_scope_drops_its_override() -> None:
    env = EnvironmentPolicy.from_dict(
        {"custom_scopes": ["app:x:y"], "scopes": {"app:x:y": {"ttl_seconds": 60}}}
    )
    dropped = env.updated({"custom_scopes": []})
    assert "app:x:y" not in dropped.scopes
    # What the database stores reads back (it used to raise invalid_scopes).
    assert EnvironmentPolicy.from_dict(dropped.overrides_dict()) == dropped


def test_overrides_round_trip() -> None:
    env = EnvironmentPolicy.from_dict(
        {
            "enforcement": False,
            "mfa_enabled": False,
            "enabled_methods": ["totp"],
            "custom_scopes": ["app:x:y"],
            "scopes": {"app:x:y": {"allowed_methods": ["totp"], "max_age": 60}},
        }
    )
    assert EnvironmentPolicy.from_dict(env.overrides_dict()) == env
    assert EnvironmentPolicy.from_dict(None) == EnvironmentPolicy()
    # Partial updates keep what is not mentioned.
    again = env.updated({"enforcement": True})
    assert again.scopes == env.scopes and again.enforcement is True


def test_ttl_is_capped() -> None:
    ok = ScopePolicy.from_dict({"ttl_seconds": MAX_TTL_SECONDS})
    assert ok.ttl_seconds == MAX_TTL_SECONDS
    with pytest.raises(ValidationFailed):
        ScopePolicy.from_dict({"ttl_seconds": MAX_TTL_SECONDS + 1})


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ([], ValidationFailed),
        ("x", ValidationFailed),
        ({"nope": 1}, ValidationFailed),
        ({"enforcement": 1}, ValidationFailed),
        ({"enforcement": "true"}, ValidationFailed),
        ({"mfa_enabled": None}, ValidationFailed),
        ({"enabled_methods": "totp"}, ValidationFailed),
        ({"enabled_methods": None}, ValidationFailed),
        ({"enabled_methods": ["totp", "fax"]}, ValidationFailed),
        ({"enabled_methods": [["totp"]]}, ValidationFailed),
        ({"enabled_methods": [{"a": 1}]}, ValidationFailed),
        ({"custom_scopes": "app:x:y"}, ValidationFailed),
        ({"custom_scopes": [1]}, ValidationFailed),
        ({"custom_scopes": ["UPPER:case"]}, InvalidScopes),
        ({"custom_scopes": ["noseparator"]}, InvalidScopes),
        ({"custom_scopes": ["a:" + "b" * 40]}, InvalidScopes),
        ({"scopes": []}, ValidationFailed),
        ({"scopes": {"not:declared": {}}}, InvalidScopes),
        ({"scopes": {"wallet:export": None}}, ValidationFailed),
        ({"scopes": {"wallet:export": {"weird": 1}}}, ValidationFailed),
        ({"scopes": {"wallet:export": {"required": "no"}}}, ValidationFailed),
        ({"scopes": {"wallet:export": {"token_behavior": "forever"}}}, ValidationFailed),
        ({"scopes": {"wallet:export": {"token_behavior": ["single_use"]}}}, ValidationFailed),
        ({"scopes": {"wallet:export": {"ttl_seconds": 9}}}, ValidationFailed),
        ({"scopes": {"wallet:export": {"ttl_seconds": 60.5}}}, ValidationFailed),
        ({"scopes": {"wallet:export": {"ttl_seconds": True}}}, ValidationFailed),
        ({"scopes": {"wallet:export": {"ttl_seconds": "60"}}}, ValidationFailed),
        ({"scopes": {"wallet:export": {"max_age": 0}}}, ValidationFailed),
        ({"scopes": {"wallet:export": {"allowed_methods": "totp"}}}, ValidationFailed),
        ({"scopes": {"wallet:export": {"allowed_methods": ["x"]}}}, ValidationFailed),
        ({"scopes": {"wallet:export": {"bind_transaction": 1}}}, ValidationFailed),
    ],
)
def test_bad_policy_input_has_a_stable_code(data: Any, error: type[Exception]) -> None:
    with pytest.raises(error) as e:
        EnvironmentPolicy().updated(data)
    assert type(e.value) is error
    assert e.value.code == ("invalid_scopes" if error is InvalidScopes else "validation_error")  # type: ignore[attr-defined]


def test_bad_resolve_input() -> None:
    env = EnvironmentPolicy()
    for scopes in ([], ["wallet:exp0rt"], ["Wallet:Export"], "wallet:export", [None], [""]):
        with pytest.raises(InvalidScopes) as e:
            env.resolve(scopes)  # type: ignore[arg-type]
        assert e.value.code == "invalid_scopes"
