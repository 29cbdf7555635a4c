"""collections, their members and their security templates

Revision ID: 0010_collections
Revises: 0009_events
Create Date: 2026-11-24 06:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import assetd.db.base

revision = "0010_collections"
down_revision = "0009_events"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "collections",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("security_template_ids", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=True),
        sa.Column("modified_at", assetd.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("modified_by", sa.String(length=200), nullable=True),
        sa.Column("id", sa.String(length=24), nullable=False),
        sa.Column("created_at", assetd.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.String(length=24), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_collections_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_collections")),
        sa.UniqueConstraint("tenant_id", "name", name="uq_collections_tenant_name"),
    )
    with op.batch_alter_table("collections", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_collections_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "collection_assets",
        sa.Column("tenant_id", sa.String(length=24), nullable=False),
        sa.Column("collection_id", sa.String(length=24), nullable=False),
        sa.Column("asset_id", sa.String(length=24), nullable=False),
        sa.Column("added_at", assetd.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["asset_id"],
            ["assets.id"],
            name=op.f("fk_collection_assets_asset_id_assets"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["collection_id"],
            ["collections.id"],
            name=op.f("fk_collection_assets_collection_id_collections"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_collection_assets_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("collection_id", "asset_id", name=op.f("pk_collection_assets")),
    )
    with op.batch_alter_table("collection_assets", schema=None) as batch_op:
        batch_op.create_index(
            "ix_collection_assets_tenant_asset", ["tenant_id", "asset_id"], unique=False
        )

    op.create_table(
        "collection_security_templates",
        sa.Column("tenant_id", sa.String(length=24), nullable=False),
        sa.Column("collection_id", sa.String(length=24), nullable=False),
        sa.Column("template_id", sa.String(length=36), nullable=False),
        sa.ForeignKeyConstraint(
            ["collection_id"],
            ["collections.id"],
            name=op.f("fk_collection_security_templates_collection_id_collections"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["template_id"],
            ["security_templates.id"],
            name=op.f("fk_collection_security_templates_template_id_security_templates"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_collection_security_templates_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "collection_id", "template_id", name=op.f("pk_collection_security_templates")
        ),
    )
    with op.batch_alter_table("collection_security_templates", schema=None) as batch_op:
        batch_op.create_index(
            "ix_collection_security_templates_tenant_template",
            ["tenant_id", "template_id"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("collection_security_templates", schema=None) as batch_op:
        batch_op.drop_index("ix_collection_security_templates_tenant_template")
    op.drop_table("collection_security_templates")

    with op.batch_alter_table("collection_assets", schema=None) as batch_op:
        batch_op.drop_index("ix_collection_assets_tenant_asset")
    op.drop_table("collection_assets")

    with op.batch_alter_table("collections", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_collections_tenant_id"))
    op.drop_table("collections")
