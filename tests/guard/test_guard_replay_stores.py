"""One contract for every replay store: reserve once, refuse while reserved or spent, release
makes it usable again, only the holder settles, 50 concurrent reservations -> exactly one."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from stepguard.core.errors import ElevatedTokenUsed
from stepguard.core.tokens import new_jti
from stepguard.guard import (
    MemoryReplayStore,
    PostgresReplayStore,
    RedisReplayStore,
    ReplayStore,
    Reservation,
    SqliteReplayStore,
    sql_replay_store,
)

NOW = 1_700_000_000.0
EXP = NOW + 360


@pytest.fixture(
    params=[
        "memory",
        "sqlite",
        pytest.param("postgresql", marks=pytest.mark.postgres),
        pytest.param("redis", marks=pytest.mark.redis),
    ]
)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ReplayStore]:
    made: ReplayStore
    if request.param == "memory":
        made = MemoryReplayStore()
    elif request.param == "sqlite":
        made = sql_replay_store(f"sqlite+aiosqlite:///{tmp_path / 'app.db'}")
        assert isinstance(made, SqliteReplayStore)
    elif request.param == "postgresql":
        url = request.getfixturevalue("postgres_server").create_database()
        made = sql_replay_store(url)
        assert isinstance(made, PostgresReplayStore)
    else:
        made = RedisReplayStore(request.getfixturevalue("redis_url"))
    yield made
    await made.aclose()


async def test_reserve_spend_refuses_forever(store: ReplayStore) -> None:
    jti = new_jti()
    first = await store.reserve(jti, expires_at=EXP, now=NOW)
    assert isinstance(first, Reservation) and first.jti == jti
    with pytest.raises(ElevatedTokenUsed):
        await store.reserve(jti, expires_at=EXP, now=NOW)  # reserved: in use
    await store.spend(first)
    for _ in range(3):
        with pytest.raises(ElevatedTokenUsed):
            await store.reserve(jti, expires_at=EXP, now=NOW + 1)
    # Other ids are unaffected.
    await store.reserve(new_jti(), expires_at=EXP, now=NOW)


async def test_release_makes_the_token_usable_again(store: ReplayStore) -> None:
    jti = new_jti()
    first = await store.reserve(jti, expires_at=EXP, now=NOW)
    await store.release(first)
    second = await store.reserve(jti, expires_at=EXP, now=NOW)
    assert second.holder != first.holder
    await store.spend(second)
    with pytest.raises(ElevatedTokenUsed):
        await store.reserve(jti, expires_at=EXP, now=NOW)


async def test_only_the_holder_settles(store: ReplayStore) -> None:
    jti = new_jti()
    mine = await store.reserve(jti, expires_at=EXP, now=NOW)
    stranger = Reservation(jti=jti, holder="0" * 32, expires_at=EXP)
    await store.release(stranger)  # must not free my reservation
    with pytest.raises(ElevatedTokenUsed):
        await store.reserve(jti, expires_at=EXP, now=NOW)
    await store.spend(mine)
    await store.release(mine)  # releasing after spending does not resurrect the token
    with pytest.raises(ElevatedTokenUsed):
        await store.reserve(jti, expires_at=EXP, now=NOW)


async def test_fifty_concurrent_reservations_one_wins(store: ReplayStore) -> None:
    jti = new_jti()

    async def attempt() -> bool:
        try:
            await store.reserve(jti, expires_at=EXP, now=NOW)
        except ElevatedTokenUsed:
            return False
        return True

    results = await asyncio.gather(*(attempt() for _ in range(50)))
    assert results.count(True) == 1


async def test_absurd_jti_is_refused(store: ReplayStore) -> None:
    with pytest.raises(ElevatedTokenUsed):
        await store.reserve("x" * 300, expires_at=EXP, now=NOW)


async def test_sqlite_prunes_expired_rows_and_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "prune.db"
    store = SqliteReplayStore(path)
    try:
        for _ in range(300):
            await store.reserve(new_jti(), expires_at=NOW + 10, now=NOW)
        # Later, every one of those has expired: the next batch of reservations prunes them.
        for _ in range(300):
            await store.reserve(new_jti(), expires_at=NOW + 1000, now=NOW + 500)
    finally:
        await store.aclose()
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT expires_at FROM stepguard_guard_replay").fetchall()
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    assert len(rows) == 300 and all(exp == NOW + 1000 for (exp,) in rows)
    assert mode == "wal"


async def test_sqlite_shared_by_two_stores(tmp_path: Path) -> None:
    """Two processes (here: two stores with their own connections) on one file."""
    a, b = SqliteReplayStore(tmp_path / "x.db"), SqliteReplayStore(tmp_path / "x.db")
    try:
        jti = new_jti()
        held = await a.reserve(jti, expires_at=EXP, now=NOW)
        with pytest.raises(ElevatedTokenUsed):
            await b.reserve(jti, expires_at=EXP, now=NOW)
        await a.release(held)
        await b.spend(await b.reserve(jti, expires_at=EXP, now=NOW))
        with pytest.raises(ElevatedTokenUsed):
            await a.reserve(jti, expires_at=EXP, now=NOW)
    finally:
        await a.aclose()
        await b.aclose()


def test_sql_replay_store_urls(tmp_path: Path) -> None:
    assert isinstance(sql_replay_store(f"sqlite:///{tmp_path}/a.db"), SqliteReplayStore)
    with pytest.raises(ValueError, match="in-memory"):
        sql_replay_store("sqlite:///:memory:")
    with pytest.raises(ValueError, match="mysql"):
        sql_replay_store("mysql://u@h/db")
    with pytest.raises(ValueError, match="table"):
        SqliteReplayStore(tmp_path / "b.db", table="x; DROP TABLE users")


@pytest.mark.redis
async def test_redis_keys_expire_with_the_token(redis_url: str) -> None:
    import redis.asyncio as aioredis

    store = RedisReplayStore(redis_url)
    client = aioredis.Redis.from_url(redis_url)
    try:
        jti = new_jti()
        held = await store.reserve(jti, expires_at=NOW + 30, now=NOW)
        ttl = await client.pttl("stepguard:jti:" + jti)
        assert 29_000 < ttl <= 30_000
        await store.spend(held)
        assert await client.get("stepguard:jti:" + jti) == b"!spent"
        assert 29_000 < await client.pttl("stepguard:jti:" + jti) <= 30_000  # KEEPTTL
    finally:
        await client.aclose()
        await store.aclose()


async def test_sqlite_store_waits_for_a_write_on_the_same_event_loop(tmp_path: Path) -> None:
    """The app's own ORM (aiosqlite, same event loop) holds the write lock across an await: the
    reservation waits for that transaction without stalling the loop (which would keep the
    transaction from ever committing) and then succeeds."""
    import time

    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    path = tmp_path / "app.db"
    store = SqliteReplayStore(path)
    engine = create_async_engine(f"sqlite+aiosqlite:///{path}")
    try:
        await store.reserve(new_jti(), expires_at=EXP, now=NOW)  # the guard's table exists
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE orders (id INTEGER PRIMARY KEY)"))
        holding = asyncio.Event()

        async def app_transaction() -> None:
            async with engine.begin() as conn:
                await conn.execute(text("INSERT INTO orders DEFAULT VALUES"))  # write lock held
                holding.set()
                await asyncio.sleep(0.3)  # e.g. a call to another service mid-transaction

        task = asyncio.create_task(app_transaction())
        await holding.wait()
        started = time.monotonic()
        jti = new_jti()
        held = await store.reserve(jti, expires_at=EXP, now=NOW)
        waited = time.monotonic() - started
        await task
        assert waited < 2.0  # the app's transaction committed, then the insert went through
        await store.spend(held)
        with pytest.raises(ElevatedTokenUsed):
            await store.reserve(jti, expires_at=EXP, now=NOW)
    finally:
        await store.aclose()
        await engine.dispose()
