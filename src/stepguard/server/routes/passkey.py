"""Passkeys (WebAuthn): registration, step-up assertions and passkey sign-in.

The ceremonies are :class:`~stepguard.core.methods.passkey.PasskeyMethod`'s; this module stores
their state as single-use challenges, keeps the credential records and applies the shared attempt
rules. The RP id and the expected origin come from ``STEPGUARD_PUBLIC_URL``. User verification is
required on every ceremony (a passkey without UV is one factor, NIST SP 800-63B 3.1.7.2).

The sign counter lives in ``Credential.last_used_step`` (the column the shared code uses for "the
last accepted counter"), so that it only ever grows through an atomic compare-and-set.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import re
import secrets
from typing import Any

from fastapi import APIRouter, Request
from pydantic import Field, StrictStr
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from webauthn import generate_authentication_options
from webauthn.helpers.options_to_json_dict import options_to_json_dict
from webauthn.helpers.structs import UserVerificationRequirement

from stepguard.core.assurance import MethodName
from stepguard.core.errors import (
    Conflict,
    InvalidSignature,
    ValidationFailed,
)
from stepguard.core.methods.passkey import (
    CHALLENGE_BYTES,
    DEFAULT_CEREMONY_MS,
    AuthenticationState,
    PasskeyMethod,
    RegistrationState,
    StoredPasskey,
)
from stepguard.core.scopes import TokenScope
from stepguard.server.audit import audit
from stepguard.server.db import Credential, User, new_id
from stepguard.server.deps import CurrentSession, Service
from stepguard.server.routes._ceremony import (
    attempt,
    burn_challenge,
    load_challenge,
    relying_party,
    spend_challenge,
    store_challenge,
)
from stepguard.server.routes._codes import finish, precheck_elevation
from stepguard.server.schemas import Body
from stepguard.server.service import StepGuardService
from stepguard.server.stepup import Requested, claim, credential_json, elevation_gate, ip_of

__all__ = ["router"]

router = APIRouter(prefix="/sdk/{environment_id}", tags=["passkeys"])
METHOD = PasskeyMethod()
RP_NAME = "stepguard"
#: Sign-in has no session yet: the challenge row belongs to nobody until the assertion names one.
SIGN_IN = "sign_in"


#: A WebAuthn credential id is at most 1023 bytes: 1364 base64url characters.
_B64URL = re.compile(r"[A-Za-z0-9_-]{1,1364}={0,2}")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class RegisterOptionsBody(Body):
    alias: StrictStr | None = Field(default=None, max_length=200)


class RegisterBody(Body):
    challenge_id: StrictStr = Field(min_length=1, max_length=64)
    credential: dict[str, Any]


class AuthenticateOptionsBody(Body):
    pass


class AuthenticateBody(Requested):
    challenge_id: StrictStr = Field(min_length=1, max_length=64)
    credential: dict[str, Any]


class SignInBody(Body):
    challenge_id: StrictStr = Field(min_length=1, max_length=64)
    credential: dict[str, Any]


def _credential_id_of(credential: dict[str, Any]) -> str:
    """The base64url credential id a response names (``rawId``), refused when malformed."""
    raw = credential.get("rawId", credential.get("id"))
    if not isinstance(raw, str) or _B64URL.fullmatch(raw) is None:
        raise ValidationFailed("the credential id is not base64url")
    try:
        return _b64url(_unb64url(raw))
    except (ValueError, binascii.Error):
        raise ValidationFailed("the credential id is not base64url") from None


async def _passkeys(s: AsyncSession, user_id: str) -> list[Credential]:
    stmt = (
        select(Credential)
        .where(
            Credential.user_id == user_id,
            Credential.kind == "passkey",
            Credential.verified.is_(True),
        )
        .order_by(Credential.created_at)
    )
    return list((await s.scalars(stmt)).all())


def _stored(cred: Credential) -> StoredPasskey:
    data = cred.data
    return StoredPasskey(
        credential_id=_unb64url(cred.value),
        public_key=_unb64url(data["public_key"]),
        sign_count=int(cred.last_used_step or 0),
        backup_eligible=bool(data["backup_eligible"]),
        user_handle=_unb64url(data["user_handle"]),
    )


def passkey_json(cred: Credential) -> dict[str, Any]:
    """The public view of a passkey: the shared credential view plus WebAuthn facts."""
    out = credential_json(cred)
    out.update(
        credential_id=cred.value,
        sign_count=int(cred.last_used_step or 0),
        backup_eligible=bool(cred.data.get("backup_eligible")),
        backup_state=bool(cred.data.get("backup_state")),
        transports=list(cred.data.get("transports", [])),
        aaguid=cred.data.get("aaguid"),
    )
    return out


async def _check_assertion(
    s: AsyncSession,
    service: StepGuardService,
    cred: Credential,
    state: AuthenticationState,
    credential: dict[str, Any],
    now: float,
) -> Any:
    """Verify an assertion against ``cred`` and persist the record's new counter and BS flag.

    The counter moves by compare-and-set (never backwards, even for two racing assertions); an
    authenticator that does not count (0, as most synced passkeys) keeps 0.
    """
    rp = relying_party(service.settings)
    stored = _stored(cred)
    factor = METHOD.complete(
        state,
        credential,
        now=now,
        stored=stored,
        expected_origin=rp.origin,
        expected_rp_id=rp.rp_id,
    )
    new_count = int(factor.details["sign_count"])
    if new_count:
        moved = await claim(
            s,
            Credential,
            [
                Credential.id == cred.id,
                or_(Credential.last_used_step.is_(None), Credential.last_used_step < new_count),
            ],
            last_used_step=new_count,
        )
        if not moved:
            raise InvalidSignature("sign counter regression")
    data = dict(cred.data)
    data["backup_state"] = bool(factor.details["backup_state"])
    data["last_used_at"] = now
    cred.data = data
    return dataclasses.replace(factor, credential_id=cred.id)


# --- registration --------------------------------------------------------------------------
@router.post("/passkeys/register/options")
async def register_options(
    body: RegisterOptionsBody, request: Request, session: CurrentSession, service: Service
) -> Any:
    """``PublicKeyCredentialCreationOptions`` for a new passkey (needs ``credential:link`` once
    the user has any verified credential)."""
    now = service.clock.now()
    rp = relying_party(service.settings)
    async with service.db.transaction() as s:
        await elevation_gate(service, request, session, TokenScope.CREDENTIAL_LINK.value, s=s)
        user = await s.get(User, session.user_id)
        existing = await _passkeys(s, session.user_id)
        handle = (user.id if user else session.user_id).encode()
        email = await s.scalar(
            select(Credential.value).where(
                Credential.user_id == session.user_id, Credential.kind == "email"
            )
        )
        options, state = METHOD.begin_registration(
            rp_id=rp.rp_id,
            rp_name=RP_NAME,
            user_id=handle,
            user_name=email or session.user_id,
            exclude_credential_ids=[_unb64url(c.value) for c in existing],
            now=now,
        )
        row = await store_challenge(
            s,
            environment_id=session.environment_id,
            method=MethodName.PASSKEY,
            purpose="enroll",
            state={
                "challenge": _b64url(state.challenge),
                "user_id": _b64url(state.user_id),
                "exclude": [_b64url(c) for c in state.exclude_credential_ids],
                "alias": body.alias,
            },
            now=now,
            expires_at=state.expires_at,
            session=session,
            ip=ip_of(request, service),
        )
    return {"challenge_id": row.id, "options": options, "expires_at": state.expires_at}


@router.post("/passkeys/register")
async def register(
    body: RegisterBody, request: Request, session: CurrentSession, service: Service
) -> Any:
    """Verify ``navigator.credentials.create()`` and store the passkey (verified, an MFA device)."""
    now = service.clock.now()
    rp = relying_party(service.settings)

    async def verify(s: AsyncSession, _: Credential | None) -> dict[str, Any]:
        row = await load_challenge(
            s,
            body.challenge_id,
            environment_id=session.environment_id,
            methods=[MethodName.PASSKEY],
            purpose="enroll",
            session=session,
            now=now,
        )
        await spend_challenge(s, row.id, now=now)
        st = row.state
        state = RegistrationState(
            challenge=_unb64url(st["challenge"]),
            expires_at=row.expires_at,
            user_id=_unb64url(st["user_id"]),
            exclude_credential_ids=tuple(_unb64url(c) for c in st["exclude"]),
        )
        record = METHOD.complete_registration(
            state, body.credential, now=now, expected_origin=rp.origin, expected_rp_id=rp.rp_id
        )
        cred_id = _b64url(record.credential_id)
        # WebAuthn §7.1 step 26: a credential id is registered to one user only, anywhere.
        taken = await s.scalar(
            select(Credential.id).where(Credential.kind == "passkey", Credential.value == cred_id)
        )
        if taken is not None:
            raise Conflict("this passkey is already registered")
        has_mfa = await service.user_has_mfa(s, session.user_id)
        cred = Credential(
            id=new_id("cred_"),
            environment_id=session.environment_id,
            user_id=session.user_id,
            kind="passkey",
            value=cred_id,
            chain=None,
            alias=st.get("alias") or "Passkey",
            verified=True,
            sign_in_enabled=True,
            is_default=not has_mfa,
            data={
                "public_key": _b64url(record.public_key),
                "user_handle": st["user_id"],
                "backup_eligible": record.backup_eligible,
                "backup_state": record.backup_state,
                "transports": list(record.transports),
                "aaguid": record.aaguid,
                "uv_initialized": record.uv_initialized,
                "rp_id": rp.rp_id,
            },
            failure_count=0,
            locked_until=0.0,
            last_used_step=record.sign_count,
            created_at=now,
            verified_at=now,
        )
        s.add(cred)
        await s.flush()
        audit(
            s,
            now=now,
            actor="user",
            action="credential.link",
            environment_id=session.environment_id,
            user_id=session.user_id,
            ip=ip_of(request, service),
            method=MethodName.PASSKEY.value,
            details={"credential_id": cred.id, "kind": "passkey"},
        )
        return passkey_json(cred)

    return await attempt(
        service,
        request,
        environment_id=session.environment_id,
        user_id=session.user_id,
        method=MethodName.PASSKEY,
        credential_id=None,
        scopes=(),
        action="register",
        verify=verify,
        on_failure=burn_challenge(body.challenge_id, now=now),
    )


# --- step-up --------------------------------------------------------------------------------
@router.post("/passkeys/authenticate/options")
async def authenticate_options(
    body: AuthenticateOptionsBody, request: Request, session: CurrentSession, service: Service
) -> Any:
    """``PublicKeyCredentialRequestOptions`` listing the user's passkeys, UV required."""
    now = service.clock.now()
    rp = relying_party(service.settings)
    async with service.db.transaction() as s:
        passkeys = await _passkeys(s, session.user_id)
        options, state = METHOD.begin(
            rp_id=rp.rp_id, allow_credential_ids=[_unb64url(c.value) for c in passkeys], now=now
        )
        row = await store_challenge(
            s,
            environment_id=session.environment_id,
            method=MethodName.PASSKEY,
            purpose="step_up",
            state={
                "challenge": _b64url(state.challenge),
                "allow": [c.value for c in passkeys],
            },
            now=now,
            expires_at=state.expires_at,
            session=session,
            ip=ip_of(request, service),
        )
    return {"challenge_id": row.id, "options": options, "expires_at": state.expires_at}


