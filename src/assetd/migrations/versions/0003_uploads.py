"""upload sessions and their parts

Revision ID: 0003_uploads
Revises: 0002_templates
Create Date: 2026-11-24 04:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import assetd.db.base

revision = "0003_uploads"
down_revision = "0002_templates"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "upload_sessions",
        sa.Column("asset_id", sa.String(length=24), nullable=True),
        sa.Column("created_asset", sa.Boolean(), nullable=False),
        sa.Column(
            "protocol",
            sa.Enum("parts", "tus", name="uploadprotocol", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column(
            "state",
            sa.Enum(
                "open",
                "completing",
                "completed",
                "cancelled",
                "expired",
                "failed",
                name="uploadstate",
                native_enum=False,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("filename", sa.String(length=500), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("size_exact", sa.Boolean(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("part_size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("part_count", sa.Integer(), nullable=False),
        sa.Column("offset_bytes", sa.BigInteger(), nullable=False),
        sa.Column("storage_handle", sa.String(length=1024), nullable=False),
        sa.Column("upload_metadata", sa.JSON(), nullable=False),
        sa.Column("auto_complete", sa.Boolean(), nullable=False),
        sa.Column("expires_at", assetd.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=True),
        sa.Column("completed_at", assetd.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("version_number", sa.Integer(), nullable=True),
        sa.Column("error", sa.String(length=1000), nullable=True),
        sa.Column("id", sa.String(length=24), nullable=False),
        sa.Column("created_at", assetd.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.String(length=24), nullable=False),
        sa.ForeignKeyConstraint(
            ["asset_id"],
            ["assets.id"],
            name=op.f("fk_upload_sessions_asset_id_assets"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_upload_sessions_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_upload_sessions")),
    )
    with op.batch_alter_table("upload_sessions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_upload_sessions_asset_id"), ["asset_id"], unique=False)
        batch_op.create_index(
            "ix_upload_sessions_state_expires", ["state", "expires_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_upload_sessions_tenant_id"), ["tenant_id"], unique=False
        )

    op.create_table(
        "upload_parts",
        sa.Column("session_id", sa.String(length=24), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("size_exact", sa.Boolean(), nullable=False),
        sa.Column("etag", sa.String(length=64), nullable=False),
        sa.Column("received_at", assetd.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.String(length=24), nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["upload_sessions.id"],
            name=op.f("fk_upload_parts_session_id_upload_sessions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_upload_parts_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("session_id", "number", name=op.f("pk_upload_parts")),
    )
    with op.batch_alter_table("upload_parts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_upload_parts_tenant_id"), ["tenant_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("upload_parts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_upload_parts_tenant_id"))
    op.drop_table("upload_parts")
    with op.batch_alter_table("upload_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_upload_sessions_tenant_id"))
        batch_op.drop_index("ix_upload_sessions_state_expires")
        batch_op.drop_index(batch_op.f("ix_upload_sessions_asset_id"))
    op.drop_table("upload_sessions")
