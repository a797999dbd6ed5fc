"""Email and SMS one-time codes: send, verify, and linking an email address or phone number.

A code lives in a :class:`~stepguard.server.db.Challenge` row that holds only its keyed digest
(the code itself goes to the mailer or SMS provider and nowhere else). The row is bound to its
environment, user, session, credential and purpose (``step_up``, ``enroll`` or ``sign_in``).

Safety rules, in the order a verification meets them:

1. request throttles per authenticator and IP (:class:`~._codes.Throttles`);
2. the policy pre-check (a request that could never mint spends nothing);
3. the authenticator's consecutive-failure lockout (:func:`~stepguard.server.stepup.run_attempt`),
   which a resend never resets;
4. one of the code's 5 attempts is reserved atomically (compare-and-set on ``attempts``) and
   committed *before* the code is compared, so concurrent guesses cannot exceed the cap;
5. the code is compared in constant time and the row is claimed (``used_at``) exactly once.

Sending a new code for the same credential, purpose and session voids older pending ones.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable
from dataclasses import replace
from typing import Any

from fastapi import APIRouter, Request
from pydantic import Field, StrictStr
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from stepguard.core.assurance import MethodName
from stepguard.core.errors import (
    ChallengeNotFound,
    CodeExpired,
    CodeUsed,
    Conflict,
    MethodNotAllowed,
    NoMethodsAvailable,
    NotFound,
    StepGuardError,
)
from stepguard.core.methods.base import VerifiedFactor
from stepguard.core.methods.email_otp import EmailOtpMethod
from stepguard.core.methods.otp import (
    DEFAULT_TTL_SECONDS,
    OtpChallengeState,
    OtpMethod,
    mask_email,
    mask_phone,
)
from stepguard.core.methods.sms_otp import SmsOtpMethod
from stepguard.core.safety import LockoutState, check_lockout
from stepguard.core.scopes import TokenScope
from stepguard.server.audit import audit
from stepguard.server.db import Challenge, Credential, new_id
from stepguard.server.delivery import delivery_for
from stepguard.server.deps import CurrentSession, Service
from stepguard.server.routes._codes import (
    finish,
    keyed_digest,
    precheck_elevation,
    throttled,
    throttles_for,
)
from stepguard.server.schemas import Body
from stepguard.server.service import (
    LiveSession,
    StepGuardService,
    normalize_email,
    normalize_phone,
)
from stepguard.server.stepup import (
    Requested,
    credential_json,
    elevation_gate,
    ip_of,
    load_credential,
    run_attempt,
)

__all__ = [
    "CHANNELS",
    "DESTINATION_LABEL",
    "PURPOSE_ENROLL",
    "PURPOSE_SIGN_IN",
    "PURPOSE_STEP_UP",
    "issue_code",
    "link_destination",
    "load_code",
    "router",
    "send_otp",
    "spend_code",
    "store_code",
    "verify_otp",
]

PURPOSE_STEP_UP = "step_up"
PURPOSE_ENROLL = "enroll"
PURPOSE_SIGN_IN = "sign_in"

#: Credential kind -> (channel, method class).
CHANNELS: dict[str, tuple[str, type[OtpMethod]]] = {
    "email": ("email", EmailOtpMethod),
    "phone": ("sms", SmsOtpMethod),
}
_METHODS: dict[str, type[OtpMethod]] = {cls.name.value: cls for _, cls in CHANNELS.values()}
_DIGEST_LABEL = b"otp"
#: Label of the keyed digest that names a destination in throttles (no address kept in memory).
DESTINATION_LABEL = b"otp-destination"
_CODE_IN_TEXT = re.compile(r"\b\d{6,10}\b")
#: Background deliveries (sign-in sends answer before the message goes out); kept referenced.
_PENDING: set[asyncio.Task[None]] = set()


def _mask(channel: str, destination: str) -> str:
    return mask_email(destination) if channel == "email" else mask_phone(destination)


def _message(code: str, purpose: str) -> tuple[str, str]:
    minutes = DEFAULT_TTL_SECONDS // 60
    what = {
        PURPOSE_SIGN_IN: "sign-in",
        PURPOSE_ENROLL: "confirmation",
        PURPOSE_STEP_UP: "verification",
    }[purpose]
    subject = f"Your {what} code"
    body = (
        f"Your {what} code is {code}\n\n"
        f"It expires in {minutes} minutes and works once. "
        "If you did not ask for it, ignore this message and nobody gets in."
    )
    return subject, body


async def store_code(
    service: StepGuardService,
    *,
    environment_id: str,
    user_id: str | None,
    session_id: str | None,
    credential_id: str | None,
    kind: str,
    destination: str,
    purpose: str,
    ip: str | None,
) -> tuple[str, OtpChallengeState]:
    """Draw a code and store its challenge row, voiding older pending ones; no throttle, no
    delivery (:func:`issue_code` adds both). Returns the code, for the delivery channel only."""
    _, method = CHANNELS[kind]
    now = service.clock.now()
    challenge_id = new_id("otp_")
    code, state = method.begin(
        challenge_id=challenge_id,
        user_id=user_id,
        credential_id=credential_id,
        destination=destination,
        now=now,
        digest=keyed_digest(service, _DIGEST_LABEL),
    )
    async with service.db.transaction() as s:
        # One pending code per credential, purpose and session: older ones expire now. A decoy
        # runs the same statement matching nothing, so both paths cost the same.
        owner = (
            Challenge.user_id == user_id if user_id is not None else Challenge.id == challenge_id
        )
        await s.execute(
            update(Challenge)
            .where(
                owner,
                Challenge.credential_id == credential_id,
                Challenge.purpose == purpose,
                Challenge.session_id.is_(None)
                if session_id is None
                else Challenge.session_id == session_id,
                Challenge.used_at.is_(None),
                Challenge.expires_at > now,
            )
            .values(expires_at=now)
        )
        s.add(
            Challenge(
                id=challenge_id,
                environment_id=environment_id,
                user_id=user_id,
                session_id=session_id,
                credential_id=credential_id,
                method=method.name.value,
                purpose=purpose,
                state=state.to_dict(),
                digest=state.code_digest,
                attempts=0,
                max_attempts=state.max_attempts,
                created_at=now,
                expires_at=state.expires_at,
                used_at=None,
                ip=ip,
            )
        )
        audit(
            s,
            now=now,
            actor="user",
            action=f"{method.name.value}.send",
            environment_id=environment_id,
            user_id=user_id,
            ip=ip,
            method=method.name.value,
            details={
                "credential_id": credential_id,
                "purpose": purpose,
                "challenge_id": challenge_id,
            },
        )
    return code, state


async def issue_code(
    service: StepGuardService,
    *,
    environment_id: str,
    user_id: str | None,
    session_id: str | None,
    credential_id: str | None,
    kind: str,
    destination: str,
    purpose: str,
    ip: str | None,
    deliver: bool = True,
    background: bool = False,
    throttle_user: bool = True,
) -> dict[str, Any]:
    """Store a new code for ``destination`` (voiding older ones) and send it.

    ``deliver=False`` stores a decoy that nobody receives (sign-in for an unknown address, so the
    answer looks the same); ``background=True`` answers before the message goes out (same
    timing whether or not an account exists). Throttles apply in every case (per user only with
    ``throttle_user``: sign-in leaves it out so a busy account is not told apart by its 429s).
    """
    channel, method = CHANNELS[kind]
    now = service.clock.now()
    throttles = throttles_for(service)
    dest_key = "dest:" + keyed_digest(service, DESTINATION_LABEL)(destination)
    await throttled(
        service,
        lambda: throttles.on_send(
            destination=dest_key, user_id=user_id if throttle_user else None, ip=ip
        ),
        action=f"{method.name.value}.send",
        method=method.name,
        environment_id=environment_id,
        user_id=user_id,
        ip=ip,
    )
    code, state = await store_code(
        service,
        environment_id=environment_id,
        user_id=user_id,
        session_id=session_id,
        credential_id=credential_id,
        kind=kind,
        destination=destination,
        purpose=purpose,
        ip=ip,
    )
    if deliver:
        subject, text = _message(code, purpose)
        send = delivery_for(service).send(
            channel,
            to=destination,
            subject=subject,
            body=text,
            now=now,
            environment_id=environment_id,
        )
        if background:
            task = asyncio.ensure_future(_quietly(send))
            _PENDING.add(task)
            task.add_done_callback(_PENDING.discard)
        else:
            await send
    return {
        "verification_id": state.challenge_id,
        "channel": channel,
        "destination": _mask(channel, destination),
        "expires_at": int(state.expires_at),
        "resend_after": int(throttles.next_send_at(dest_key, now) + 0.999),
    }


async def _quietly(send: Awaitable[None]) -> None:
    try:
        await send
    except StepGuardError:
        pass  # already logged (masked) by the channel; the caller answered long ago


async def _reserve_attempt(service: StepGuardService, row: Challenge, *, now: float) -> int:
    """Commit one attempt on the code before comparing it; returns the failures before it."""
    async with service.db.transaction() as s:
        result = await s.execute(
            update(Challenge)
            .where(
                Challenge.id == row.id,
                Challenge.used_at.is_(None),
                Challenge.expires_at > now,
                Challenge.attempts < Challenge.max_attempts,
            )
            .values(attempts=Challenge.attempts + 1)
            .returning(Challenge.attempts)
        )
        after = result.scalar_one_or_none()
        if after is None:
            # Spent (perhaps a moment ago by a concurrent request), expired or voided by a newer
            # code, or out of attempts: say which, from the row as it is now, comparing nothing.
            now_row = (
                await s.execute(
                    select(Challenge.used_at, Challenge.attempts, Challenge.max_attempts).where(
                        Challenge.id == row.id
                    )
                )
            ).one()
            if now_row.used_at is not None:
                raise CodeUsed()
            if now_row.attempts >= now_row.max_attempts:
                raise CodeExpired("Too many wrong codes: request a new code.")
            raise CodeExpired()
    return int(after) - 1


async def spend_code(
    service: StepGuardService,
    s: AsyncSession,
    challenge_id: str,
    code: str,
    *,
    expected_user_id: str | None,
) -> tuple[Challenge, VerifiedFactor]:
    """Check ``code`` against the challenge and claim it; inside the attempt's transaction.

    Raises the core method's errors (``invalid_code`` with ``attempts_remaining``,
    ``code_expired``, ``code_used``, ``challenge_not_found``).
    """
    row = await s.get(Challenge, challenge_id)
    if row is None:
        raise ChallengeNotFound()
    method = _METHODS.get(row.method)
    if method is None:
        raise ChallengeNotFound()
    now = service.clock.now()
    prior = await _reserve_attempt(service, row, now=now)
    stored = OtpChallengeState.from_dict(row.state)
    # The row's columns are authoritative (voided codes expire early; attempts count up).
    state = replace(
        stored,
        failed_attempts=prior,
        consumed=row.used_at is not None,
        expires_at=min(stored.expires_at, row.expires_at),
    )
    factor = method.complete(
        state,
        code,
        now=now,
        digest=keyed_digest(service, _DIGEST_LABEL),
        expected_user_id=expected_user_id,
    )
    won = await s.execute(
        update(Challenge)
        .where(Challenge.id == row.id, Challenge.used_at.is_(None))
        .values(used_at=now)
    )
    if (won.rowcount or 0) != 1:  # type: ignore[attr-defined]
        raise CodeUsed()  # a concurrent submission of the same code won
    return row, factor


async def load_code(service: StepGuardService, challenge_id: str) -> Challenge:
    """The OTP challenge row ``challenge_id`` (any purpose), or :class:`ChallengeNotFound`."""
    async with service.db.session() as s:
        row = await s.get(Challenge, challenge_id)
    if row is None or row.method not in _METHODS:
        raise ChallengeNotFound()
    return row


# -- operations (the routes are thin wrappers; the bench calls these directly) ------------------


async def send_otp(
    service: StepGuardService,
    session: LiveSession,
    *,
    credential_id: str | None,
    ip: str | None,
) -> dict[str, Any]:
    """Send a step-up code to one of the user's verified email addresses or phone numbers."""
    policy = await service.policy(session.environment_id)
    async with service.db.session() as s:
        if credential_id is not None:
            cred = await load_credential(s, session.user_id, credential_id, tuple(CHANNELS))
            if not cred.verified:
                raise NoMethodsAvailable("this credential is not verified yet")
        else:
            creds = (
                await s.scalars(
                    select(Credential)
                    .where(
                        Credential.user_id == session.user_id,
                        Credential.kind.in_(tuple(CHANNELS)),
                        Credential.verified.is_(True),
                    )
                    .order_by(Credential.created_at)
                )
            ).all()
            usable = [c for c in creds if CHANNELS[c.kind][1].name in policy.enabled_methods]
            # Email first (the reference's default), then phone.
            usable.sort(key=lambda c: c.kind != "email")
            if not usable:
                raise NoMethodsAvailable("no verified email address or phone number to send to")
            cred = usable[0]
    method = CHANNELS[cred.kind][1]
    if method.name not in policy.enabled_methods:
        raise MethodNotAllowed(f"{method.name} is not enabled in this environment")
    # A locked authenticator gets no new codes: they could not be used anyway.
    lockout = LockoutState(cred.failure_count, cred.locked_until)
    await throttled(
        service,
        lambda: check_lockout(lockout, now=service.clock.now()),
        action=f"{method.name.value}.send",
        method=method.name,
        environment_id=session.environment_id,
        user_id=session.user_id,
        ip=ip,
    )
    return await issue_code(
        service,
        environment_id=session.environment_id,
        user_id=session.user_id,
        session_id=session.id,
        credential_id=cred.id,
        kind=cred.kind,
        destination=cred.value,
        purpose=PURPOSE_STEP_UP,
        ip=ip,
    )


