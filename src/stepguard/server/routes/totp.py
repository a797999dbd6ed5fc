"""TOTP authenticator apps: enrolment, the MFA device list, and verification for step-up.

A device is a :class:`~stepguard.server.db.Credential` of kind ``totp``. Its seed (160 bits) is
sealed with AES-GCM under the server secret, bound to the device id as associated data, so a
sealed seed copied onto another row does not open (``secret_sealed``; never stored in the clear).
It stays unverified, and cannot step up, until its first good code. The time step last accepted
is claimed with a compare-and-set ``UPDATE`` (``last_used_step < step``), so a code, or any older
one, works once even when two requests race (RFC 6238 §5.2).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import Field, StrictStr
from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from stepguard.core.assurance import MethodName
from stepguard.core.errors import CodeUsed, Conflict, NoMethodsAvailable, NotFound
from stepguard.core.methods.base import VerifiedFactor
from stepguard.core.methods.totp import (
    TotpDeviceState,
    TotpMethod,
    generate_secret,
    provisioning_uri,
    qr_svg,
)
from stepguard.core.scopes import TokenScope
from stepguard.server import stepup
from stepguard.server.audit import audit
from stepguard.server.db import Credential, Environment, new_id
from stepguard.server.deps import CurrentSession, Service
from stepguard.server.routes._codes import finish, precheck_elevation, throttled, throttles_for
from stepguard.server.schemas import Body
from stepguard.server.service import MFA_KINDS, LiveSession, StepGuardService
from stepguard.server.stepup import (
    Requested,
    claim,
    credential_json,
    elevation_gate,
    ip_of,
    load_credential,
    run_attempt,
)

__all__ = ["MAX_DEVICES", "confirm_device", "enroll_device", "router", "verify_totp"]

#: Enrolled TOTP devices per user, verified or not (each enrolment stores a sealed seed).
MAX_DEVICES = 10
ISSUER = "stepguard"


def _seal_purpose(device_id: str) -> str:
    return f"stepguard/totp-seed/{device_id}"


def _device_state(service: StepGuardService, cred: Credential) -> TotpDeviceState:
    if cred.secret_sealed is None:
        raise NotFound("unknown device", resource="device")
    secret = service.box.open(cred.secret_sealed, purpose=_seal_purpose(cred.id)).decode()
    data = cred.data or {}
    return TotpDeviceState(
        device_id=cred.id,
        secret=secret,
        last_used_step=cred.last_used_step,
        digits=int(data.get("digits", 6)),
        period=int(data.get("period", 30)),
        algorithm=str(data.get("algorithm", "SHA1")),
    )


async def _check_and_claim(
    service: StepGuardService, s: AsyncSession, cred: Credential, code: str
) -> VerifiedFactor:
    """Verify ``code`` against the device and claim its time step (exactly one winner)."""
    factor = TotpMethod.complete(_device_state(service, cred), code, now=service.clock.now())
    step = int(factor.details["step"])
    won = await claim(
        s,
        Credential,
        [
            Credential.id == cred.id,
            or_(Credential.last_used_step.is_(None), Credential.last_used_step < step),
        ],
        last_used_step=step,
    )
    if not won:
        raise CodeUsed("This code was already used; wait for the next one.")
    return factor


async def enroll_device(
    service: StepGuardService, request: Request, session: LiveSession, *, alias: str | None
) -> dict[str, Any]:
    """A new, unverified TOTP device: ``{id, secret, uri, qr_svg, verified: false, ...}``.

    Needs ``credential:link`` once the user has any verified credential. The secret is shown
    here once; afterwards only its sealed form exists.
    """
    now = service.clock.now()
    async with service.db.transaction() as s:
        await elevation_gate(service, request, session, TokenScope.CREDENTIAL_LINK.value, s=s)
        count = await s.scalar(
            select(func.count())
            .select_from(Credential)
            .where(Credential.user_id == session.user_id, Credential.kind == "totp")
        )
        if (count or 0) >= MAX_DEVICES:
            raise Conflict(f"at most {MAX_DEVICES} TOTP devices per user; remove one first")
        email = (
            await s.scalars(
                select(Credential.value)
                .where(
                    Credential.user_id == session.user_id,
                    Credential.kind == "email",
                    Credential.verified.is_(True),
                )
                .order_by(Credential.created_at)
            )
        ).first()
        env = await s.get(Environment, session.environment_id)
        issuer = ISSUER if env is None or env.is_default else f"{ISSUER} ({env.name})"
        device_id = new_id("totp_")
        secret = generate_secret()
        cred = Credential(
            id=device_id,
            environment_id=session.environment_id,
            user_id=session.user_id,
            kind="totp",
            value=device_id,
            alias=alias,
            verified=False,
            sign_in_enabled=False,
            is_default=False,
            data={"digits": 6, "period": 30, "algorithm": "SHA1"},
            secret_sealed=service.box.seal(secret.encode(), purpose=_seal_purpose(device_id)),
            failure_count=0,
            locked_until=0.0,
            created_at=now,
        )
        s.add(cred)
        audit(
            s,
            now=now,
            actor="user",
            action="totp.register",
            environment_id=session.environment_id,
            user_id=session.user_id,
            ip=ip_of(request, service),
            method=MethodName.TOTP.value,
            details={"credential_id": device_id},
        )
    uri = provisioning_uri(secret, account_name=email or session.user_id, issuer=issuer)
    return {
        **_device_json(cred),
        "secret": secret,
        "uri": uri,
        "qr_svg": qr_svg(uri),
    }


async def confirm_device(
    service: StepGuardService,
    session: LiveSession,
    *,
    device_id: str,
    code: str,
    ip: str | None,
) -> dict[str, Any]:
    """Verify a new device with its first good code; the user's first MFA device is default."""
    async with service.db.session() as s:
        found = await load_credential(s, session.user_id, device_id, ("totp",))
    if found.verified:
        raise Conflict("this device is already verified")
    await throttled(
        service,
        lambda: throttles_for(service).on_verify(authenticator=device_id, ip=ip),
        action="totp.enroll",
        method=MethodName.TOTP,
        environment_id=session.environment_id,
        user_id=session.user_id,
        ip=ip,
    )

    async def verify(s: AsyncSession, cred: Credential | None) -> dict[str, Any]:
        if cred is None:
            raise NotFound("unknown device", resource="device")
        await _check_and_claim(service, s, cred, code)
        now = service.clock.now()
        has_default = await s.scalar(
            select(func.count())
            .select_from(Credential)
            .where(
                Credential.user_id == session.user_id,
                Credential.kind.in_(MFA_KINDS),
                Credential.verified.is_(True),
                Credential.is_default.is_(True),
            )
        )
        cred.verified = True
        cred.verified_at = now
        cred.is_default = not has_default
        return _device_json(cred)

    return await run_attempt(
        service,
        environment_id=session.environment_id,
        user_id=session.user_id,
        method=MethodName.TOTP,
        ip=ip,
        credential_id=device_id,
        action="enroll",
        verify=verify,
    )


