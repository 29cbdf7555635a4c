"""packages, artifacts, asset dependencies and origins

Revision ID: 0011_packages
Revises: 0010_collections
Create Date: 2026-11-24 07:02:06.446171
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import assetd.db.base

revision = "0011_packages"
down_revision = "0010_collections"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "package_origins",
        sa.Column("tenant_id", sa.String(length=24), nullable=False),
        sa.Column(
            "kind",
            sa.Enum("asset", "collection", name="originkind", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("source_id", sa.String(length=200), nullable=False),
        sa.Column("target_id", sa.String(length=24), nullable=False),
        sa.Column("package_id", sa.String(length=24), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_package_origins_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "kind", "source_id", name=op.f("pk_package_origins")),
    )
    op.create_table(
        "packages",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("version", sa.String(length=50), nullable=False),
        sa.Column("format_version", sa.Integer(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("filename", sa.String(length=500), nullable=False),
        sa.Column("blob_id", sa.String(length=24), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column(
            "status",
            sa.Enum("reported", "installed", name="packagestatus", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("report", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=True),
        sa.Column("installed_at", assetd.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("installed_by", sa.String(length=200), nullable=True),
        sa.Column("id", sa.String(length=24), nullable=False),
        sa.Column("created_at", assetd.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.String(length=24), nullable=False),
        sa.ForeignKeyConstraint(["blob_id"], ["blobs.id"], name=op.f("fk_packages_blob_id_blobs")),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_packages_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_packages")),
    )
    with op.batch_alter_table("packages", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_packages_blob_id"), ["blob_id"], unique=False)
        batch_op.create_index(
            "ix_packages_tenant_created", ["tenant_id", "created_at", "id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_packages_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "asset_dependencies",
        sa.Column("tenant_id", sa.String(length=24), nullable=False),
        sa.Column("asset_id", sa.String(length=24), nullable=False),
        sa.Column("depends_on", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(
            ["asset_id"],
            ["assets.id"],
            name=op.f("fk_asset_dependencies_asset_id_assets"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_asset_dependencies_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("asset_id", "depends_on", name=op.f("pk_asset_dependencies")),
    )
    with op.batch_alter_table("asset_dependencies", schema=None) as batch_op:
        batch_op.create_index(
            "ix_asset_dependencies_tenant_target", ["tenant_id", "depends_on"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("asset_dependencies", schema=None) as batch_op:
        batch_op.drop_index("ix_asset_dependencies_tenant_target")

    op.drop_table("asset_dependencies")
    with op.batch_alter_table("packages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_packages_tenant_id"))
        batch_op.drop_index("ix_packages_tenant_created")
        batch_op.drop_index(batch_op.f("ix_packages_blob_id"))

    op.drop_table("packages")
    op.drop_table("package_origins")