async def verify_otp(
    service: StepGuardService,
    session: LiveSession,
    *,
    verification_id: str,
    code: str,
    requested_scopes: list[str],
    ip: str | None,
) -> dict[str, Any]:
    """Verify a step-up or enrolment code; mint for ``requested_scopes`` (or just verify)."""
    row = await load_code(service, verification_id)
    if (
        row.session_id != session.id
        or row.user_id != session.user_id
        or row.environment_id != session.environment_id
        or row.purpose not in (PURPOSE_STEP_UP, PURPOSE_ENROLL)
    ):
        raise ChallengeNotFound()
    method = MethodName(row.method)
    await throttled(
        service,
        lambda: throttles_for(service).on_verify(authenticator=row.credential_id or row.id, ip=ip),
        action=f"{method.value}.verify",
        method=method,
        environment_id=session.environment_id,
        user_id=session.user_id,
        ip=ip,
        scopes=requested_scopes,
    )
    await precheck_elevation(service, session, method, requested_scopes, ip=ip)

    async def verify(s: AsyncSession, cred: Credential | None) -> dict[str, Any]:
        spent, factor = await spend_code(
            service, s, verification_id, code, expected_user_id=session.user_id
        )
        # The address may have been removed (or, for step-up, never verified) since the send.
        if cred is None or (spent.purpose == PURPOSE_STEP_UP and not cred.verified):
            raise ChallengeNotFound()
        extra: dict[str, Any] = {}
        if spent.purpose == PURPOSE_ENROLL and not cred.verified:
            await _confirm_credential(s, cred, now=service.clock.now())
            extra["credential"] = credential_json(cred)
        return await finish(service, session, factor, requested_scopes, s=s, ip=ip, extra=extra)

    return await run_attempt(
        service,
        environment_id=session.environment_id,
        user_id=session.user_id,
        method=method,
        ip=ip,
        credential_id=row.credential_id,
        scopes=requested_scopes,
        action="verify" if row.purpose == PURPOSE_STEP_UP else "enroll",
        verify=verify,
    )


