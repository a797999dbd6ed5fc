"""What every verification route shares: the attempt wrapper (lockout, audit, failure bookkeeping),
atomic compare-and-set claims, the enrolment gate, the step-up check and credential management.

Method routes (one module each under ``stepguard.server.routes``) call these; no method re-implements
throttling, replay bookkeeping or minting.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from pydantic import Field, StrictStr
from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from stepguard.core.assurance import MethodName
from stepguard.core.challenge import ELEVATED_TOKEN_HEADER
from stepguard.core.errors import (
    ElevatedTokenInvalid,
    ElevatedTokenRequired,
    ElevatedTokenUsed,
    LastCredential,
    NotFound,
    StepGuardError,
    VerificationFailed,
)
from stepguard.core.methods.otp import mask_email, mask_phone
from stepguard.core.policy import EnvironmentPolicy
from stepguard.core.safety import LockoutState, check_lockout, record_failure, record_success
from stepguard.core.scopes import TokenScope
from stepguard.core.tokens import verify_elevated_token
from stepguard.server.audit import audit
from stepguard.server.db import Base, Credential, Grant, RecoveryCode, UsedNonce, User
from stepguard.server.deps import CurrentSession, Service
from stepguard.server.http import client_ip
from stepguard.server.schemas import Body
from stepguard.server.service import MFA_KINDS, LiveSession, StepGuardService

__all__ = [
    "EXTERNAL_WALLET_SOURCE",
    "Requested",
    "claim",
    "credential_json",
    "elevation_gate",
    "gate_requires_elevation",
    "ip_of",
    "is_external_wallet",
    "load_credential",
    "router",
    "run_attempt",
]

T = TypeVar("T")
#: Credential kinds a user can sign in with (the last one cannot be removed).
SIGN_IN_KINDS = ("email", "phone", "wallet", "passkey")
#: Bookkeeping rows (the recovery-code set's lockout state) that are not user-facing credentials.
INTERNAL_KINDS = ("recovery",)
REAUTH_KINDS = {"email": MethodName.EMAIL_OTP, "phone": MethodName.SMS_OTP}
#: ``Credential.data["source"]`` of a wallet linked by signature; no other wallet (embedded,
#: custodial, imported by an admin) is ever a step-up credential.
EXTERNAL_WALLET_SOURCE = "external"
#: Scopes the server's own enrolment gate guards: always required while enforcement is on
#: (reference product §1.3: linking and unlinking always need step-up), whatever a per-scope
#: ``required`` says.
GATED_SCOPES = frozenset({TokenScope.CREDENTIAL_LINK.value, TokenScope.CREDENTIAL_UNLINK.value})


class Requested(Body):
    """Mixin for verify bodies: the scopes the caller wants an elevated token for."""

    requested_scopes: list[StrictStr] = Field(default_factory=list, max_length=32)


def ip_of(request: Request, service: StepGuardService) -> str | None:
    return client_ip(request, trust_proxy=service.settings.trust_proxy_headers)


async def claim(
    s: AsyncSession, model: type[Base], where: Sequence[ColumnElement[bool]], **values: Any
) -> bool:
    """Atomic compare-and-set: ``UPDATE … WHERE <conditions>``; True if exactly this call won.

    Used for every one-time thing (a challenge, a recovery code, a TOTP step, a sign counter), so two
    concurrent requests can never both succeed, on SQLite and PostgreSQL alike.
    """
    result = await s.execute(update(model).where(*where).values(**values))
    return (result.rowcount or 0) == 1  # type: ignore[attr-defined]


async def load_credential(
    s: AsyncSession, user_id: str, credential_id: str, kinds: Sequence[str] | None = None
) -> Credential:
    cred = await s.get(Credential, credential_id)
    if cred is None or cred.user_id != user_id or (kinds is not None and cred.kind not in kinds):
        raise NotFound("unknown credential", resource="credential")
    return cred


def is_external_wallet(cred: Credential) -> bool:
    """Whether ``cred`` is a wallet linked here by signature (the only wallets that step up)."""
    return (
        cred.kind == "wallet"
        and cred.verified
        and cred.data.get("source") == EXTERNAL_WALLET_SOURCE
    )


def _lockout(cred: Credential) -> LockoutState:
    return LockoutState(consecutive_failures=cred.failure_count, locked_until=cred.locked_until)


async def run_attempt(
    service: StepGuardService,
    *,
    environment_id: str,
    user_id: str | None,
    method: MethodName,
    ip: str | None,
    credential_id: str | None,
    scopes: Sequence[str] = (),
    action: str = "verify",
    verify: Callable[[AsyncSession, Credential | None], Awaitable[T]],
    on_failure: Callable[[AsyncSession, StepGuardError], Awaitable[None]] | None = None,
) -> T:
    """Run one verification attempt with the shared safety rules.

    The authenticator's lockout is checked first; ``verify`` runs in a transaction (minting inside
    it commits with the factor's bookkeeping). On a verification failure the transaction rolls
    back, then the failure is recorded in a fresh one: the authenticator's consecutive-failure count
    grows (never reset by resending), ``on_failure`` persists method bookkeeping (attempts on a
    code), and one audit event is written per attempt, success or not.
    """
    now = service.clock.now()

    def log(s: AsyncSession, outcome: str) -> None:
        audit(
            s,
            now=now,
            actor="user",
            action=f"{method.value}.{action}",
            outcome=outcome,
            environment_id=environment_id,
            user_id=user_id,
            ip=ip,
            method=method.value,
            scopes=scopes,
            details={"credential_id": credential_id},
        )

    # The lockout is checked on the very row the attempt then uses, inside the attempt's
    # transaction (one read and one transaction, not a separate session before it). A locked
    # attempt commits only its audit event and never reaches ``verify``.
    locked: StepGuardError | None = None
    try:
        async with service.db.transaction() as s:
            cred = await s.get(Credential, credential_id) if credential_id else None
            if cred is not None:
                try:
                    check_lockout(_lockout(cred), now=now)
                except StepGuardError as exc:
                    locked = exc
            if locked is not None:
                log(s, locked.code)
            else:
                result = await verify(s, cred)
                if cred is not None and (cred.failure_count or cred.locked_until):
                    fresh = record_success(_lockout(cred))
                    cred.failure_count, cred.locked_until = (
                        fresh.consecutive_failures,
                        fresh.locked_until,
                    )
                log(s, "success")
                return result
    except VerificationFailed as exc:
        failure = exc
    if locked is not None:
        raise locked
    async with service.db.transaction() as s:
        if credential_id:
            # Atomic increment: concurrent failures each count (no lost update).
            row = (
                await s.execute(
                    update(Credential)
                    .where(Credential.id == credential_id)
                    .values(failure_count=Credential.failure_count + 1)
                    .returning(Credential.failure_count, Credential.locked_until)
                )
            ).first()
            if row is not None:
                before = LockoutState(consecutive_failures=row[0] - 1, locked_until=row[1])
                after = record_failure(before, now=now)
                await s.execute(
                    update(Credential)
                    .where(
                        Credential.id == credential_id, Credential.locked_until < after.locked_until
                    )
                    .values(locked_until=after.locked_until)
                )
        if on_failure is not None:
            await on_failure(s, failure)
        log(s, failure.code)
    raise failure


async def gate_requires_elevation(s: AsyncSession, policy: EnvironmentPolicy, user_id: str) -> bool:
    """Whether the enrolment gate (``credential:link``/``unlink``) asks this user for a token.

    Only while the environment enforces step-up (before that no endpoint needs elevation), and
    only once the user has a verified credential to step up with. The check endpoint answers
    from the same rule, so ``is_required`` never disagrees with the gate.
    """
    return policy.enforcement and await user_has_verified_credential(s, user_id)


async def user_has_verified_credential(s: AsyncSession, user_id: str) -> bool:
    stmt = (
        select(func.count())
        .select_from(Credential)
        .where(Credential.user_id == user_id, Credential.verified.is_(True))
    )
    return bool(await s.scalar(stmt))


async def elevation_gate(
    service: StepGuardService,
    request: Request,
    session: LiveSession,
    scope: str,
    *,
    s: AsyncSession,
) -> str | None:
    """Require an elevated token for ``scope`` once the user has any verified credential.

    Enrolling or linking needs ``credential:link``; removing needs ``credential:unlink``. The token
    comes in ``X-Elevated-Access-Token`` and must belong to this user *and session*, and be minted
    after the user's last factor removal; a single-use one is spent here. Returns the token's
    ``jti`` (or None when no elevation was needed: see :func:`gate_requires_elevation`).
    """
    policy = await service.policy(session.environment_id)
    if not await gate_requires_elevation(s, policy, session.user_id):
        return None
    token = request.headers.get(ELEVATED_TOKEN_HEADER)
    if not token:
        raise ElevatedTokenRequired(scope=scope)
    now = service.clock.now()
    try:
        verified = verify_elevated_token(
            token,
            keys=await service.keyring.keyset(),
            expected_issuer=service.settings.issuer,
            expected_audience=session.environment_id,
            expected_scope=scope,
            expected_subject=session.user_id,
            expected_session=session.id,
            max_age=policy.policy_for(scope).max_age,
            # Minted and checked on this server's own clock: no skew to forgive.
            leeway=0,
            now=now,
        )
    except StepGuardError as exc:
        exc.extra.setdefault("scope", scope)
        raise
    user = await s.get(User, session.user_id)
    # The grant keeps the exact minting time (``iat`` is whole seconds): a token minted in the
    # same second as a removal, before it, is revoked; one minted after it is not.
    grant = await s.get(Grant, verified.jti)
    if user is None or grant is None or grant.issued_at < user.tokens_not_before:
        raise ElevatedTokenInvalid("the elevated access token was revoked", scope=scope)
    if verified.single_use:
        key = "elevated:" + verified.jti
        if await s.get(UsedNonce, key) is not None:
            raise ElevatedTokenUsed(scope=scope)
        s.add(UsedNonce(key=key, expires_at=float(verified.expires_at)))
        await s.flush()
    return verified.jti


def credential_json(cred: Credential) -> dict[str, Any]:
    """The public view of a credential (the reference's ``{id, format, type, alias}`` and more)."""
    fmt = {
        "email": "email",
        "phone": "phone_number",
        "wallet": "blockchain",
        "totp": "totp",
        "passkey": "passkey",
    }.get(cred.kind, cred.kind)
    alias = cred.alias
    if alias is None:
        if cred.kind == "email":
            alias = mask_email(cred.value)
        elif cred.kind == "phone":
            alias = mask_phone(cred.value)
        elif cred.kind == "wallet":
            alias = cred.value[:6] + "…" + cred.value[-4:]
    return {
        "id": cred.id,
        "format": fmt,
        "type": cred.chain if cred.kind == "wallet" else cred.kind,
        "alias": alias,
        "verified": cred.verified,
        "default": cred.is_default,
        "created_at": cred.created_at,
        "verified_at": cred.verified_at,
    }


def _method_of(cred: Credential) -> MethodName | None:
    if cred.kind in REAUTH_KINDS:
        return REAUTH_KINDS[cred.kind]
    if cred.kind == "wallet":
        return MethodName.ETHEREUM if cred.chain == "ethereum" else MethodName.SOLANA
    if cred.kind == "totp":
        return MethodName.TOTP
    if cred.kind == "passkey":
        return MethodName.PASSKEY
    return None


@dataclass(frozen=True, slots=True)
class CheckResult:
    is_required: bool
    credentials: list[dict[str, Any]]
    default_credential_id: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "is_required": self.is_required,
            "credentials": self.credentials,
            "default_credential_id": self.default_credential_id,
        }


