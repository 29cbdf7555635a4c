"""versions.scan_status and scan_result: ClamAV verdicts

Revision ID: 0008_scan
Revises: 0007_storage_providers
Create Date: 2026-11-24 05:45:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_scan"
down_revision = "0007_storage_providers"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("versions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("scan_status", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("scan_result", sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("versions", schema=None) as batch_op:
        batch_op.drop_column("scan_result")
        batch_op.drop_column("scan_status")
