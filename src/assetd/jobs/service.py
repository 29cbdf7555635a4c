"""Job use cases: schedule jobs in the caller's transaction, read an asset's jobs."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.ext.asyncio import AsyncSession

from assetd.db.repository import insert_new
from assetd.jobs.models import Job
from assetd.jobs.queue import JobQueue, enqueue_after_commit
from assetd.jobs.repository import JobRepository

DEFAULT_MAX_ATTEMPTS = 5


class JobService:
    def __init__(
        self,
        session: AsyncSession,
        queue: JobQueue,
        *,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        scanning: bool = False,
    ) -> None:
        self.session = session
        # New versions get a virus scan first (a clamd is configured).
        self.scanning = scanning
        self.queue = queue
        self.max_attempts = max_attempts
        self.jobs = JobRepository(session)

    async def schedule(
        self,
        tenant_id: str,
        asset_id: str | None,
        version_id: str | None,
        kinds: Iterable[str],
        *,
        max_attempts: int | None = None,
    ) -> list[Job]:
        """Add one pending job per kind; they reach the queue only if this transaction commits."""
        jobs = [
            Job(
                tenant_id=tenant_id,
                asset_id=asset_id,
                version_id=version_id,
                kind=kind,
                max_attempts=max_attempts or self.max_attempts,
            )
            for kind in kinds
        ]
        if not jobs:
            return []
        await insert_new(self.session, *jobs)
        enqueue_after_commit(self.session, self.queue, [job.id for job in jobs])
        return jobs

    async def list_for_asset(self, tenant_id: str, asset_id: str) -> list[tuple[Job, int | None]]:
        """The asset's jobs, oldest first, with their version numbers; the caller checks access."""
        return await self.jobs.list_for_asset(tenant_id, asset_id)
