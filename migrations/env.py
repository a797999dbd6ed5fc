"""Alembic environment. Migrations run through ``stepguard db upgrade`` (or at server start-up),
which hands us an open connection in ``config.attributes["connection"]``."""

from __future__ import annotations

from alembic import context

from stepguard.server.db import Base

target_metadata = Base.metadata
connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `stepguard db upgrade`")
context.configure(
    connection=connection,
    target_metadata=target_metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
