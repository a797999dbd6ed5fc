"""Alembic migrations: the schema they build is the models' schema, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

import stepguard.server.app  # noqa: F401  (imports every module that defines tables)
from stepguard.server.db import Base, Database
from stepguard.server.migrate import alembic_config, upgrade


async def _diff(db: Database) -> list[Any]:
    def run(conn: Any) -> list[Any]:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(ctx, Base.metadata))

    async with db.engine.connect() as conn:
        return await conn.run_sync(run)


async def _tables(db: Database) -> set[str]:
    async with db.engine.connect() as conn:
        return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))


async def _downgrade(db: Database, revision: str) -> None:
    def run(conn: Any) -> None:
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)

    async with db.engine.begin() as conn:
        await conn.run_sync(run)


async def test_upgrade_builds_the_model_schema(database_url: str) -> None:
    db = Database(database_url)
    try:
        await upgrade(db)
        assert await _diff(db) == []
        assert {t.name for t in Base.metadata.sorted_tables} <= await _tables(db)
        await upgrade(db)  # again: a no-op
        async with db.engine.connect() as conn:
            version = (await conn.execute(text("select version_num from alembic_version"))).all()
        assert len(version) == 1
    finally:
        await db.dispose()


async def test_downgrade_to_base_and_back(database_url: str) -> None:
    db = Database(database_url)
    try:
        await upgrade(db)
        await _downgrade(db, "base")
        assert await _tables(db) <= {"alembic_version"}
        await upgrade(db)
        assert await _diff(db) == []
    finally:
        await db.dispose()


async def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path: Any) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'wal.db'}")
    try:
        async with db.engine.connect() as conn:
            assert (await conn.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
            assert (await conn.execute(text("PRAGMA foreign_keys"))).scalar() == 1
    finally:
        await db.dispose()
