"""assets.metadata, tags and ref_ids as jsonb on PostgreSQL

Revision ID: 0012_jsonb
Revises: 0011_packages
Create Date: 2026-11-24 08:20:00.000000

SQLite has one JSON type: nothing to do there. On PostgreSQL the query language's filters on
these columns become containment tests (@>), which the planner estimates from statistics.
"""

from __future__ import annotations

from alembic import op

revision = "0012_jsonb"
down_revision = "0011_packages"
branch_labels = None
depends_on = None

COLUMNS = ("metadata", "tags", "ref_ids")


def _alter(type_name: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    # One ALTER TABLE rewrites the table once for all three columns.
    changes = ", ".join(
        f'ALTER COLUMN "{column}" TYPE {type_name} USING "{column}"::{type_name}'
        for column in COLUMNS
    )
    op.execute(f"ALTER TABLE assets {changes}")


def upgrade() -> None:
    _alter("jsonb")


def downgrade() -> None:
    _alter("json")
