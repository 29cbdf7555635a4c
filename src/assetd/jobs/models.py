"""The jobs table: the outbox and the visible state of every background job."""

from __future__ import annotations

import enum
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from assetd.db.base import Base, IDModel, TenantOwned, TimestampedModel, utcnow


class JobState(enum.StrEnum):
    pending = "pending"  # waiting for a worker (or for its back-off to end)
    running = "running"  # claimed by a worker that holds a lease until lease_until
    done = "done"
    failed = "failed"  # gave up after max_attempts; error says why


class Job(IDModel, TimestampedModel, TenantOwned, Base):
    __tablename__ = "jobs"
    __table_args__ = (
        # The sweeper's scans: stale pending jobs by run_after, lost running ones by lease.
        sa.Index("ix_jobs_state_run_after", "state", "run_after"),
        sa.Index("ix_jobs_state_lease_until", "state", "lease_until"),
        # GET /v1/assets/{id}/jobs.
        sa.Index("ix_jobs_tenant_asset", "tenant_id", "asset_id", "created_at"),
    )

    # None for jobs about no asset (webhook deliveries).
    asset_id: Mapped[str | None] = mapped_column(
        sa.String(24), sa.ForeignKey("assets.id", ondelete="CASCADE")
    )
    version_id: Mapped[str | None] = mapped_column(
        sa.String(24), sa.ForeignKey("versions.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(sa.String(64))
    state: Mapped[JobState] = mapped_column(
        sa.Enum(JobState, native_enum=False, length=16, validate_strings=True),
        default=JobState.pending,
    )
    attempts: Mapped[int] = mapped_column(default=0)
    max_attempts: Mapped[int]
    error: Mapped[str | None] = mapped_column(sa.Text, default=None)
    run_after: Mapped[datetime] = mapped_column(default=utcnow)
    lease_until: Mapped[datetime | None] = mapped_column(default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