async def _pick_device(service: StepGuardService, user_id: str, device_id: str | None) -> str:
    async with service.db.session() as s:
        if device_id is not None:
            cred = await load_credential(s, user_id, device_id, ("totp",))
            if not cred.verified:
                raise NotFound("unknown device", resource="device")
            return cred.id
        devices = (
            await s.scalars(
                select(Credential)
                .where(
                    Credential.user_id == user_id,
                    Credential.kind == "totp",
                    Credential.verified.is_(True),
                )
                .order_by(Credential.created_at)
            )
        ).all()
    if not devices:
        raise NoMethodsAvailable("no verified TOTP device")
    return next((d.id for d in devices if d.is_default), devices[0].id)


async def verify_totp(
    service: StepGuardService,
    session: LiveSession,
    *,
    code: str,
    device_id: str | None,
    requested_scopes: list[str],
    ip: str | None,
) -> dict[str, Any]:
    """Verify a TOTP code (the default device unless ``device_id``) and mint for the scopes."""
    chosen = await _pick_device(service, session.user_id, device_id)
    await throttled(
        service,
        lambda: throttles_for(service).on_verify(authenticator=chosen, ip=ip),
        action="totp.verify",
        method=MethodName.TOTP,
        environment_id=session.environment_id,
        user_id=session.user_id,
        ip=ip,
        scopes=requested_scopes,
    )
    await precheck_elevation(service, session, MethodName.TOTP, requested_scopes, ip=ip)

    async def verify(s: AsyncSession, cred: Credential | None) -> dict[str, Any]:
        if cred is None or not cred.verified:
            raise NotFound("unknown device", resource="device")
        factor = await _check_and_claim(service, s, cred, code)
        return await finish(
            service, session, factor, requested_scopes, s=s, ip=ip, extra={"device_id": cred.id}
        )

    return await run_attempt(
        service,
        environment_id=session.environment_id,
        user_id=session.user_id,
        method=MethodName.TOTP,
        ip=ip,
        credential_id=chosen,
        scopes=requested_scopes,
        verify=verify,
    )


