"""Per-environment and per-scope step-up policy.

Defaults follow the reference product: ``wallet:*`` scopes are single-use with a 300 s lifetime,
every other scope is time-bound for 600 s. When several scopes are requested at once the most
restrictive behaviour and the shortest lifetime win, and the allowed methods are intersected.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from stepguard.core.assurance import MethodName
from stepguard.core.errors import InvalidScopes, ValidationFailed
from stepguard.core.scopes import BUILTIN_SCOPES, is_valid_scope_name, normalize_scopes

__all__ = [
    "DEFAULT_ENABLED_METHODS",
    "MAX_TTL_SECONDS",
    "EffectivePolicy",
    "EnvironmentPolicy",
    "ScopePolicy",
    "TokenBehavior",
    "default_scope_policy",
]

#: Elevated tokens never live longer than this, whatever an admin configures.
MAX_TTL_SECONDS = 3600
SINGLE_USE_TTL = 300
TIME_BOUND_TTL = 600

#: SMS is opt-in per environment (NIST 800-63B §3.2.9 restricts it).
DEFAULT_ENABLED_METHODS: frozenset[MethodName] = frozenset(MethodName) - {MethodName.SMS_OTP}


class TokenBehavior(StrEnum):
    SINGLE_USE = "single_use"
    TIME_BOUND = "time_bound"


@dataclass(frozen=True, slots=True)
class ScopePolicy:
    """How one scope is elevated."""

    required: bool = True
    behavior: TokenBehavior = TokenBehavior.TIME_BOUND
    ttl_seconds: int = TIME_BOUND_TTL
    #: ``None``: every method the environment enables.
    allowed_methods: frozenset[MethodName] | None = None
    #: Maximum age in seconds of the authentication behind a token for this scope.
    max_age: int | None = None
    #: Whether a token for this scope must carry a transaction digest (``txn``).
    bind_transaction: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "required": self.required,
            "token_behavior": self.behavior.value,
            "ttl_seconds": self.ttl_seconds,
            "allowed_methods": (
                None if self.allowed_methods is None else sorted(self.allowed_methods)
            ),
            "max_age": self.max_age,
            "bind_transaction": self.bind_transaction,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, base: ScopePolicy | None = None) -> ScopePolicy:
        """Build from JSON; keys that are absent keep ``base``'s values. Raises ValidationFailed."""
        base = base or cls()
        if not isinstance(data, Mapping):
            raise ValidationFailed("a scope policy must be an object")
        unknown = set(data) - {
            "required",
            "token_behavior",
            "ttl_seconds",
            "allowed_methods",
            "max_age",
            "bind_transaction",
        }
        if unknown:
            raise ValidationFailed(f"unknown scope policy fields: {', '.join(sorted(unknown))}")
        out = base
        if "required" in data:
            out = replace(out, required=_bool(data["required"], "required"))
        if "token_behavior" in data:
            try:
                out = replace(out, behavior=TokenBehavior(data["token_behavior"]))
            except (ValueError, TypeError):
                raise ValidationFailed("token_behavior must be single_use or time_bound") from None
        if "ttl_seconds" in data:
            out = replace(
                out, ttl_seconds=_int(data["ttl_seconds"], "ttl_seconds", 10, MAX_TTL_SECONDS)
            )
        if "allowed_methods" in data:
            raw = data["allowed_methods"]
            out = replace(out, allowed_methods=None if raw is None else _methods(raw))
        if "max_age" in data:
            out = replace(
                out,
                max_age=None
                if data["max_age"] is None
                else _int(data["max_age"], "max_age", 1, 86_400 * 30),
            )
        if "bind_transaction" in data:
            out = replace(out, bind_transaction=_bool(data["bind_transaction"], "bind_transaction"))
        return out


def default_scope_policy(scope: str) -> ScopePolicy:
    """The default policy of a scope: ``wallet:*`` single-use 300 s, others time-bound 600 s."""
    if scope.startswith("wallet:"):
        return ScopePolicy(behavior=TokenBehavior.SINGLE_USE, ttl_seconds=SINGLE_USE_TTL)
    return ScopePolicy(behavior=TokenBehavior.TIME_BOUND, ttl_seconds=TIME_BOUND_TTL)


@dataclass(frozen=True, slots=True)
class EffectivePolicy:
    """The combined policy of a set of scopes."""

    scopes: tuple[str, ...]
    required: bool
    single_use: bool
    ttl_seconds: int
    allowed_methods: frozenset[MethodName]
    max_age: int | None
    bind_transaction: bool