async def step_up_check(
    service: StepGuardService, session: LiveSession, policy: EnvironmentPolicy, scope: str
) -> CheckResult:
    """Whether ``scope`` needs step-up for this user, and with which credentials.

    Following the reference product: the list is empty when not required; MFA users see only
    their MFA devices; others see their verified re-auth credentials whose method is allowed.
    """
    effective = policy.resolve([scope])
    async with service.db.session() as s:
        if effective.scopes[0] in GATED_SCOPES:
            required = await gate_requires_elevation(s, policy, session.user_id)
        else:
            required = effective.required
        if not required:
            return CheckResult(False, [], None)
        creds = list(
            (
                await s.scalars(
                    select(Credential)
                    .where(Credential.user_id == session.user_id, Credential.verified.is_(True))
                    .order_by(Credential.created_at)
                )
            ).all()
        )
        has_recovery = bool(
            await s.scalar(
                select(func.count())
                .select_from(RecoveryCode)
                .where(RecoveryCode.user_id == session.user_id, RecoveryCode.used_at.is_(None))
            )
        )
    mfa = [c for c in creds if c.kind in MFA_KINDS]
    if policy.mfa_enabled and mfa:
        usable = [c for c in mfa if _method_of(c) in effective.allowed_methods]
        default = next((c for c in usable if c.is_default), usable[-1] if usable else None)
        listed = [credential_json(c) for c in usable]
        if has_recovery and MethodName.RECOVERY_CODE in effective.allowed_methods:
            listed.append(
                {
                    "id": "recovery_code",
                    "format": "recovery_code",
                    "type": "recovery_code",
                    "alias": None,
                }
            )
    else:
        usable = [
            c
            for c in creds
            if c.kind not in MFA_KINDS
            and c.sign_in_enabled
            and (c.kind != "wallet" or is_external_wallet(c))
            and _method_of(c) in effective.allowed_methods
        ]
        default = usable[0] if usable else None
        listed = [credential_json(c) for c in usable]
    return CheckResult(True, listed, default.id if default else None)