def _device_json(cred: Credential) -> dict[str, Any]:
    view = credential_json(cred)
    return {
        "id": cred.id,
        "type": cred.kind,
        "alias": cred.alias,
        "verified": cred.verified,
        "default": cred.is_default,
        "created_at": cred.created_at,
        "verified_at": cred.verified_at,
        "format": view["format"],
    }


# -- HTTP --------------------------------------------------------------------------------------


class EnrollBody(Body):
    alias: StrictStr | None = Field(default=None, max_length=100)


class CodeBody(Body):
    code: StrictStr = Field(min_length=1, max_length=16)


class VerifyBody(Requested):
    code: StrictStr = Field(min_length=1, max_length=16)
    device_id: StrictStr | None = Field(default=None, max_length=64)


router = APIRouter(prefix="/sdk/{environment_id}/mfa", tags=["totp"])


@router.post("/totp/devices", status_code=201)
async def enroll_route(
    body: EnrollBody, request: Request, session: CurrentSession, service: Service
) -> Any:
    """Start a TOTP enrolment (needs ``credential:link`` once any credential is verified)."""
    return await enroll_device(service, request, session, alias=body.alias)


@router.post("/totp/devices/{device_id}/verify")
async def confirm_route(
    device_id: str, body: CodeBody, request: Request, session: CurrentSession, service: Service
) -> Any:
    """Confirm a new device with its first code."""
    return await confirm_device(
        service, session, device_id=device_id, code=body.code, ip=ip_of(request, service)
    )


@router.post("/totp/verify")
async def verify_route(
    body: VerifyBody, request: Request, session: CurrentSession, service: Service
) -> Any:
    """Step up with a TOTP code: an elevated token for ``requested_scopes``."""
    return await verify_totp(
        service,
        session,
        code=body.code,
        device_id=body.device_id,
        requested_scopes=body.requested_scopes,
        ip=ip_of(request, service),
    )


@router.get("/devices")
async def list_devices_route(session: CurrentSession, service: Service) -> Any:
    """The user's MFA devices (TOTP and passkeys), verified or not."""
    devices = [_device_json(c) for c in await service.credentials(session.user_id)]
    return {"devices": [d for d in devices if d["type"] in MFA_KINDS]}


@router.delete("/devices/{device_id}")
async def delete_device_route(
    device_id: str, request: Request, session: CurrentSession, service: Service
) -> Any:
    """Remove an MFA device (needs ``credential:unlink`` once verified)."""
    async with service.db.session() as s:
        await load_credential(s, session.user_id, device_id, MFA_KINDS)
    return await stepup.delete_credential(device_id, request, session, service)