async def _resolve(
    service: StepGuardService, credential: dict[str, Any], *, user_id: str | None, env: str
) -> Credential | None:
    """The stored passkey an assertion names (the user's own, for step-up), if any."""
    try:
        cred_id = _credential_id_of(credential)
    except ValidationFailed:
        return None
    async with service.db.session() as s:
        stmt = select(Credential).where(
            Credential.environment_id == env,
            Credential.kind == "passkey",
            Credential.value == cred_id,
            Credential.verified.is_(True),
        )
        if user_id is not None:
            stmt = stmt.where(Credential.user_id == user_id)
        return (await s.scalars(stmt)).first()


@router.post("/passkeys/authenticate")
async def authenticate(
    body: AuthenticateBody, request: Request, session: CurrentSession, service: Service
) -> Any:
    """Verify a step-up assertion and mint an elevated token for ``requested_scopes``."""
    now = service.clock.now()
    known = await _resolve(
        service, body.credential, user_id=session.user_id, env=session.environment_id
    )
    ip = ip_of(request, service)
    # Refusals that do not depend on the assertion (scopes, policy) come first: they must not
    # spend the challenge or count as a failed attempt on the passkey.
    await precheck_elevation(service, session, MethodName.PASSKEY, body.requested_scopes, ip=ip)

    async def verify(s: AsyncSession, cred: Credential | None) -> dict[str, Any]:
        row = await load_challenge(
            s,
            body.challenge_id,
            environment_id=session.environment_id,
            methods=[MethodName.PASSKEY],
            purpose="step_up",
            session=session,
            now=now,
        )
        await spend_challenge(s, row.id, now=now)
        _credential_id_of(body.credential)  # malformed before "unknown"
        if cred is None or cred.user_id != session.user_id or not cred.verified:
            raise InvalidSignature("this passkey is not registered to this user")
        state = AuthenticationState(
            challenge=_unb64url(row.state["challenge"]),
            expires_at=row.expires_at,
            allow_credential_ids=tuple(_unb64url(c) for c in row.state["allow"]),
        )
        factor = await _check_assertion(s, service, cred, state, body.credential, now)
        return await finish(service, session, factor, body.requested_scopes, ip=ip, s=s)

    return await attempt(
        service,
        request,
        environment_id=session.environment_id,
        user_id=session.user_id,
        method=MethodName.PASSKEY,
        credential_id=known.id if known else None,
        scopes=body.requested_scopes,
        action="verify",
        verify=verify,
        on_failure=burn_challenge(body.challenge_id, now=now),
    )


