"""metadata templates and security templates

Revision ID: 0002_templates
Revises: 0001
Create Date: 2026-11-24 12:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import assetd.db.base

revision = "0002_templates"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "metadata_templates",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("fields", sa.JSON(), nullable=False),
        sa.Column("modified_at", assetd.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_at", assetd.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.String(length=24), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_metadata_templates_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_metadata_templates")),
        sa.UniqueConstraint("tenant_id", "name", name="uq_metadata_templates_tenant_name"),
    )
    with op.batch_alter_table("metadata_templates", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_metadata_templates_tenant_id"), ["tenant_id"], unique=False
        )

    op.create_table(
        "security_templates",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("modified_at", assetd.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_at", assetd.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.String(length=24), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_security_templates_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_security_templates")),
        sa.UniqueConstraint("tenant_id", "name", name="uq_security_templates_tenant_name"),
    )
    with op.batch_alter_table("security_templates", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_security_templates_tenant_id"), ["tenant_id"], unique=False
        )

    op.create_table(
        "security_grants",
        sa.Column("template_id", sa.String(length=36), nullable=False),
        sa.Column(
            "action",
            sa.Enum(
                "view", "download", "edit", "delete", name="action", native_enum=False, length=16
            ),
            nullable=False,
        ),
        sa.Column("role", sa.String(length=100), nullable=False),
        sa.Column("tenant_id", sa.String(length=24), nullable=False),
        sa.ForeignKeyConstraint(
            ["template_id"],
            ["security_templates.id"],
            name=op.f("fk_security_grants_template_id_security_templates"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_security_grants_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("template_id", "action", "role", name=op.f("pk_security_grants")),
    )
    with op.batch_alter_table("security_grants", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_security_grants_tenant_id"), ["tenant_id"], unique=False
        )

    op.create_table(
        "asset_security_templates",
        sa.Column("tenant_id", sa.String(length=24), nullable=False),
        sa.Column("asset_id", sa.String(length=24), nullable=False),
        sa.Column("template_id", sa.String(length=36), nullable=False),
        sa.ForeignKeyConstraint(
            ["asset_id"],
            ["assets.id"],
            name=op.f("fk_asset_security_templates_asset_id_assets"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["template_id"],
            ["security_templates.id"],
            name=op.f("fk_asset_security_templates_template_id_security_templates"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_asset_security_templates_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "asset_id", "template_id", name=op.f("pk_asset_security_templates")
        ),
    )
    with op.batch_alter_table("asset_security_templates", schema=None) as batch_op:
        batch_op.create_index(
            "ix_asset_security_templates_tenant_template",
            ["tenant_id", "template_id"],
            unique=False,
        )

    # On SQLite this rebuilds the assets table (batch mode); existing rows get no templates.
    with op.batch_alter_table("assets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("metadata_template_id", sa.String(length=36), nullable=True))
        batch_op.add_column(
            sa.Column(
                "security_template_ids",
                sa.JSON(),
                server_default=sa.text("'[]'"),
                nullable=False,
            )
        )
        batch_op.create_index(
            batch_op.f("ix_assets_metadata_template_id"), ["metadata_template_id"], unique=False
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_assets_metadata_template_id_metadata_templates"),
            "metadata_templates",
            ["metadata_template_id"],
            ["id"],
        )


def downgrade() -> None:
    with op.batch_alter_table("assets", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_assets_metadata_template_id_metadata_templates"), type_="foreignkey"
        )
        batch_op.drop_index(batch_op.f("ix_assets_metadata_template_id"))
        batch_op.drop_column("security_template_ids")
        batch_op.drop_column("metadata_template_id")

    with op.batch_alter_table("asset_security_templates", schema=None) as batch_op:
        batch_op.drop_index("ix_asset_security_templates_tenant_template")
    op.drop_table("asset_security_templates")

    with op.batch_alter_table("security_grants", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_security_grants_tenant_id"))
    op.drop_table("security_grants")

    with op.batch_alter_table("security_templates", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_security_templates_tenant_id"))
    op.drop_table("security_templates")

    with op.batch_alter_table("metadata_templates", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_metadata_templates_tenant_id"))
    op.drop_table("metadata_templates")