async def _confirm_credential(s: AsyncSession, cred: Credential, *, now: float) -> None:
    taken = (
        await s.scalars(
            select(Credential.id).where(
                Credential.environment_id == cred.environment_id,
                Credential.kind == cred.kind,
                Credential.value == cred.value,
                Credential.verified.is_(True),
                Credential.id != cred.id,
            )
        )
    ).first()
    if taken is not None:
        raise Conflict(f"this {cred.kind} belongs to another account")
    cred.verified = True
    cred.verified_at = now
    cred.sign_in_enabled = True


async def link_destination(
    service: StepGuardService,
    request: Request,
    session: LiveSession,
    *,
    kind: str,
    value: str,
) -> dict[str, Any]:
    """Start linking an email address or phone number: a code to confirm it with ``/otp/verify``.

    Needs ``credential:link`` once the user has any verified credential.
    """
    destination = normalize_email(value) if kind == "email" else normalize_phone(value)
    method = CHANNELS[kind][1]
    policy = await service.policy(session.environment_id)
    if method.name not in policy.enabled_methods:
        raise MethodNotAllowed(f"{method.name} is not enabled in this environment")
    now = service.clock.now()
    async with service.db.transaction() as s:
        await elevation_gate(service, request, session, TokenScope.CREDENTIAL_LINK.value, s=s)
        same = (
            await s.scalars(
                select(Credential).where(
                    Credential.environment_id == session.environment_id,
                    Credential.kind == kind,
                    Credential.value == destination,
                )
            )
        ).all()
        if any(c.verified for c in same):
            raise Conflict(f"this {kind} is already linked to an account")
        mine = next((c for c in same if c.user_id == session.user_id), None)
        if mine is None:
            mine = Credential(
                id=new_id("cred_"),
                environment_id=session.environment_id,
                user_id=session.user_id,
                kind=kind,
                value=destination,
                verified=False,
                sign_in_enabled=False,
                is_default=False,
                data={},
                failure_count=0,
                locked_until=0.0,
                created_at=now,
            )
            s.add(mine)
        audit(
            s,
            now=now,
            actor="user",
            action="credential.link",
            environment_id=session.environment_id,
            user_id=session.user_id,
            ip=ip_of(request, service),
            details={"credential_id": mine.id, "kind": kind},
        )
    sent = await issue_code(
        service,
        environment_id=session.environment_id,
        user_id=session.user_id,
        session_id=session.id,
        credential_id=mine.id,
        kind=kind,
        destination=destination,
        purpose=PURPOSE_ENROLL,
        ip=ip_of(request, service),
    )
    return {**sent, "credential_id": mine.id}


