"""The JobQueue Protocol, and the buffer that pushes jobs only once their rows are committed.

A job row is written in the caller's transaction; the queue message that makes a worker run
it must not go out before that transaction commits (a worker would find no row) nor at all
if it rolls back. The buffer hangs on the session and is flushed by its after_commit event.
If the process dies between commit and push, the sweeper finds the pending row and pushes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import structlog
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

log = structlog.get_logger()

_INFO_KEY = "assetd.pending_jobs"


class JobQueue(Protocol):
    """Where job ids go to be run by a worker; run_job(job_id) is idempotent."""

    def push(self, job_ids: list[str], *, delay_seconds: float = 0.0) -> None:
        """Hand job ids to the broker; may return before the broker has them."""
        ...

    def close(self) -> None: ...


@dataclass
class PendingJobs:
    """Job ids written in the session's current transaction, pushed after it commits."""

    batches: list[tuple[JobQueue, list[str]]] = field(default_factory=list)

    def after_commit(self, _session: Session) -> None:
        batches, self.batches = self.batches, []
        for queue, job_ids in batches:
            try:
                queue.push(job_ids)
            except Exception:  # the rows are committed; the sweeper pushes them later
                log.exception("jobs.push_failed", job_ids=job_ids)

    def after_rollback(self, _session: Session) -> None:
        self.batches = []


def enqueue_after_commit(session: AsyncSession, queue: JobQueue, job_ids: list[str]) -> None:
    """Push job_ids to queue when session's transaction commits; forget them if it rolls back."""
    sync_session = session.sync_session
    pending: PendingJobs | None = sync_session.info.get(_INFO_KEY)
    if pending is None:
        pending = PendingJobs()
        sync_session.info[_INFO_KEY] = pending
        event.listen(sync_session, "after_commit", pending.after_commit)
        event.listen(sync_session, "after_rollback", pending.after_rollback)
    pending.batches.append((queue, list(job_ids)))
