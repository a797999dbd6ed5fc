"""The scope catalogue: built-in scopes plus custom ones per environment.

A scope is an opaque string such as ``wallet:export``. Built-in scopes are listed here; an
environment may add custom scopes that match :data:`SCOPE_PATTERN`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from enum import StrEnum

from stepguard.core.errors import InvalidScopes

__all__ = [
    "BUILTIN_SCOPES",
    "SCOPE_PATTERN",
    "TokenScope",
    "is_valid_scope_name",
    "normalize_scopes",
]


class TokenScope(StrEnum):
    """Built-in scopes (the reference product's catalogue)."""

    WALLET_EXPORT = "wallet:export"
    WALLET_SIGN = "wallet:sign"
    WALLET_DELEGATE = "wallet:delegate"
    WALLET_DELETE = "wallet:delete"
    WALLET_RESTORE = "wallet:restore"
    CREDENTIAL_LINK = "credential:link"
    CREDENTIAL_UNLINK = "credential:unlink"
    CREDENTIAL_UPDATE = "credential:update"
    USER_UPDATE = "user:update"
    USER_DELETE = "user:delete"
    CONSOLE_MEMBER_INVITE = "console:member:invite"
    CONSOLE_MFA_RESET = "console:mfa:reset"
    CONSOLE_PROJECT_DELETE = "console:project:delete"
    CONSOLE_SETTINGS_UPDATE = "console:settings:update"
    CONSOLE_SSO_UPDATE = "console:sso:update"
    CONSOLE_USER_DELETE = "console:user:delete"
    CONSOLE_ADMIN_ACTION_REVIEW = "console:admin_action:review"
    CONSOLE_APPROVAL_WORKFLOW_UPDATE = "console:approval_workflow:update"
    BUSINESS_ACCOUNT_SIGNER_ADD = "business_account:signer:add"
    BUSINESS_ACCOUNT_SIGNER_REMOVE = "business_account:signer:remove"
    BUSINESS_ACCOUNT_MEMBER_ADD = "business_account:member:add"
    BUSINESS_ACCOUNT_MEMBER_REMOVE = "business_account:member:remove"
    BUSINESS_ACCOUNT_MEMBER_ROLE_UPDATE = "business_account:member:role:update"
    BUSINESS_ACCOUNT_TRANSFER_OWNERSHIP = "business_account:transfer_ownership"
    BUSINESS_ACCOUNT_LINK_WALLET = "business_account:link_wallet"
    BUSINESS_ACCOUNT_WALLET_REMOVE = "business_account:wallet:remove"


BUILTIN_SCOPES: frozenset[str] = frozenset(s.value for s in TokenScope)

#: A scope is lower-case words joined by ``:``; the first word names a family (``wallet``).
SCOPE_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,31}(:[a-z0-9_]{1,32}){1,4}$")


def is_valid_scope_name(scope: str) -> bool:
    """Whether ``scope`` is well-formed (says nothing about whether an environment knows it)."""
    return bool(SCOPE_PATTERN.fullmatch(scope))


def normalize_scopes(
    scopes: Iterable[str], *, known: frozenset[str] | None = None
) -> tuple[str, ...]:
    """Sorted, de-duplicated scopes; raises :class:`InvalidScopes` for an empty, malformed or unknown one."""
    known = BUILTIN_SCOPES if known is None else known
    if isinstance(scopes, str):
        raise InvalidScopes("requested_scopes must be a list of scope strings")
    out = set()
    bad: list[str] = []
    for scope in scopes:
        if not isinstance(scope, str) or not is_valid_scope_name(scope) or scope not in known:
            bad.append(str(scope)[:64])
        else:
            out.add(scope)
    if bad:
        raise InvalidScopes(f"unknown or malformed scopes: {', '.join(sorted(bad))}", scopes=bad)
    if not out:
        raise InvalidScopes("at least one scope is required")
    return tuple(sorted(out))
