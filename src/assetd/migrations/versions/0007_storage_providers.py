"""storage_providers: a tenant's buckets and folders that edge assets are registered from

Revision ID: 0007_storage_providers
Revises: 0006_renditions
Create Date: 2026-11-27 09:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import assetd.db.base

revision = "0007_storage_providers"
down_revision = "0006_renditions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "storage_providers",
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("region", sa.String(length=256), nullable=False),
        sa.Column(
            "kind",
            sa.Enum("local", "s3", name="providerkind", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("bucket", sa.String(length=128), nullable=True),
        sa.Column("endpoint_url", sa.String(length=2000), nullable=True),
        sa.Column("access_key_id", sa.String(length=256), nullable=True),
        sa.Column("secret_access_key", sa.String(length=1024), nullable=True),
        sa.Column("prefix", sa.String(length=512), nullable=False),
        sa.Column("root", sa.String(length=2000), nullable=True),
        sa.Column("modified_at", assetd.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("id", sa.String(length=24), nullable=False),
        sa.Column("created_at", assetd.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.String(length=24), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_storage_providers_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_storage_providers")),
        sa.UniqueConstraint("tenant_id", "name", name="uq_storage_providers_tenant_name"),
    )
    with op.batch_alter_table("storage_providers", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_storage_providers_tenant_id"), ["tenant_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("storage_providers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_storage_providers_tenant_id"))
    op.drop_table("storage_providers")
