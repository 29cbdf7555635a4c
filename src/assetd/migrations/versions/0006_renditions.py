"""renditions: derived images of a version (presets and cached transforms)

Revision ID: 0006_renditions
Revises: 0005_facts
Create Date: 2026-11-26 09:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import assetd.db.base

revision = "0006_renditions"
down_revision = "0005_facts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "renditions",
        sa.Column("asset_id", sa.String(length=24), nullable=False),
        sa.Column("version_id", sa.String(length=24), nullable=False),
        sa.Column("preset", sa.String(length=200), nullable=False),
        sa.Column("blob_id", sa.String(length=24), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("mime_type", sa.String(length=255), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("id", sa.String(length=24), nullable=False),
        sa.Column("created_at", assetd.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.String(length=24), nullable=False),
        sa.ForeignKeyConstraint(
            ["asset_id"],
            ["assets.id"],
            name=op.f("fk_renditions_asset_id_assets"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["blob_id"], ["blobs.id"], name=op.f("fk_renditions_blob_id_blobs")
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_renditions_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["versions.id"],
            name=op.f("fk_renditions_version_id_versions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_renditions")),
        sa.UniqueConstraint("version_id", "preset", name="uq_renditions_version_preset"),
    )
    with op.batch_alter_table("renditions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_renditions_tenant_id"), ["tenant_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_renditions_asset_id"), ["asset_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_renditions_blob_id"), ["blob_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("renditions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_renditions_blob_id"))
        batch_op.drop_index(batch_op.f("ix_renditions_asset_id"))
        batch_op.drop_index(batch_op.f("ix_renditions_tenant_id"))
    op.drop_table("renditions")