# --- sign-in --------------------------------------------------------------------------------
@router.post("/sign-in/passkey/options")
async def sign_in_options(
    environment_id: str, body: AuthenticateOptionsBody, request: Request, service: Service
) -> Any:
    """Request options for a discoverable passkey (no session, empty ``allowCredentials``)."""
    await service.get_environment(environment_id)
    now = service.clock.now()
    rp = relying_party(service.settings)
    challenge = secrets.token_bytes(CHALLENGE_BYTES)
    seconds = DEFAULT_CEREMONY_MS / 1000
    # PasskeyMethod.begin is for a known user (allowCredentials never empty); a discoverable
    # sign-in asks the authenticator to choose, so the options carry no credential list.
    options = options_to_json_dict(
        generate_authentication_options(
            rp_id=rp.rp_id,
            challenge=challenge,
            timeout=DEFAULT_CEREMONY_MS,
            user_verification=UserVerificationRequirement.REQUIRED,
        )
    )
    async with service.db.transaction() as s:
        row = await store_challenge(
            s,
            environment_id=environment_id,
            method=MethodName.PASSKEY,
            purpose=SIGN_IN,
            state={"challenge": _b64url(challenge)},
            now=now,
            expires_at=now + seconds,
            ip=ip_of(request, service),
        )
    return {"challenge_id": row.id, "options": options, "expires_at": now + seconds}


