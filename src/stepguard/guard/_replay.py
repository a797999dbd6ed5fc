"""Replay stores: a single-use token is consumed exactly once, across processes.

Consume on success, in three steps keyed by the token's ``jti`` (RFC 7519 §4.1.7):

* :meth:`ReplayStore.reserve` atomically claims the ``jti`` for one request (an insert that
  fails when a row exists: ``INSERT … ON CONFLICT DO NOTHING``, Redis ``SET NX``). While the
  reservation stands every other presentation is refused with ``elevated_token_used``, whichever
  process it reaches.
* :meth:`ReplayStore.spend` marks it used for good when the handler succeeded (2xx).
* :meth:`ReplayStore.release` deletes the reservation when the handler failed, so the user can
  retry without verifying again.

Both ``spend`` and ``release`` act only on the caller's own reservation (a random ``holder``).
Rows live until the token could no longer pass the expiry check (``exp`` + leeway), then are pruned
(SQLite: once a minute; PostgreSQL and memory: a batch every 256 reservations). A process that dies while holding a reservation leaves the token unusable until it
expires: that fails closed, and the user verifies again.

Implementations: :class:`SqliteReplayStore` (sync ``sqlite3`` on the event-loop thread, WAL and
``synchronous=NORMAL``: about 11 µs a reservation, performance.md G6; aiosqlite's thread hop would
cost 20x that; only a statement that finds the write lock taken waits, in a worker thread), :class:`PostgresReplayStore` (SQLAlchemy async with asyncpg),
:class:`RedisReplayStore` (``redis.asyncio``) and :class:`MemoryReplayStore` (one process only).
:func:`sql_replay_store` picks the SQL one for an app's database URL.
"""

from __future__ import annotations

import asyncio
import math
import re
import secrets
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from stepguard.core.errors import ElevatedTokenUsed

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = [
    "DEFAULT_TABLE",
    "MemoryReplayStore",
    "PostgresReplayStore",
    "RedisReplayStore",
    "ReplayStore",
    "Reservation",
    "SqliteReplayStore",
    "sql_replay_store",
]

#: The guard's own table in the app's database.
DEFAULT_TABLE = "stepguard_guard_replay"
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_MAX_JTI = 255
_PRUNE_EVERY = 256
_PRUNE_BATCH = 1000
_SQLITE_PRUNE_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class Reservation:
    """One request's claim on a ``jti``; ``holder`` is random so only its owner can settle it."""

    jti: str
    holder: str
    expires_at: float


def _reservation(jti: str, expires_at: float) -> Reservation:
    if not jti or len(jti) > _MAX_JTI:
        raise ElevatedTokenUsed("the token id cannot be tracked")
    return Reservation(jti=jti, holder=secrets.token_hex(16), expires_at=expires_at)


def _refused() -> ElevatedTokenUsed:
    return ElevatedTokenUsed(
        "the single-use elevated access token was already used or is in use by another request"
    )


def _table(name: str) -> str:
    if not _IDENT.fullmatch(name):
        raise ValueError(f"invalid table name {name!r}")
    return name


class ReplayStore(Protocol):
    """Exactly-once bookkeeping for single-use tokens (see the module docstring)."""

    async def reserve(self, jti: str, *, expires_at: float, now: float) -> Reservation:
        """Claim ``jti`` until it is spent or released; raise
        :class:`~stepguard.core.errors.ElevatedTokenUsed` if it is spent or claimed already."""
        ...

    async def spend(self, reservation: Reservation) -> None:
        """Mark the reserved token as used for good."""
        ...

    async def release(self, reservation: Reservation) -> None:
        """Drop the reservation so the token can be presented again."""
        ...

    async def aclose(self) -> None: ...


class MemoryReplayStore:
    """In-process store: right for tests and single-process apps, never for several workers."""

    def __init__(self) -> None:
        self._rows: dict[str, tuple[str | None, float]] = {}
        self._lock = threading.Lock()
        self._ops = 0

    def __len__(self) -> int:
        return len(self._rows)

    async def reserve(self, jti: str, *, expires_at: float, now: float) -> Reservation:
        reservation = _reservation(jti, expires_at)
        with self._lock:
            self._ops += 1
            if self._ops % _PRUNE_EVERY == 0:
                for key in [k for k, (_, exp) in self._rows.items() if exp < now]:
                    del self._rows[key]
            if jti in self._rows:
                raise _refused()
            self._rows[jti] = (reservation.holder, expires_at)
        return reservation

    async def spend(self, reservation: Reservation) -> None:
        with self._lock:
            row = self._rows.get(reservation.jti)
            if row is not None and row[0] == reservation.holder:
                self._rows[reservation.jti] = (None, row[1])

    async def release(self, reservation: Reservation) -> None:
        with self._lock:
            row = self._rows.get(reservation.jti)
            if row is not None and row[0] == reservation.holder:
                del self._rows[reservation.jti]

    async def aclose(self) -> None:
        return None


