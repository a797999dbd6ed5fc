"""Database schema (SQLAlchemy 2, typed) and the async engine.

The same code runs on SQLite (default, WAL) and PostgreSQL. Every id is an opaque random string of
>= 128 bits; secrets are stored hashed (session tokens, codes) or sealed (private keys, TOTP seeds).
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    event,
    text,
)
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.pool import ConnectionPoolEntry

__all__ = [
    "AuditEvent",
    "Base",
    "Challenge",
    "Credential",
    "Database",
    "Environment",
    "Grant",
    "RecoveryCode",
    "ServerState",
    "SessionRow",
    "SigningKey",
    "UsedNonce",
    "User",
    "new_id",
]


#: Arbitrary constant naming stepguard's start-up advisory lock in PostgreSQL.
_STARTUP_LOCK_KEY = 0x5739_0A8D


def new_id(prefix: str = "") -> str:
    """An opaque id with 128 bits from the CSPRNG."""
    return prefix + secrets.token_urlsafe(16)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Environment(Base):
    __tablename__ = "environments"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    #: Only the overrides (EnvironmentPolicy.overrides_dict()).
    policy: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    #: Bring-your-own-auth: the app backend's keys (inline JWKS or a URL).
    external_jwks: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    external_jwks_url: Mapped[str | None] = mapped_column(String(2000), nullable=True)
    created_at: Mapped[float] = mapped_column(Float)


class User(Base):
    __tablename__ = "users"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    environment_id: Mapped[str] = mapped_column(ForeignKey("environments.id", ondelete="CASCADE"))
    external_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[float] = mapped_column(Float)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    #: Elevated tokens issued before this instant are revoked (factor change, admin action).
    tokens_not_before: Mapped[float] = mapped_column(Float, default=0.0)
    __table_args__ = (Index("ix_users_env", "environment_id"),)


class Credential(Base):
    """Anything a user proves: email, phone, wallet, TOTP device, passkey."""

    __tablename__ = "credentials"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    environment_id: Mapped[str] = mapped_column(ForeignKey("environments.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    #: email | phone | wallet | totp | passkey
    kind: Mapped[str] = mapped_column(String(16))
    #: Normalised identifier: email address, E.164 phone, wallet address, passkey credential id.
    value: Mapped[str] = mapped_column(String(1400))
    #: For wallets: "ethereum" | "solana".
    chain: Mapped[str | None] = mapped_column(String(32), nullable=True)
    alias: Mapped[str | None] = mapped_column(String(200), nullable=True)
    verified: Mapped[bool] = mapped_column(Boolean, default=False)
    sign_in_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    #: Non-secret method data (passkey public key and counters, TOTP parameters, ...).
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    #: Sealed secret (TOTP seed), never plaintext.
    secret_sealed: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: Consecutive failures and lockout (shared throttle bookkeeping).
    failure_count: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[float] = mapped_column(Float, default=0.0)
    #: TOTP: last accepted time step (replay protection).
    last_used_step: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    created_at: Mapped[float] = mapped_column(Float)
    verified_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    __table_args__ = (
        Index("ix_credentials_user", "user_id"),
        Index("ix_credentials_lookup", "environment_id", "kind", "value"),
    )


class SessionRow(Base):
    __tablename__ = "sessions"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    environment_id: Mapped[str] = mapped_column(ForeignKey("environments.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    #: SHA-256 of the session token; the token itself is never stored.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float)
    revoked_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    #: How the session was created: "admin" (app backend) or a sign-in method.
    origin: Mapped[str] = mapped_column(String(32), default="admin")
    __table_args__ = (Index("ix_sessions_user", "user_id"),)


class SigningKey(Base):
    __tablename__ = "signing_keys"
    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    alg: Mapped[str] = mapped_column(String(16))
    private_sealed: Mapped[str] = mapped_column(Text)
    public_jwk: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[float] = mapped_column(Float)
    #: Set when a newer key takes over; the key keeps verifying until its last token expired.
    retired_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class AuditEvent(Base):
    __tablename__ = "audit_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    environment_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    at: Mapped[float] = mapped_column(Float)
    actor: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(32))
    user_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    method: Mapped[str | None] = mapped_column(String(32), nullable=True)
    scopes: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    __table_args__ = (Index("ix_audit_env_at", "environment_id", "at"),)


class Challenge(Base):
    """A pending verification: OTP code, passkey ceremony, wallet message. Single use."""

    __tablename__ = "challenges"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    environment_id: Mapped[str] = mapped_column(ForeignKey("environments.id", ondelete="CASCADE"))
    #: None for a sign-in whose user is not known (or does not exist) yet.
    user_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    session_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    credential_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    method: Mapped[str] = mapped_column(String(32))
    #: step_up | sign_in | enroll
    purpose: Mapped[str] = mapped_column(String(16))
    #: Method state (never a plaintext secret: codes are stored as keyed digests).
    state: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    digest: Mapped[str | None] = mapped_column(String(128), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=5)
    created_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float)
    used_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    __table_args__ = (Index("ix_challenges_user", "user_id", "method"),)


class RecoveryCode(Base):
    __tablename__ = "recovery_codes"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    idx: Mapped[int] = mapped_column(Integer)
    digest: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[float] = mapped_column(Float)
    used_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    __table_args__ = (Index("ix_recovery_user", "user_id"),)


class Grant(Base):
    """One minted elevated token (for audit and revocation; the token itself is not stored)."""

    __tablename__ = "grants"
    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    environment_id: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str] = mapped_column(String(64))
    session_id: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[str] = mapped_column(String(1000))
    method: Mapped[str] = mapped_column(String(32))
    credential_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    single_use: Mapped[bool] = mapped_column(Boolean)
    issued_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float)
    __table_args__ = (Index("ix_grants_user", "user_id"),)


class UsedNonce(Base):
    """Single-use values seen by the server (external assertion ``jti``s, ...), kept until expiry."""

    __tablename__ = "used_nonces"
    key: Mapped[str] = mapped_column(String(300), primary_key=True)
    expires_at: Mapped[float] = mapped_column(Float)


class ServerState(Base):
    __tablename__ = "server_state"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Database:
    """The async engine and a session factory for one database URL."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        kwargs: dict[str, Any] = {"echo": echo}
        if self.is_sqlite:
            kwargs["connect_args"] = {"timeout": 30}
        else:
            kwargs.update(pool_size=10, max_overflow=20, pool_pre_ping=False)
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self.sessionmaker() as s:
            yield s

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session in a transaction: committed on success, rolled back on any error."""
        async with self.sessionmaker() as s, s.begin():
            yield s

    @asynccontextmanager
    async def startup_lock(self) -> AsyncIterator[None]:
        """Serialise start-up work across processes: a PostgreSQL advisory lock, or an
        exclusive ``flock`` on a file beside the SQLite database."""
        if self.is_sqlite:
            path = self.engine.url.database
            if not path or path == ":memory:":
                yield
                return
            lock_path = path + ".startup.lock"
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
            return
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _STARTUP_LOCK_KEY})
            await conn.commit()
            try:
                yield
            finally:
                await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _STARTUP_LOCK_KEY})
                await conn.commit()

    async def dispose(self) -> None:
        await self.engine.dispose()


def _sqlite_pragmas(dbapi_conn: Any, _record: ConnectionPoolEntry) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()
