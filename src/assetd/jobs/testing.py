"""Job kinds for the test suite only, registered when ASSETD_TEST_JOBS=1.

Tests that run a real `assetd worker` process cannot hand it a handler; this switch gives
the process kinds whose behaviour the test controls. Each run leaves a marker file
`<data_dir>/test-jobs/<job id>.<attempt>` so that the test can see what ran where.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    from assetd.context import AppContext
    from assetd.jobs.worker import JobInfo, JobRegistry

HANG_FIRST = "test:hang-first"  # hangs on its first attempt (until killed), succeeds after


async def _mark(context: AppContext, job: JobInfo) -> None:
    folder = anyio.Path(context.settings.data_dir) / "test-jobs"
    await folder.mkdir(parents=True, exist_ok=True)
    await (folder / f"{job.id}.{job.attempt}").write_text(str(job.attempt))


async def hang_first(context: AppContext, job: JobInfo) -> None:
    await _mark(context, job)
    if job.attempt == 1:
        await asyncio.sleep(3600)


def register_test_handlers(registry: JobRegistry) -> None:
    registry.register(HANG_FIRST, hang_first)