@router.post("/sign-in/passkey")
async def sign_in(environment_id: str, body: SignInBody, request: Request, service: Service) -> Any:
    """Verify a discoverable assertion and start a session for the passkey's owner."""
    await service.get_environment(environment_id)
    now = service.clock.now()
    known = await _resolve(service, body.credential, user_id=None, env=environment_id)

    async def verify(s: AsyncSession, _: Credential | None) -> str:
        cred = await s.get(Credential, known.id) if known else None
        row = await load_challenge(
            s,
            body.challenge_id,
            environment_id=environment_id,
            methods=[MethodName.PASSKEY],
            purpose=SIGN_IN,
            session=None,
            now=now,
        )
        await spend_challenge(s, row.id, now=now)
        cred_id = _credential_id_of(body.credential)
        if cred is None or not cred.sign_in_enabled or cred.value != cred_id:
            raise InvalidSignature("unknown passkey")
        response = body.credential.get("response")
        handle = response.get("userHandle") if isinstance(response, dict) else None
        # §7.2 step 6: without a known user, the userHandle is required and names the owner.
        if not isinstance(handle, str) or not handle:
            raise InvalidSignature("a passkey sign-in needs the userHandle")
        state = AuthenticationState(
            challenge=_unb64url(row.state["challenge"]),
            expires_at=row.expires_at,
            allow_credential_ids=(_unb64url(cred.value),),
        )
        await _check_assertion(s, service, cred, state, body.credential, now)
        return cred.user_id

    user_id = await attempt(
        service,
        request,
        environment_id=environment_id,
        user_id=known.user_id if known else None,
        method=MethodName.PASSKEY,
        # No per-credential lockout before sign-in: credential ids are not secret, so anyone could
        # lock a user's passkey with bad assertions; a signature cannot be guessed anyway.
        credential_id=None,
        scopes=(),
        action="sign_in",
        verify=verify,
        on_failure=burn_challenge(body.challenge_id, now=now),
    )
    # After the attempt's transaction: SQLite allows one writer, and it held the lock.
    token, row = await service.create_session(
        environment_id, user_id, origin="passkey", actor="user", ip=ip_of(request, service)
    )
    return {
        "session_token": token,
        "session_id": row.id,
        "user_id": user_id,
        "expires_at": row.expires_at,
    }