class SqliteReplayStore:
    """A table in an SQLite file, shared by every process that opens the same file.

    Statements run synchronously on the calling (event-loop) thread: one autocommit insert in WAL
    mode with ``synchronous=NORMAL`` takes about 11 µs, much less than handing it to a thread.
    That connection never waits for a lock, though: when another connection holds the write lock
    (another process, or the app's own ORM in a transaction on this very event loop, which can
    only commit if the loop keeps running) the statement is retried on a second connection in a
    worker thread, which waits up to ``busy_timeout`` seconds for it.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        table: str = DEFAULT_TABLE,
        busy_timeout: float = 5.0,
    ) -> None:
        self.path = str(path)
        self.table = _table(table)
        self._busy_timeout = busy_timeout
        self._conn: sqlite3.Connection | None = None  # event-loop thread, never waits
        self._patient: sqlite3.Connection | None = None  # worker threads, waits for locks
        self._lock = threading.Lock()
        self._patient_lock = threading.Lock()
        self._pruned_at = float("-inf")
        t = self.table
        self._sql_reserve = (
            f"INSERT INTO {t} (jti, holder, expires_at) VALUES (?, ?, ?) "  # noqa: S608 (validated identifier)
            "ON CONFLICT (jti) DO NOTHING"
        )
        self._sql_spend = f"UPDATE {t} SET holder = NULL WHERE jti = ? AND holder = ?"  # noqa: S608
        self._sql_release = f"DELETE FROM {t} WHERE jti = ? AND holder = ?"  # noqa: S608
        self._sql_prune = f"DELETE FROM {t} WHERE expires_at < ?"  # noqa: S608

    def _open(self, timeout: float) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path,
            timeout=timeout,
            isolation_level=None,  # autocommit: each statement is its own transaction
            check_same_thread=False,  # guarded by a lock per connection
        )
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {self.table} ("
                "jti VARCHAR(255) PRIMARY KEY, holder VARCHAR(64), expires_at REAL NOT NULL)"
            )
            # No index on expires_at: it would cost every reservation a second B-tree write, while
            # the once-a-minute prune scans only the rows of tokens still within their lifetime.
        except BaseException:
            conn.close()
            raise
        return conn

    def _execute(self, sql: str, params: tuple[Any, ...], *, patient: bool) -> int:
        if patient:
            with self._patient_lock:
                if self._patient is None:
                    self._patient = self._open(self._busy_timeout)
                return int(self._patient.execute(sql, params).rowcount)
        with self._lock:
            if self._conn is None:
                self._conn = self._open(0.0)
            return int(self._conn.execute(sql, params).rowcount)

    async def _write(self, sql: str, params: tuple[Any, ...]) -> int:
        """Run one autocommit statement; the number of rows it changed."""
        try:
            return self._execute(sql, params, patient=False)
        except sqlite3.OperationalError as exc:
            # SQLITE_BUSY / SQLITE_LOCKED (and their extended codes): someone holds the lock.
            if getattr(exc, "sqlite_errorcode", 0) & 0xFF not in (5, 6):
                raise
        return await asyncio.to_thread(self._execute, sql, params, patient=True)

    async def reserve(self, jti: str, *, expires_at: float, now: float) -> Reservation:
        reservation = _reservation(jti, expires_at)
        if now - self._pruned_at >= _SQLITE_PRUNE_SECONDS:
            self._pruned_at = now
            await self._write(self._sql_prune, (now,))
        inserted = await self._write(self._sql_reserve, (jti, reservation.holder, expires_at))
        if inserted != 1:
            raise _refused()
        return reservation

    async def spend(self, reservation: Reservation) -> None:
        await self._write(self._sql_spend, (reservation.jti, reservation.holder))

    async def release(self, reservation: Reservation) -> None:
        await self._write(self._sql_release, (reservation.jti, reservation.holder))

    async def aclose(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
        with self._patient_lock:
            if self._patient is not None:
                self._patient.close()
                self._patient = None


class PostgresReplayStore:
    """A table in PostgreSQL through SQLAlchemy's async engine (asyncpg).

    Give the app's database URL (``postgresql://…`` or ``postgresql+asyncpg://…``) or an existing
    :class:`~sqlalchemy.ext.asyncio.AsyncEngine` (not disposed by :meth:`aclose`). The table is
    created on first use.
    """

    def __init__(
        self,
        url_or_engine: str | AsyncEngine,
        *,
        table: str = DEFAULT_TABLE,
        pool_size: int = 10,
    ) -> None:
        from sqlalchemy import text
        from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

        if isinstance(url_or_engine, AsyncEngine):
            self._engine = url_or_engine
            self._own_engine = False
        else:
            self._engine = create_async_engine(
                _asyncpg_url(url_or_engine), pool_size=pool_size, max_overflow=pool_size
            )
            self._own_engine = True
        self.table = t = _table(table)
        self._ready = False
        self._ready_lock: asyncio.Lock | None = None
        self._ops = 0
        self._sql_create = text(
            f"CREATE TABLE IF NOT EXISTS {t} ("
            "jti VARCHAR(255) PRIMARY KEY, holder VARCHAR(64), "
            "expires_at DOUBLE PRECISION NOT NULL)"
        )
        self._sql_index = text(f"CREATE INDEX IF NOT EXISTS {t}_expires ON {t} (expires_at)")
        self._sql_reserve = text(
            f"INSERT INTO {t} (jti, holder, expires_at) VALUES (:jti, :holder, :exp) "  # noqa: S608
            "ON CONFLICT (jti) DO NOTHING"
        )
        self._sql_spend = text(
            f"UPDATE {t} SET holder = NULL WHERE jti = :jti AND holder = :holder"  # noqa: S608
        )
        self._sql_release = text(f"DELETE FROM {t} WHERE jti = :jti AND holder = :holder")  # noqa: S608
        self._sql_prune = text(
            f"DELETE FROM {t} WHERE jti IN "  # noqa: S608
            f"(SELECT jti FROM {t} WHERE expires_at < :now LIMIT {_PRUNE_BATCH})"
        )

    async def _ensure_table(self) -> None:
        from sqlalchemy.exc import DBAPIError

        if self._ready_lock is None:
            self._ready_lock = asyncio.Lock()
        async with self._ready_lock:
            if self._ready:
                return
            for attempt in range(3):
                try:
                    async with self._engine.begin() as conn:
                        await conn.execute(self._sql_create)
                        await conn.execute(self._sql_index)
                    break
                except DBAPIError:
                    # Two processes creating the table at once: the loser gets a unique
                    # violation in the catalog; the next attempt finds the table there.
                    if attempt == 2:
                        raise
            self._ready = True

    async def reserve(self, jti: str, *, expires_at: float, now: float) -> Reservation:
        reservation = _reservation(jti, expires_at)
        if not self._ready:
            await self._ensure_table()
        self._ops += 1
        async with self._engine.begin() as conn:
            if self._ops % _PRUNE_EVERY == 0:
                await conn.execute(self._sql_prune, {"now": now})
            result: Any = await conn.execute(
                self._sql_reserve, {"jti": jti, "holder": reservation.holder, "exp": expires_at}
            )
        if result.rowcount != 1:
            raise _refused()
        return reservation

    async def spend(self, reservation: Reservation) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                self._sql_spend, {"jti": reservation.jti, "holder": reservation.holder}
            )

    async def release(self, reservation: Reservation) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                self._sql_release, {"jti": reservation.jti, "holder": reservation.holder}
            )

    async def aclose(self) -> None:
        if self._own_engine:
            await self._engine.dispose()


def _asyncpg_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        raise ValueError("PostgresReplayStore needs a postgresql:// URL")
    return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)


def sql_replay_store(database_url: str, *, table: str = DEFAULT_TABLE) -> ReplayStore:
    """The SQL replay store for an app's database URL: an SQLite file (any ``sqlite`` driver in
    the URL; the guard uses ``sqlite3`` itself) or PostgreSQL (asyncpg)."""
    from sqlalchemy.engine import make_url

    if database_url.startswith("postgres://"):  # Heroku-style alias SQLAlchemy no longer reads
        database_url = "postgresql://" + database_url.removeprefix("postgres://")
    parsed = make_url(database_url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise ValueError("an in-memory SQLite database is per connection: use a file")
        return SqliteReplayStore(parsed.database, table=table)
    if backend == "postgresql":
        return PostgresReplayStore(database_url, table=table)
    raise ValueError(f"no SQL replay store for {backend!r} databases (use SQLite or PostgreSQL)")


_LUA_SPEND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('SET', KEYS[1], '!spent', 'KEEPTTL') and 1
end
return 0
"""
_LUA_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class RedisReplayStore:
    """Keys in Redis: ``SET key holder NX PX ttl`` reserves; a compare-and-set script spends or
    releases only the caller's own reservation. Keys expire by themselves with the token."""

    def __init__(self, url_or_client: str | Any, *, prefix: str = "stepguard:jti:") -> None:
        import redis.asyncio as aioredis

        if isinstance(url_or_client, str):
            self._redis = aioredis.Redis.from_url(url_or_client)
            self._own = True
        else:
            self._redis = url_or_client
            self._own = False
        self.prefix = prefix
        self._spend = self._redis.register_script(_LUA_SPEND)
        self._release = self._redis.register_script(_LUA_RELEASE)

    async def reserve(self, jti: str, *, expires_at: float, now: float) -> Reservation:
        reservation = _reservation(jti, expires_at)
        ttl_ms = max(1000, math.ceil((expires_at - now) * 1000))
        ok = await self._redis.set(self.prefix + jti, reservation.holder, nx=True, px=ttl_ms)
        if not ok:
            raise _refused()
        return reservation

    async def spend(self, reservation: Reservation) -> None:
        await self._spend(keys=[self.prefix + reservation.jti], args=[reservation.holder])

    async def release(self, reservation: Reservation) -> None:
        await self._release(keys=[self.prefix + reservation.jti], args=[reservation.holder])

    async def aclose(self) -> None:
        if self._own:
            await self._redis.aclose()
