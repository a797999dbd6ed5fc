"""The audit log: one row per admin action and per verification attempt, secrets masked."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from stepguard.server.db import AuditEvent

__all__ = ["SECRET_KEYS", "audit", "list_events", "mask"]

#: Detail keys whose values never reach the log.
SECRET_KEYS = frozenset(
    {
        "code",
        "token",
        "session_token",
        "secret",
        "seed",
        "password",
        "signature",
        "assertion",
        "elevated_access_token",
        "verification_token",
        "recovery_code",
        "admin_key",
        "jwt",
    }
)


def mask(details: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in details.items():
        if key.lower() in SECRET_KEYS:
            out[key] = "***"
        elif isinstance(value, Mapping):
            out[key] = mask(value)
        else:
            out[key] = value
    return out


def audit(
    s: AsyncSession,
    *,
    now: float,
    actor: str,
    action: str,
    outcome: str = "success",
    environment_id: str | None = None,
    user_id: str | None = None,
    ip: str | None = None,
    method: str | None = None,
    scopes: Iterable[str] | None = None,
    details: Mapping[str, Any] | None = None,
) -> AuditEvent:
    """Add an audit event to the session's transaction (written with it, or not at all)."""
    event = AuditEvent(
        environment_id=environment_id,
        at=now,
        actor=actor,
        action=action,
        outcome=outcome,
        user_id=user_id,
        ip=ip,
        method=method,
        scopes=" ".join(scopes) if scopes else None,
        details=mask(details or {}),
    )
    s.add(event)
    return event


async def list_events(
    s: AsyncSession,
    *,
    environment_id: str,
    user_id: str | None = None,
    action: str | None = None,
    limit: int = 100,
    before_id: int | None = None,
) -> list[AuditEvent]:
    stmt = select(AuditEvent).where(AuditEvent.environment_id == environment_id)
    if user_id is not None:
        stmt = stmt.where(AuditEvent.user_id == user_id)
    if action is not None:
        stmt = stmt.where(AuditEvent.action == action)
    if before_id is not None:
        stmt = stmt.where(AuditEvent.id < before_id)
    stmt = stmt.order_by(AuditEvent.id.desc()).limit(limit)
    return list((await s.scalars(stmt)).all())
