"""The server's operations, shared by the HTTP API and the CLI (which talks to the database directly).

Every mutation runs in one transaction with its audit event, so a failure leaves nothing half-written.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from stepguard.core.assurance import FactorKind
from stepguard.core.clock import Clock, SystemClock
from stepguard.core.elevation import ElevationRequest, build_claims, decide_elevation
from stepguard.core.errors import (
    Conflict,
    InvalidSession,
    NotFound,
    ValidationFailed,
)
from stepguard.core.keys import JwsAlgorithm, SecretBox
from stepguard.core.methods.base import VerifiedFactor
from stepguard.core.policy import EnvironmentPolicy
from stepguard.server.audit import audit
from stepguard.server.db import (
    Credential,
    Database,
    Environment,
    Grant,
    ServerState,
    SessionRow,
    User,
    new_id,
)
from stepguard.server.keyring import Keyring
from stepguard.server.migrate import upgrade
from stepguard.server.settings import Settings

__all__ = ["LiveSession", "MintedToken", "StepGuardService", "hash_token"]

DEFAULT_ENVIRONMENT_NAME = "default"
_EMAIL = re.compile(r"^[^@\s]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,63}$")
_PHONE = re.compile(r"^\+[1-9][0-9]{6,14}$")
MFA_KINDS = ("totp", "passkey")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def normalize_email(email: str) -> str:
    email = email.strip()
    if not _EMAIL.fullmatch(email):
        raise ValidationFailed("email is not a valid address")
    local, _, domain = email.partition("@")
    return f"{local}@{domain.lower()}"


def normalize_phone(phone: str) -> str:
    cleaned = re.sub(r"[\s().-]", "", phone)
    if not _PHONE.fullmatch(cleaned):
        raise ValidationFailed("phone must be in E.164 form, e.g. +14155550100")
    return cleaned


@dataclass(frozen=True, slots=True)
class LiveSession:
    id: str
    environment_id: str
    user_id: str
    created_at: float
    expires_at: float


@dataclass(frozen=True, slots=True)
class MintedToken:
    token: str
    scopes: tuple[str, ...]
    expires_at: int
    single_use: bool
    jti: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "elevated_access_token": self.token,
            "scopes": list(self.scopes),
            "expires_at": self.expires_at,
            "single_use": self.single_use,
        }


class StepGuardService:
    """Database-backed operations: environments, users, sessions, keys, minting."""

    def __init__(self, settings: Settings, *, clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        self.db = Database(settings.resolved_database_url())
        self.box = SecretBox(settings.resolved_secret())
        self.keyring = Keyring(
            self.db, self.box, self.clock, JwsAlgorithm(settings.token_algorithm)
        )
        self._policy_cache: dict[str, tuple[float, EnvironmentPolicy]] = {}

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> str | None:
        """Migrate, create the default environment and the first key.

        Returns a newly generated admin key (to print once) when none is configured or stored.
        """
        # Several processes may start on one fresh database at once (separate instances,
        # CLI next to a server): one at a time migrates and creates the first rows.
        async with self.db.startup_lock():
            await upgrade(self.db)
            await self.default_environment()
            await self.keyring.ensure_key()
            return await self._ensure_admin_key()

    async def close(self) -> None:
        await self.db.dispose()

    async def _ensure_admin_key(self) -> str | None:
        if self.settings.admin_key:
            return None
        async with self.db.transaction() as s:
            row = await s.get(ServerState, "admin_key_hash")
            if row is not None:
                return None
            key = "sgadm_" + secrets.token_urlsafe(32)
            s.add(ServerState(key="admin_key_hash", value=hash_token(key)))
            audit(s, now=self.clock.now(), actor="system", action="admin_key.generate")
            return key

    async def check_admin_key(self, presented: str | None) -> bool:
        """Constant-time check of an admin API key against the configured or stored one."""
        if not presented:
            return False
        if self.settings.admin_key:
            return hmac.compare_digest(hash_token(presented), hash_token(self.settings.admin_key))
        async with self.db.session() as s:
            row = await s.get(ServerState, "admin_key_hash")
        return row is not None and hmac.compare_digest(hash_token(presented), row.value)

    # -- environments ------------------------------------------------------------------------
    async def default_environment(self) -> Environment:
        async with self.db.transaction() as s:
            env = (await s.scalars(select(Environment).where(Environment.is_default))).first()
            if env is None:
                env = Environment(
                    id=new_id("env_"),
                    name=DEFAULT_ENVIRONMENT_NAME,
                    policy={},
                    is_default=True,
                    created_at=self.clock.now(),
                )
                s.add(env)
                audit(
                    s,
                    now=self.clock.now(),
                    actor="system",
                    action="environment.create",
                    environment_id=env.id,
                    details={"name": env.name},
                )
            return env

    async def create_environment(
        self, name: str, *, policy: dict[str, Any] | None = None
    ) -> Environment:
        name = name.strip()
        if not 1 <= len(name) <= 200:
            raise ValidationFailed("name must be 1 to 200 characters")
        parsed = EnvironmentPolicy.from_dict(policy)
        try:
            async with self.db.transaction() as s:
                if (await s.scalars(select(Environment).where(Environment.name == name))).first():
                    raise Conflict(f"an environment named {name!r} exists")
                env = Environment(
                    id=new_id("env_"),
                    name=name,
                    policy=parsed.overrides_dict(),
                    is_default=False,
                    created_at=self.clock.now(),
                )
                s.add(env)
                audit(
                    s,
                    now=self.clock.now(),
                    actor="admin",
                    action="environment.create",
                    environment_id=env.id,
                    details={"name": name},
                )
                return env
        except IntegrityError:
            raise Conflict(f"an environment named {name!r} exists") from None

    async def get_environment(self, environment_id: str | None) -> Environment:
        if environment_id is None:
            return await self.default_environment()
        async with self.db.session() as s:
            env = await s.get(Environment, environment_id)
        if env is None:
            raise NotFound("unknown environment", resource="environment")
        return env

    async def list_environments(self) -> list[Environment]:
        async with self.db.session() as s:
            return list(
                (await s.scalars(select(Environment).order_by(Environment.created_at))).all()
            )

    async def policy(self, environment_id: str) -> EnvironmentPolicy:
        now = self.clock.now()
        cached = self._policy_cache.get(environment_id)
        if cached is not None and now - cached[0] < 2.0:
            return cached[1]
        env = await self.get_environment(environment_id)
        parsed = EnvironmentPolicy.from_dict(env.policy)
        self._policy_cache[environment_id] = (now, parsed)
        return parsed

    async def set_policy(self, environment_id: str, changes: dict[str, Any]) -> EnvironmentPolicy:
        async with self.db.transaction() as s:
            env = await s.get(Environment, environment_id)
            if env is None:
                raise NotFound("unknown environment", resource="environment")
            updated = EnvironmentPolicy.from_dict(env.policy).updated(changes)
            env.policy = updated.overrides_dict()
            audit(
                s,
                now=self.clock.now(),
                actor="admin",
                action="environment.set_policy",
                environment_id=env.id,
                details={"changes": changes},
            )
        self._policy_cache.pop(environment_id, None)
        return updated

    async def set_external_jwks(
        self, environment_id: str, *, jwks: dict[str, Any] | None, jwks_url: str | None
    ) -> None:
        async with self.db.transaction() as s:
            env = await s.get(Environment, environment_id)
            if env is None:
                raise NotFound("unknown environment", resource="environment")
            env.external_jwks = jwks
            env.external_jwks_url = jwks_url
            audit(
                s,
                now=self.clock.now(),
                actor="admin",
                action="environment.set_external_jwks",
                environment_id=env.id,
                details={"jwks_url": jwks_url, "inline": jwks is not None},
            )

    # -- users -------------------------------------------------------------------------------
    async def create_user(
        self,
        environment_id: str,
        *,
        email: str | None = None,
        phone: str | None = None,
        external_id: str | None = None,
    ) -> User:
        await self.get_environment(environment_id)
        now = self.clock.now()
        mail = normalize_email(email) if email else None
        tel = normalize_phone(phone) if phone else None
        async with self.db.transaction() as s:
            for kind, value in (("email", mail), ("phone", tel)):
                if value is not None and await self._find_credential(
                    s, environment_id, kind, value
                ):
                    raise Conflict(f"a user with this {kind} exists")
            user = User(
                id=new_id("usr_"),
                environment_id=environment_id,
                external_id=external_id,
                created_at=now,
            )
            s.add(user)
            await s.flush()
            for kind, value in (("email", mail), ("phone", tel)):
                if value is not None:
                    s.add(
                        Credential(
                            id=new_id("cred_"),
                            environment_id=environment_id,
                            user_id=user.id,
                            kind=kind,
                            value=value,
                            verified=True,
                            sign_in_enabled=True,
                            is_default=False,
                            data={},
                            created_at=now,
                            verified_at=now,
                        )
                    )
            audit(
                s,
                now=now,
                actor="admin",
                action="user.create",
                environment_id=environment_id,
                user_id=user.id,
                details={"email": bool(mail), "phone": bool(tel)},
            )
            return user

    async def _find_credential(
        self, s: AsyncSession, environment_id: str, kind: str, value: str
    ) -> Credential | None:
        stmt = select(Credential).where(
            Credential.environment_id == environment_id,
            Credential.kind == kind,
            Credential.value == value,
        )
        return (await s.scalars(stmt)).first()

    async def get_user(self, environment_id: str, user_id: str) -> User:
        async with self.db.session() as s:
            user = await s.get(User, user_id)
        if user is None or user.environment_id != environment_id:
            raise NotFound("unknown user", resource="user")
        return user

    async def credentials(self, user_id: str) -> list[Credential]:
        async with self.db.session() as s:
            stmt = (
                select(Credential)
                .where(Credential.user_id == user_id)
                .order_by(Credential.created_at)
            )
            return list((await s.scalars(stmt)).all())

    async def user_has_mfa(self, s: AsyncSession, user_id: str) -> bool:
        stmt = (
            select(func.count())
            .select_from(Credential)
            .where(
                Credential.user_id == user_id,
                Credential.kind.in_(MFA_KINDS),
                Credential.verified.is_(True),
            )
        )
        return bool(await s.scalar(stmt))

    # -- sessions ----------------------------------------------------------------------------
    async def create_session(
        self,
        environment_id: str,
        user_id: str,
        *,
        ttl_seconds: int | None = None,
        origin: str = "admin",
        actor: str = "admin",
        ip: str | None = None,
    ) -> tuple[str, SessionRow]:
        ttl = self.settings.session_ttl_seconds if ttl_seconds is None else ttl_seconds
        if not 60 <= ttl <= 30 * 86_400:
            raise ValidationFailed("ttl_seconds must be between 60 and 2592000")
        user = await self.get_user(environment_id, user_id)
        if user.disabled:
            raise ValidationFailed("the user is disabled")
        token = "sgs_" + secrets.token_urlsafe(32)
        now = self.clock.now()
        async with self.db.transaction() as s:
            row = SessionRow(
                id=new_id("ses_"),
                environment_id=environment_id,
                user_id=user_id,
                token_hash=hash_token(token),
                created_at=now,
                expires_at=now + ttl,
                revoked_at=None,
                origin=origin,
            )
            s.add(row)
            audit(
                s,
                now=now,
                actor=actor,
                action="session.create",
                environment_id=environment_id,
                user_id=user_id,
                ip=ip,
                details={"session_id": row.id, "origin": origin},
            )
        return token, row

    async def revoke_session(
        self, environment_id: str, session_id: str, *, actor: str = "admin"
    ) -> None:
        now = self.clock.now()
        async with self.db.transaction() as s:
            row = await s.get(SessionRow, session_id)
            if row is None or row.environment_id != environment_id:
                raise NotFound("unknown session", resource="session")
            if row.revoked_at is None:
                row.revoked_at = now
            audit(
                s,
                now=now,
                actor=actor,
                action="session.revoke",
                environment_id=environment_id,
                user_id=row.user_id,
                details={"session_id": session_id},
            )

    async def authenticate(self, environment_id: str, token: str | None) -> LiveSession:
        """The live session behind a session token, or :class:`InvalidSession`."""
        if not token or len(token) > 200:
            raise InvalidSession()
        now = self.clock.now()
        # One round trip on every authenticated request: the session with its user's
        # ``disabled`` flag (None when the user row is gone). Never cached: a revoked session or
        # a disabled user is refused on the very next request.
        async with self.db.session() as s:
            found = (
                await s.execute(
                    select(SessionRow, User.disabled)
                    .outerjoin(User, User.id == SessionRow.user_id)
                    .where(SessionRow.token_hash == hash_token(token))
                )
            ).first()
        if found is None:
            raise InvalidSession()
        row, disabled = found
        if row.revoked_at is not None or row.expires_at <= now:
            raise InvalidSession()
        if row.environment_id != environment_id:
            raise InvalidSession("the session belongs to another environment")
        if disabled is None or disabled:
            raise InvalidSession()
        return LiveSession(row.id, row.environment_id, row.user_id, row.created_at, row.expires_at)

    # -- elevated tokens ---------------------------------------------------------------------
    async def mint(
        self,
        session: LiveSession,
        factor: VerifiedFactor,
        requested_scopes: Iterable[str],
        *,
        txn: str | None = None,
        ip: str | None = None,
        s: AsyncSession | None = None,
    ) -> MintedToken:
        """Apply policy and mint an elevated token for ``session`` from a verified factor.

        Pass ``s`` to mint inside the caller's transaction (so the factor's bookkeeping, e.g. a
        consumed code, and the grant commit together).
        """
        if s is None:
            async with self.db.transaction() as own:
                return await self.mint(session, factor, requested_scopes, txn=txn, ip=ip, s=own)
        policy = await self.policy(session.environment_id)
        scopes = list(requested_scopes)
        # A refusal here raises inside the caller's transaction: routes check policy before the
        # factor (precheck), and run_attempt audits a late refusal after rolling back. Opening a
        # second transaction here would wait on SQLite's write lock held by the caller.
        # decide_elevation reads ``user_has_mfa`` only for a re-auth factor under MFA precedence:
        # skip the query (a round trip on every mint) when the answer cannot matter.
        has_mfa = (
            policy.mfa_enabled
            and factor.kind is FactorKind.REAUTH
            and await self.user_has_mfa(s, session.user_id)
        )
        effective = decide_elevation(policy, scopes, factor, user_has_mfa=has_mfa, txn=txn)
        request = ElevationRequest(
            issuer=self.settings.issuer,
            environment_id=session.environment_id,
            user_id=session.user_id,
            session_id=session.id,
            session_expires_at=session.expires_at,
        )
        now = self.clock.now()
        claims = build_claims(request, effective, factor, now=now, txn=txn)
        token = (await self.keyring.signer()).sign(claims)
        s.add(
            Grant(
                jti=claims.jti,
                environment_id=session.environment_id,
                user_id=session.user_id,
                session_id=session.id,
                scopes=" ".join(claims.scopes),
                method=factor.method.value,
                credential_id=factor.credential_id,
                single_use=claims.single_use,
                # The exact time (``iat`` is whole seconds): revocation by a factor's removal
                # (``User.tokens_not_before``) compares against it.
                issued_at=now,
                expires_at=claims.exp,
            )
        )
        audit(
            s,
            now=self.clock.now(),
            actor="user",
            action="elevation.mint",
            environment_id=session.environment_id,
            user_id=session.user_id,
            ip=ip,
            method=factor.method.value,
            scopes=claims.scopes,
            details={"jti": claims.jti, "single_use": claims.single_use},
        )
        return MintedToken(token, claims.scopes, claims.exp, claims.single_use, claims.jti)

    async def revoke_user_tokens(self, user_id: str) -> None:
        async with self.db.transaction() as s:
            await s.execute(
                update(User).where(User.id == user_id).values(tokens_not_before=self.clock.now())
            )