@dataclass(frozen=True, slots=True)
class EnvironmentPolicy:
    """Policy of one environment."""

    enforcement: bool = True
    enabled_methods: frozenset[MethodName] = DEFAULT_ENABLED_METHODS
    #: MFA precedence: a user with a verified MFA method must step up with MFA.
    mfa_enabled: bool = True
    custom_scopes: frozenset[str] = frozenset()
    scopes: Mapping[str, ScopePolicy] = field(default_factory=dict)

    @property
    def known_scopes(self) -> frozenset[str]:
        return BUILTIN_SCOPES | self.custom_scopes

    def policy_for(self, scope: str) -> ScopePolicy:
        return self.scopes.get(scope) or default_scope_policy(scope)

    def normalize(self, scopes: Iterable[str]) -> tuple[str, ...]:
        return normalize_scopes(scopes, known=self.known_scopes)

    def resolve(self, scopes: Iterable[str]) -> EffectivePolicy:
        """Combine the policies of ``scopes``: most restrictive behaviour, shortest TTL."""
        names = self.normalize(scopes)
        policies = [self.policy_for(s) for s in names]
        allowed = set(self.enabled_methods)
        for p in policies:
            if p.allowed_methods is not None:
                allowed &= p.allowed_methods
        ages = [p.max_age for p in policies if p.max_age is not None]
        return EffectivePolicy(
            scopes=names,
            required=self.enforcement and any(p.required for p in policies),
            single_use=any(p.behavior is TokenBehavior.SINGLE_USE for p in policies),
            ttl_seconds=min(p.ttl_seconds for p in policies),
            allowed_methods=frozenset(allowed),
            max_age=min(ages) if ages else None,
            bind_transaction=any(p.bind_transaction for p in policies),
        )

    def to_dict(self) -> dict[str, Any]:
        known = sorted(self.known_scopes)
        return {
            "enforcement": self.enforcement,
            "enabled_methods": sorted(self.enabled_methods),
            "mfa_enabled": self.mfa_enabled,
            "custom_scopes": sorted(self.custom_scopes),
            "scopes": {s: self.policy_for(s).to_dict() for s in known},
        }

    def overrides_dict(self) -> dict[str, Any]:
        """Only what differs from the defaults (what the database stores)."""
        return {
            "enforcement": self.enforcement,
            "enabled_methods": sorted(self.enabled_methods),
            "mfa_enabled": self.mfa_enabled,
            "custom_scopes": sorted(self.custom_scopes),
            "scopes": {s: p.to_dict() for s, p in sorted(self.scopes.items())},
        }

    def updated(self, data: Mapping[str, Any]) -> EnvironmentPolicy:
        """A copy with the fields of ``data`` applied (partial update). Raises ValidationFailed."""
        if not isinstance(data, Mapping):
            raise ValidationFailed("policy must be an object")
        unknown = set(data) - {
            "enforcement",
            "enabled_methods",
            "mfa_enabled",
            "custom_scopes",
            "scopes",
        }
        if unknown:
            raise ValidationFailed(f"unknown policy fields: {', '.join(sorted(unknown))}")
        out = self
        if "enforcement" in data:
            out = replace(out, enforcement=_bool(data["enforcement"], "enforcement"))
        if "mfa_enabled" in data:
            out = replace(out, mfa_enabled=_bool(data["mfa_enabled"], "mfa_enabled"))
        if "enabled_methods" in data:
            methods = _methods(data["enabled_methods"])
            out = replace(out, enabled_methods=methods)
        if "custom_scopes" in data:
            raw = data["custom_scopes"]
            if not isinstance(raw, list) or not all(isinstance(s, str) for s in raw):
                raise ValidationFailed("custom_scopes must be a list of strings")
            bad = [s for s in raw if not is_valid_scope_name(s)]
            if bad:
                raise InvalidScopes(f"malformed custom scopes: {', '.join(bad)}", scopes=bad)
            custom = frozenset(raw)
            # Overrides of custom scopes that are gone would make the stored policy unreadable.
            kept = {s: p for s, p in out.scopes.items() if s in BUILTIN_SCOPES or s in custom}
            out = replace(out, custom_scopes=custom, scopes=kept)
        if "scopes" in data:
            raw_scopes = data["scopes"]
            if not isinstance(raw_scopes, Mapping):
                raise ValidationFailed("scopes must be an object of scope -> policy")
            merged = dict(out.scopes)
            for scope, spec in raw_scopes.items():
                if scope not in out.known_scopes:
                    raise InvalidScopes(f"unknown scope: {str(scope)[:64]}", scopes=[scope])
                merged[scope] = ScopePolicy.from_dict(spec, base=out.policy_for(scope))
            out = replace(out, scopes=merged)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> EnvironmentPolicy:
        return cls().updated(data or {})


def _bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise ValidationFailed(f"{name} must be true or false")
    return value


def _int(value: Any, name: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValidationFailed(f"{name} must be an integer between {lo} and {hi}")
    return value


def _methods(value: Any) -> frozenset[MethodName]:
    if value is None:
        raise ValidationFailed("allowed methods must be a list")
    if not isinstance(value, list | tuple | set | frozenset):
        raise ValidationFailed("methods must be a list of method names")
    try:
        return frozenset(MethodName(v) for v in value)
    except ValueError:
        valid = ", ".join(m.value for m in MethodName)
        raise ValidationFailed(f"unknown method; valid methods: {valid}") from None
