"""All SQL about jobs.

Workers and the sweeper act on job ids from the queue, which name no tenant: those methods
are cross-tenant by nature, and each says so.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from assetd.assets.models import Version
from assetd.db.repository import TenantScopedRepository
from assetd.ids import is_id
from assetd.jobs.models import Job, JobState


class JobRepository(TenantScopedRepository[Job]):
    model = Job

    async def list_for_asset(self, tenant_id: str, asset_id: str) -> list[tuple[Job, int | None]]:
        """The asset's jobs, oldest first, each with its version's number (if any)."""
        stmt = (
            sa.select(Job, Version.number)
            .outerjoin(Version, Version.id == Job.version_id)
            .where(Job.tenant_id == tenant_id, Job.asset_id == asset_id)
            .order_by(Job.created_at, Job.id)
        )
        rows = (await self.session.execute(stmt)).all()
        return [(row[0], row[1]) for row in rows]

    # cross-tenant: maintenance (assetd gc) prunes the finished jobs of every tenant.
    async def finished_before(self, before: datetime, limit: int) -> list[str]:
        """Ids of done and failed jobs last changed before `before`, at most `limit`."""
        stmt = sa.select(Job.id).where(*_finished_before(before)).limit(limit)
        return list((await self.session.execute(stmt)).scalars())

    # cross-tenant: maintenance (assetd gc --dry-run) counts the finished jobs of every tenant.
    async def count_finished_before(self, before: datetime) -> int:
        stmt = sa.select(sa.func.count()).select_from(Job).where(*_finished_before(before))
        return int(await self.session.scalar(stmt) or 0)

    # cross-tenant: maintenance (assetd gc) prunes the finished jobs of every tenant.
    async def delete_ids(self, job_ids: list[str]) -> None:
        await self.session.execute(sa.delete(Job).where(Job.id.in_(job_ids)))

    # cross-tenant: a worker knows only the job id that it took from the queue.
    async def find_any_tenant(self, job_id: str) -> Job | None:
        if not is_id(job_id):
            return None
        stmt = sa.select(Job).where(Job.id == job_id).execution_options(populate_existing=True)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    # cross-tenant: a worker knows only the job id that it took from the queue.
    async def claim(self, job_id: str, now: datetime, lease_until: datetime) -> bool:
        """pending → running with a lease, one attempt more; False if someone else has it."""
        stmt = (
            sa.update(Job)
            .where(
                Job.id == job_id,
                Job.state == JobState.pending,
                Job.run_after <= now,
                Job.attempts < Job.max_attempts,
            )
            .values(
                state=JobState.running,
                attempts=Job.attempts + 1,
                lease_until=lease_until,
                updated_at=now,
            )
        )
        return await self._changed(stmt)

    # cross-tenant: the worker's lease renewal for the job it holds.
    async def renew(self, job_id: str, attempt: int, now: datetime, lease_until: datetime) -> bool:
        stmt = (
            sa.update(Job)
            .where(Job.id == job_id, Job.state == JobState.running, Job.attempts == attempt)
            .values(lease_until=lease_until, updated_at=now)
        )
        return await self._changed(stmt)

    # `attempt` fences out a worker whose lease expired and whose job went to another.
    # cross-tenant: the worker settles the job it holds.
    async def settle(
        self,
        job_id: str,
        attempt: int,
        now: datetime,
        *,
        state: JobState,
        error: str | None,
        run_after: datetime | None = None,
    ) -> bool:
        values: dict[str, object] = {
            "state": state,
            "error": error,
            "lease_until": None,
            "updated_at": now,
        }
        if run_after is not None:
            values["run_after"] = run_after
        stmt = (
            sa.update(Job)
            .where(Job.id == job_id, Job.state == JobState.running, Job.attempts == attempt)
            .values(**values)
        )
        return await self._changed(stmt)

    # cross-tenant: the sweeper looks after every tenant's jobs.
    async def stale_pending(self, cutoff: datetime, limit: int) -> list[str]:
        """Pending jobs due before cutoff and untouched since: their push was probably lost."""
        stmt = (
            sa.select(Job.id)
            .where(Job.state == JobState.pending, Job.run_after < cutoff, Job.updated_at < cutoff)
            .order_by(Job.run_after)
            .limit(limit)
        )
        return list((await self.session.execute(stmt)).scalars())

    # cross-tenant: the sweeper looks after every tenant's jobs.
    async def expired_leases(self, now: datetime, limit: int) -> list[Job]:
        stmt = (
            sa.select(Job)
            .where(Job.state == JobState.running, Job.lease_until < now)
            .order_by(Job.lease_until)
            .limit(limit)
        )
        return list((await self.session.execute(stmt)).scalars())

    # cross-tenant: the sweeper looks after every tenant's jobs.
    async def touch_pending(self, job_id: str, cutoff: datetime, now: datetime) -> bool:
        """Mark a stale pending job as re-pushed; False if another sweeper got there first."""
        stmt = (
            sa.update(Job)
            .where(Job.id == job_id, Job.state == JobState.pending, Job.updated_at < cutoff)
            .values(updated_at=now)
        )
        return await self._changed(stmt)

    # cross-tenant: the sweeper takes back jobs whose worker died, whatever their tenant.
    async def release_lost(
        self, job_id: str, attempt: int, now: datetime, *, state: JobState, error: str
    ) -> bool:
        stmt = (
            sa.update(Job)
            .where(
                Job.id == job_id,
                Job.state == JobState.running,
                Job.attempts == attempt,
                Job.lease_until < now,
            )
            .values(state=state, error=error, lease_until=None, run_after=now, updated_at=now)
        )
        return await self._changed(stmt)

    async def _changed(self, stmt: sa.Update) -> bool:
        result = await self.session.execute(stmt)
        return bool(result.rowcount)  # type: ignore[attr-defined]


def _finished_before(before: datetime) -> list[sa.ColumnElement[bool]]:
    return [Job.state.in_([JobState.done, JobState.failed]), Job.updated_at < before]
