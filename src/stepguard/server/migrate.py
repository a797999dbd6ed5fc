"""Running the Alembic migrations programmatically (``stepguard db upgrade`` and start-up)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config

from stepguard.server.db import Database

__all__ = ["alembic_config", "migrations_path", "upgrade"]


def migrations_path() -> Path:
    """The migration scripts: shipped inside the wheel, or the repository's ``migrations/``."""
    packaged = Path(__file__).resolve().parent.parent / "_migrations"
    if packaged.is_dir():
        return packaged
    repo = Path(__file__).resolve().parents[3] / "migrations"
    if repo.is_dir():
        return repo
    raise RuntimeError("stepguard's migration scripts are missing from this installation")


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_path()))
    return cfg


async def upgrade(db: Database, revision: str = "head") -> None:
    """Bring the database schema to ``revision``; safe to call on every start."""

    def _run(sync_conn: Any) -> None:
        cfg = alembic_config()
        cfg.attributes["connection"] = sync_conn
        command.upgrade(cfg, revision)

    async with db.engine.begin() as conn:
        await conn.run_sync(_run)