class CheckBody(Body):
    scope: StrictStr = Field(min_length=1, max_length=100)


router = APIRouter(prefix="/sdk/{environment_id}", tags=["step-up"])


@router.post("/step-up/check")
async def check(body: CheckBody, session: CurrentSession, service: Service) -> Any:
    """Does this user need to step up for ``scope`` now? (``is_required``, ``credentials``,
    ``default_credential_id``)."""
    policy = await service.policy(session.environment_id)
    return (await step_up_check(service, session, policy, body.scope)).to_dict()


@router.get("/credentials")
async def list_credentials(session: CurrentSession, service: Service) -> Any:
    """Every credential of the signed-in user (unverified ones included, flagged)."""
    creds = await service.credentials(session.user_id)
    return {"credentials": [credential_json(c) for c in creds if c.kind not in INTERNAL_KINDS]}


@router.delete("/credentials/{credential_id}")
async def delete_credential(
    credential_id: str, request: Request, session: CurrentSession, service: Service
) -> Any:
    """Remove a credential. Needs ``credential:unlink``; the last sign-in credential stays."""
    now = service.clock.now()
    async with service.db.transaction() as s:
        cred = await load_credential(s, session.user_id, credential_id)
        if cred.kind in INTERNAL_KINDS:
            # Recovery codes are managed (and voided) through /mfa/recovery-codes.
            raise NotFound("unknown credential", resource="credential")
        if cred.verified:
            await elevation_gate(service, request, session, TokenScope.CREDENTIAL_UNLINK.value, s=s)
        if cred.kind in SIGN_IN_KINDS and cred.verified:
            others = await s.scalar(
                select(func.count())
                .select_from(Credential)
                .where(
                    Credential.user_id == session.user_id,
                    Credential.id != cred.id,
                    Credential.verified.is_(True),
                    Credential.kind.in_(SIGN_IN_KINDS),
                )
            )
            if not others:
                raise LastCredential()
        await s.delete(cred)
        # A removed factor must not keep backing live elevated tokens (ASVS 6.5.6).
        await s.execute(
            update(User).where(User.id == session.user_id).values(tokens_not_before=now)
        )
        audit(
            s,
            now=now,
            actor="user",
            action="credential.delete",
            environment_id=session.environment_id,
            user_id=session.user_id,
            ip=ip_of(request, service),
            details={"credential_id": credential_id, "kind": cred.kind},
        )
    return {"deleted": True, "id": credential_id}


@router.put("/credentials/{credential_id}/default")
async def set_default_credential(
    credential_id: str, request: Request, session: CurrentSession, service: Service
) -> Any:
    """Make an MFA device the default one."""
    async with service.db.transaction() as s:
        cred = await load_credential(s, session.user_id, credential_id, MFA_KINDS)
        if not cred.verified:
            raise NotFound("unknown credential", resource="credential")
        await s.execute(
            update(Credential)
            .where(Credential.user_id == session.user_id, Credential.kind.in_(MFA_KINDS))
            .values(is_default=False)
        )
        cred.is_default = True
        return credential_json(cred)
