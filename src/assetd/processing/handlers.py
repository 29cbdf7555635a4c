"""Job handlers for processing; registered by the job registry in `serve` and `worker`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from assetd.jobs.worker import PermanentJobError
from assetd.processing.extract import ExtractionError
from assetd.processing.kinds import EXTRACT
from assetd.processing.service import ProcessingService

if TYPE_CHECKING:
    from assetd.context import AppContext
    from assetd.jobs.worker import JobInfo, JobRegistry


async def extract(context: AppContext, job: JobInfo) -> None:
    if job.version_id is None:
        return
    try:
        await ProcessingService(context.db, context.storage).extract(job.tenant_id, job.version_id)
    except ExtractionError as exc:
        # The bytes will not change: the same error would come back on every retry.
        raise PermanentJobError(str(exc)) from exc


def register(registry: JobRegistry) -> None:
    registry.register(EXTRACT, extract)
