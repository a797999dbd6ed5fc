"""Recovery codes: ten single-use look-up secrets standing in for a lost second factor.

Codes (120 bits each) are shown once, when generated, and stored as keyed HMAC-SHA256 digests
(one :class:`~stepguard.server.db.RecoveryCode` row each). A code is spent by a compare-and-set
``UPDATE … WHERE used_at IS NULL``, so it works once even when two requests race. Generating a new
set deletes the old one (``credential:link`` needed once the user has any verified credential).

The set as a whole is one authenticator for the consecutive-failure lockout: a
:class:`~stepguard.server.db.Credential` of kind ``recovery`` carries its failure count (it is not
a sign-in credential and never counts as MFA by itself).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import Field, StrictBool, StrictStr
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from stepguard.core.assurance import MethodName
from stepguard.core.errors import CodeUsed, InvalidCode, NoMethodsAvailable
from stepguard.core.methods.recovery import (
    DEFAULT_CODE_COUNT,
    RecoveryCodeMethod,
    RecoveryCodeState,
    generate_recovery_codes,
)
from stepguard.core.scopes import TokenScope
from stepguard.server.audit import audit
from stepguard.server.db import Credential, RecoveryCode, new_id
from stepguard.server.deps import CurrentSession, Service
from stepguard.server.routes._codes import (
    finish,
    keyed_digest,
    precheck_elevation,
    throttled,
    throttles_for,
)
from stepguard.server.schemas import Body
from stepguard.server.service import LiveSession, StepGuardService
from stepguard.server.stepup import Requested, claim, elevation_gate, ip_of, run_attempt

__all__ = ["RECOVERY_KIND", "recovery_codes", "remaining_codes", "router", "verify_recovery"]

#: Credential kind of the row that holds the recovery-code set's lockout bookkeeping.
RECOVERY_KIND = "recovery"
_DIGEST_LABEL = b"recovery"


async def _remaining(s: AsyncSession, user_id: str) -> int:
    count = await s.scalar(
        select(func.count())
        .select_from(RecoveryCode)
        .where(RecoveryCode.user_id == user_id, RecoveryCode.used_at.is_(None))
    )
    return int(count or 0)


async def _authenticator(s: AsyncSession, user_id: str) -> Credential | None:
    stmt = select(Credential).where(Credential.user_id == user_id, Credential.kind == RECOVERY_KIND)
    return (await s.scalars(stmt)).first()


async def recovery_codes(
    service: StepGuardService, request: Request, session: LiveSession, *, generate_new: bool
) -> dict[str, Any]:
    """``{codes, remaining}`` when a set is generated now, else ``{remaining}``.

    Without ``generate_new`` a set is generated only if the user has none (codes already issued
    can never be shown again: only their digests exist).
    """
    now = service.clock.now()
    async with service.db.transaction() as s:
        has_set = bool(
            await s.scalar(
                select(func.count())
                .select_from(RecoveryCode)
                .where(RecoveryCode.user_id == session.user_id)
            )
        )
        if has_set and not generate_new:
            return {"remaining": await _remaining(s, session.user_id)}
        await elevation_gate(service, request, session, TokenScope.CREDENTIAL_LINK.value, s=s)
        codes = generate_recovery_codes(DEFAULT_CODE_COUNT)
        state = RecoveryCodeState.from_codes(codes, digest=keyed_digest(service, _DIGEST_LABEL))
        await s.execute(delete(RecoveryCode).where(RecoveryCode.user_id == session.user_id))
        for idx, digest in enumerate(state.digests):
            assert digest is not None  # a fresh set has no used slot
            s.add(
                RecoveryCode(
                    id=new_id("rc_"),
                    user_id=session.user_id,
                    idx=idx,
                    digest=digest,
                    created_at=now,
                    used_at=None,
                )
            )
        holder = await _authenticator(s, session.user_id)
        if holder is None:
            s.add(
                Credential(
                    id=new_id("cred_"),
                    environment_id=session.environment_id,
                    user_id=session.user_id,
                    kind=RECOVERY_KIND,
                    value="recovery-codes",
                    alias="Recovery codes",
                    verified=True,
                    sign_in_enabled=False,
                    is_default=False,
                    data={},
                    failure_count=0,
                    locked_until=0.0,
                    created_at=now,
                    verified_at=now,
                )
            )
        else:
            # A new set is a re-binding, proven with credential:link: the old set's failures go.
            holder.failure_count, holder.locked_until = 0, 0.0
        audit(
            s,
            now=now,
            actor="user",
            action="recovery_code.generate",
            environment_id=session.environment_id,
            user_id=session.user_id,
            ip=ip_of(request, service),
            method=MethodName.RECOVERY_CODE.value,
            details={"count": len(codes), "replaced": has_set},
        )
    return {"codes": codes, "remaining": len(codes)}


async def remaining_codes(service: StepGuardService, session: LiveSession) -> dict[str, Any]:
    """``{remaining}``: unused codes of the current set."""
    async with service.db.session() as s:
        return {"remaining": await _remaining(s, session.user_id)}


async def verify_recovery(
    service: StepGuardService,
    session: LiveSession,
    *,
    code: str,
    requested_scopes: list[str],
    ip: str | None,
) -> dict[str, Any]:
    """Spend one recovery code and mint for ``requested_scopes`` (answer includes ``remaining``)."""
    async with service.db.session() as s:
        holder = await _authenticator(s, session.user_id)
    if holder is None:
        raise NoMethodsAvailable("no recovery codes; generate a set first")
    await throttled(
        service,
        lambda: throttles_for(service).on_verify(authenticator=holder.id, ip=ip),
        action="recovery_code.verify",
        method=MethodName.RECOVERY_CODE,
        environment_id=session.environment_id,
        user_id=session.user_id,
        ip=ip,
        scopes=requested_scopes,
    )
    await precheck_elevation(service, session, MethodName.RECOVERY_CODE, requested_scopes, ip=ip)

    async def verify(s: AsyncSession, cred: Credential | None) -> dict[str, Any]:
        rows = (
            await s.scalars(
                select(RecoveryCode)
                .where(RecoveryCode.user_id == session.user_id)
                .order_by(RecoveryCode.idx)
            )
        ).all()
        state = RecoveryCodeState(tuple(r.digest if r.used_at is None else None for r in rows))
        if not state.remaining:
            raise InvalidCode("No recovery codes left: generate a new set.")
        factor = RecoveryCodeMethod.complete(
            state,
            code,
            now=service.clock.now(),
            digest=keyed_digest(service, _DIGEST_LABEL),
            credential_id=holder.id,
        )
        row = rows[int(factor.details["index"])]
        won = await claim(
            s,
            RecoveryCode,
            [RecoveryCode.id == row.id, RecoveryCode.used_at.is_(None)],
            used_at=service.clock.now(),
        )
        if not won:
            raise CodeUsed("This recovery code was already used.")
        return await finish(
            service,
            session,
            factor,
            requested_scopes,
            s=s,
            ip=ip,
            extra={"remaining": state.remaining - 1},
        )

    return await run_attempt(
        service,
        environment_id=session.environment_id,
        user_id=session.user_id,
        method=MethodName.RECOVERY_CODE,
        ip=ip,
        credential_id=holder.id,
        scopes=requested_scopes,
        verify=verify,
    )


# -- HTTP --------------------------------------------------------------------------------------


class GenerateBody(Body):
    generate_new: StrictBool = False


class VerifyBody(Requested):
    code: StrictStr = Field(min_length=1, max_length=64)


router = APIRouter(prefix="/sdk/{environment_id}/mfa", tags=["recovery-codes"])


@router.post("/recovery-codes")
async def generate_route(
    body: GenerateBody, request: Request, session: CurrentSession, service: Service
) -> Any:
    """Get (generating when asked, or when there is no set) the recovery codes."""
    return await recovery_codes(service, request, session, generate_new=body.generate_new)


@router.get("/recovery-codes")
async def remaining_route(session: CurrentSession, service: Service) -> Any:
    """How many recovery codes are left."""
    return await remaining_codes(service, session)


@router.post("/recovery/verify")
async def verify_route(
    body: VerifyBody, request: Request, session: CurrentSession, service: Service
) -> Any:
    """Step up with a recovery code: an elevated token for ``requested_scopes``."""
    return await verify_recovery(
        service,
        session,
        code=body.code,
        requested_scopes=body.requested_scopes,
        ip=ip_of(request, service),
    )