# -- HTTP --------------------------------------------------------------------------------------


class SendBody(Body):
    credential_id: StrictStr | None = Field(default=None, max_length=64)


class VerifyBody(Requested):
    verification_id: StrictStr = Field(min_length=1, max_length=64)
    code: StrictStr = Field(min_length=1, max_length=32)


class LinkEmailBody(Body):
    email: StrictStr = Field(min_length=3, max_length=320)


class LinkPhoneBody(Body):
    phone: StrictStr = Field(min_length=4, max_length=32)


router = APIRouter(prefix="/sdk/{environment_id}", tags=["otp"])


@router.post("/otp/send")
async def send_route(
    body: SendBody, request: Request, session: CurrentSession, service: Service
) -> Any:
    """Send a code to the user's email (default) or phone (``credential_id`` picks one)."""
    return await send_otp(
        service, session, credential_id=body.credential_id, ip=ip_of(request, service)
    )


@router.post("/otp/verify")
async def verify_route(
    body: VerifyBody, request: Request, session: CurrentSession, service: Service
) -> Any:
    """Verify a code: an elevated token for ``requested_scopes``, or ``{"verified": true}``."""
    return await verify_otp(
        service,
        session,
        verification_id=body.verification_id,
        code=body.code,
        requested_scopes=body.requested_scopes,
        ip=ip_of(request, service),
    )


@router.post("/credentials/email", status_code=201)
async def link_email_route(
    body: LinkEmailBody, request: Request, session: CurrentSession, service: Service
) -> Any:
    """Link an email address (needs ``credential:link``); confirm the code with ``/otp/verify``."""
    return await link_destination(service, request, session, kind="email", value=body.email)


@router.post("/credentials/phone", status_code=201)
async def link_phone_route(
    body: LinkPhoneBody, request: Request, session: CurrentSession, service: Service
) -> Any:
    """Link a phone number (SMS must be enabled; needs ``credential:link``)."""
    return await link_destination(service, request, session, kind="phone", value=body.phone)


@router.get("/dev/outbox")
async def dev_outbox_route(environment_id: str, service: Service) -> Any:
    """Messages held by the dev outbox (dev mode only: ``stepguard serve --demo``; else 404)."""
    delivery = delivery_for(service)
    if not delivery.dev_mode:
        raise NotFound("the dev outbox is only available in dev mode")
    messages = []
    for message in delivery.outbox.messages(environment_id):
        found = _CODE_IN_TEXT.search(message.body)
        messages.append({**message.to_dict(), "code": found.group(0) if found else None})
    return {"messages": messages}
