"""The Alembic migrations build exactly the schema the models describe, on both databases."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

import assetd.models  # noqa: F401 - registers every table
from assetd.config import to_sync_url
from assetd.db.base import Base


def test_migrated_schema_matches_models(database_url: str) -> None:
    engine = sa.create_engine(to_sync_url(database_url))
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            differences = compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()
    assert differences == []
