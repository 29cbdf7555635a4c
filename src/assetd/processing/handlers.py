"""Job handlers for processing; registered by the job registry in `serve` and `worker`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from assetd.events import jobs as event_jobs
from assetd.jobs.worker import PermanentJobError
from assetd.processing.extract import ExtractionError
from assetd.processing.kinds import EXTRACT, RENDITION_KINDS, SCAN
from assetd.processing.service import ProcessingService
from assetd.renditions.imaging import ImagingError, configure_vips
from assetd.renditions.service import RenditionMaker

if TYPE_CHECKING:
    from assetd.context import AppContext
    from assetd.jobs.worker import JobHandler, JobInfo, JobRegistry


async def extract(context: AppContext, job: JobInfo) -> None:
    if job.version_id is None:
        return
    try:
        await ProcessingService(context.db, context.storage).extract(job.tenant_id, job.version_id)
    except ExtractionError as exc:
        # The bytes will not change: the same error would come back on every retry.
        raise PermanentJobError(str(exc)) from exc


def rendition_handler(preset: str) -> JobHandler:
    async def make_rendition(context: AppContext, job: JobInfo) -> None:
        if job.version_id is None:
            return
        try:
            await RenditionMaker(context.db, context.storage).make_presets(
                job.tenant_id, job.version_id, [preset]
            )
        except ImagingError as exc:
            # A bomb, a truncated image, a corrupt PDF: the bytes will not change.
            raise PermanentJobError(str(exc)) from exc

    return make_rendition


async def scan(context: AppContext, job: JobInfo) -> None:
    if job.version_id is None:
        return
    url = context.settings.clamd_url
    if url is None:
        # Scheduled while scanning was on; the version stays unserved until someone scans it.
        raise PermanentJobError("ASSETD_CLAMD_URL is not set any more; the version is unscanned")
    # clamd being down is worth retrying (ClamdError is an ordinary failure, with back-off).
    await ProcessingService(context.db, context.storage).scan(job.tenant_id, job.version_id, url)


def register(registry: JobRegistry) -> None:
    # Start-up of both `serve` and `worker` passes here: set libvips up before any job runs.
    configure_vips()
    registry.register(EXTRACT, extract)
    for preset, kind in RENDITION_KINDS.items():
        registry.register(kind, rendition_handler(preset))
    registry.register(SCAN, scan)
    event_jobs.register(registry)
