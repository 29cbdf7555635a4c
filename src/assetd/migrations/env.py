"""Alembic environment: one connection, the models' metadata, batch mode for SQLite."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

import assetd.models  # noqa: F401 - registers every table on Base.metadata
from assetd.db.base import Base

config = context.config
engine = sa.create_engine(config.get_main_option("sqlalchemy.url") or "", poolclass=sa.NullPool)
with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
