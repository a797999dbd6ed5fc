"""Signing in with an email code: a session for users who have no app backend session yet.

``/sign-in/email/send`` answers the same shape, with the same status and work, whether or not an
account has that address (ASVS 6.3.8): for an unknown address a decoy challenge is stored that no
code can ever open, and real codes are delivered after the answer, so timing tells nothing either.
A sign-in code counts toward the same per-address lockout as step-up codes.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import Field, StrictStr
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from stepguard.core.assurance import MethodName
from stepguard.core.errors import ChallengeNotFound, MethodNotAllowed, VerificationFailed
from stepguard.core.safety import check_lockout
from stepguard.server.db import Credential, User
from stepguard.server.deps import Service
from stepguard.server.routes._codes import keyed_digest, throttled, throttles_for
from stepguard.server.routes.otp import (
    DESTINATION_LABEL,
    PURPOSE_SIGN_IN,
    issue_code,
    load_code,
    spend_code,
)
from stepguard.server.schemas import Body
from stepguard.server.service import StepGuardService, normalize_email
from stepguard.server.stepup import ip_of, run_attempt

__all__ = ["router", "sign_in_send", "sign_in_verify"]


async def _email_enabled(service: StepGuardService, environment_id: str) -> None:
    await service.get_environment(environment_id)  # 404 for an unknown environment
    policy = await service.policy(environment_id)
    if MethodName.EMAIL_OTP not in policy.enabled_methods:
        raise MethodNotAllowed("email sign-in is not enabled in this environment")


async def sign_in_send(
    service: StepGuardService, environment_id: str, *, email: str, ip: str | None
) -> dict[str, Any]:
    """Send a sign-in code to ``email`` if an account has it; the answer never says."""
    await _email_enabled(service, environment_id)
    address = normalize_email(email)
    async with service.db.session() as s:
        cred = (
            await s.scalars(
                select(Credential)
                .join(User, User.id == Credential.user_id)
                .where(
                    Credential.environment_id == environment_id,
                    Credential.kind == "email",
                    Credential.value == address,
                    Credential.verified.is_(True),
                    Credential.sign_in_enabled.is_(True),
                    User.disabled.is_(False),
                )
            )
        ).first()
    return await issue_code(
        service,
        environment_id=environment_id,
        user_id=cred.user_id if cred else None,
        session_id=None,
        credential_id=cred.id if cred else None,
        kind="email",
        destination=address,
        purpose=PURPOSE_SIGN_IN,
        ip=ip,
        deliver=cred is not None,
        background=True,
        throttle_user=False,
    )


async def sign_in_verify(
    service: StepGuardService,
    environment_id: str,
    *,
    verification_id: str,
    code: str,
    ip: str | None,
) -> dict[str, Any]:
    """Check a sign-in code and open a session: ``{session_token, session_id, user_id, expires_at}``."""
    await _email_enabled(service, environment_id)
    row = await load_code(service, verification_id)
    if (
        row.environment_id != environment_id
        or row.purpose != PURPOSE_SIGN_IN
        or row.method != MethodName.EMAIL_OTP.value
    ):
        raise ChallengeNotFound()
    throttles = throttles_for(service)
    await throttled(
        service,
        lambda: throttles.on_verify(authenticator=row.credential_id or row.id, ip=ip),
        action="email_otp.sign_in",
        method=MethodName.EMAIL_OTP,
        environment_id=environment_id,
        user_id=row.user_id,
        ip=ip,
    )
    # A decoy (unknown address) keeps a lockout of its own in memory, fed and checked with the
    # same rules as a real address's, so failures do not tell the two apart either.
    decoy = None
    if row.credential_id is None:
        decoy = "decoy:" + keyed_digest(service, DESTINATION_LABEL)(
            str(row.state.get("destination", ""))
        )
        check_lockout(throttles.decoy_lockout(decoy), now=service.clock.now())

    async def verify(s: AsyncSession, cred: Credential | None) -> str:
        spent, _factor = await spend_code(
            service, s, verification_id, code, expected_user_id=row.user_id
        )
        # A decoy has nobody to sign in; a real address may have been removed or had sign-in
        # turned off since the send.
        if spent.user_id is None or cred is None or not (cred.verified and cred.sign_in_enabled):
            raise ChallengeNotFound()
        return spent.user_id

    try:
        user_id = await run_attempt(
            service,
            environment_id=environment_id,
            user_id=row.user_id,
            method=MethodName.EMAIL_OTP,
            ip=ip,
            credential_id=row.credential_id,
            action="sign_in",
            verify=verify,
        )
    except VerificationFailed:
        if decoy is not None:
            throttles.decoy_failed(decoy, now=service.clock.now())
        raise
    token, session = await service.create_session(
        environment_id, user_id, origin="email_otp", actor="user", ip=ip
    )
    return {
        "session_token": token,
        "session_id": session.id,
        "user_id": user_id,
        "expires_at": session.expires_at,
    }


class SendBody(Body):
    email: StrictStr = Field(min_length=3, max_length=320)


class VerifyBody(Body):
    verification_id: StrictStr = Field(min_length=1, max_length=64)
    code: StrictStr = Field(min_length=1, max_length=32)


router = APIRouter(prefix="/sdk/{environment_id}/sign-in", tags=["sign-in"])


@router.post("/email/send")
async def send_route(
    environment_id: str, body: SendBody, request: Request, service: Service
) -> Any:
    """Send a sign-in code (no session needed); the answer is the same for unknown addresses."""
    return await sign_in_send(service, environment_id, email=body.email, ip=ip_of(request, service))


@router.post("/email/verify")
async def verify_route(
    environment_id: str, body: VerifyBody, request: Request, service: Service
) -> Any:
    """Exchange a sign-in code for a session token."""
    return await sign_in_verify(
        service,
        environment_id,
        verification_id=body.verification_id,
        code=body.code,
        ip=ip_of(request, service),
    )
