"""Running jobs: the handler registry, the per-thread runner, the sweeper, and `assetd worker`.

A huey message carries only a job id. The jobs table is the truth: run_job claims the row
(pending → running, with a lease), runs the handler registered for its kind, and settles it
(done; or pending again after a back-off; or failed after max_attempts). A claim that finds
the row done, failed, or running under a live lease does nothing, so a message delivered
twice — a sweeper's re-push, a retry racing a late worker — runs the job at most once at a
time. A worker killed mid-job stops renewing its lease; the sweeper hands the job on.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

import structlog

from assetd.config import Settings
from assetd.db.base import utcnow
from assetd.db.session import Database
from assetd.jobs.backends import HueyJobQueue, build_huey
from assetd.jobs.models import Job, JobState
from assetd.jobs.queue import JobQueue, enqueue_after_commit
from assetd.jobs.repository import JobRepository

if TYPE_CHECKING:
    from assetd.context import AppContext

log = structlog.get_logger()

MAX_ERROR_CHARS = 4000
SWEEP_BATCH = 500


@dataclass(frozen=True)
class JobInfo:
    """What a handler is told about the job it runs (a snapshot, not a live row)."""

    id: str
    tenant_id: str
    asset_id: str | None
    version_id: str | None
    kind: str
    attempt: int
    max_attempts: int

    @classmethod
    def of(cls, job: Job) -> JobInfo:
        return cls(
            job.id,
            job.tenant_id,
            job.asset_id,
            job.version_id,
            job.kind,
            job.attempts,
            job.max_attempts,
        )


# A handler gets the app context (db, storage, …; its db belongs to the worker thread) and
# the job. It must be idempotent: a job may run again after a crash. Raising means "retry".
JobHandler = Callable[["AppContext", JobInfo], Awaitable[None]]


class PermanentJobError(Exception):
    """A failure that trying again cannot cure (a corrupt file): the job fails at once."""


class JobRegistry:
    """Job kinds and their async handlers; filled at start-up by the app and the worker."""

    def __init__(self) -> None:
        self._handlers: dict[str, JobHandler] = {}

    def register(self, kind: str, handler: JobHandler) -> None:
        if kind in self._handlers:
            raise ValueError(f"job kind {kind!r} is already registered")
        self._handlers[kind] = handler

    def get(self, kind: str) -> JobHandler | None:
        return self._handlers.get(kind)

    def kinds(self) -> list[str]:
        return sorted(self._handlers)


def build_registry(settings: Settings) -> JobRegistry:
    """Every job kind this build of assetd knows; the same in `serve` and `worker`."""
    from assetd.processing import handlers as processing

    registry = JobRegistry()
    processing.register(registry)
    if settings.test_jobs:
        # A subprocess worker in the test suite cannot be handed Python objects; it learns
        # its test-only kinds from this switch (see assetd.jobs.testing).
        from assetd.jobs.testing import register_test_handlers

        register_test_handlers(registry)
    return registry


def retry_delay_seconds(settings: Settings, attempt: int) -> float:
    """Exponential back-off after the attempt-th failure: base, 2×base, 4×base, … capped."""
    delay = settings.jobs_retry_base_seconds * 2 ** max(attempt - 1, 0)
    return float(min(delay, settings.jobs_retry_max_seconds))


class JobRunner:
    """Claims, runs and settles jobs by id; one per worker thread (own loop, own Database)."""

    def __init__(self, context: AppContext, registry: JobRegistry, queue: JobQueue) -> None:
        self.context = context
        self.db = context.db
        self.settings = context.settings
        self.registry = registry
        self.queue = queue

    async def run(self, job_id: str) -> JobState | None:
        """Run the job if it is ready and nobody else holds it; the state it ended in."""
        lease = timedelta(seconds=self.settings.jobs_lease_seconds)
        now = utcnow()
        async with self.db.session() as session:
            jobs = JobRepository(session)
            claimed = await jobs.claim(job_id, now, now + lease)
            job = await jobs.find_any_tenant(job_id) if claimed else None
        if job is None:
            log.debug("job.skipped", job_id=job_id)
            return None
        info = JobInfo.of(job)
        log.info("job.started", job_id=job_id, kind=info.kind, attempt=info.attempt)
        handler = self.registry.get(info.kind)
        heartbeat = asyncio.create_task(self._keep_lease(info))
        try:
            if handler is None:
                raise LookupError(f"no handler for job kind {info.kind!r}")
            await handler(self.context, info)
        except Exception as exc:  # any handler failure is recorded on the job, then retried
            # A failing job is an expected outcome (a corrupt file, say), not a crash of
            # ours: its error goes on the job; the traceback only at DEBUG.
            log.debug("job.attempt_traceback", job_id=job_id, exc_info=True)
            return await self._failed(info, exc)
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
        async with self.db.session() as session:
            settled = await JobRepository(session).settle(
                job_id, info.attempt, utcnow(), state=JobState.done, error=None
            )
        log.info("job.done", job_id=job_id, kind=info.kind, settled=settled)
        return JobState.done if settled else None

    async def _failed(self, info: JobInfo, exc: Exception) -> JobState | None:
        error = f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]
        now = utcnow()
        gave_up = info.attempt >= info.max_attempts or isinstance(exc, PermanentJobError)
        state = JobState.failed if gave_up else JobState.pending
        delay = retry_delay_seconds(self.settings, info.attempt)
        run_after = None if gave_up else now + timedelta(seconds=delay)
        async with self.db.session() as session:
            settled = await JobRepository(session).settle(
                info.id, info.attempt, now, state=state, error=error, run_after=run_after
            )
        if not settled:
            return None  # our lease ran out and the job went to someone else
        if not gave_up:
            self.queue.push([info.id], delay_seconds=delay)
        log.warning(
            "job.attempt_failed",
            job_id=info.id,
            kind=info.kind,
            attempt=info.attempt,
            state=state.value,
            error=error,
        )
        return state

    async def _keep_lease(self, info: JobInfo) -> None:
        """Renew the lease while the handler runs, so only a dead worker loses its job."""
        lease = self.settings.jobs_lease_seconds
        while True:
            await asyncio.sleep(lease / 3)
            try:
                now = utcnow()
                async with self.db.session() as session:
                    kept = await JobRepository(session).renew(
                        info.id, info.attempt, now, now + timedelta(seconds=lease)
                    )
            except Exception:  # a missed renewal is retried; the lease has slack for two
                log.warning("job.lease_renewal_failed", job_id=info.id, exc_info=True)
                continue
            if not kept:
                log.warning("job.lease_lost", job_id=info.id)
                return


async def sweep(db: Database, queue: JobQueue, settings: Settings) -> int:
    """Re-push pending jobs whose push was lost, and take back jobs whose worker died."""
    now = utcnow()
    cutoff = now - timedelta(seconds=settings.jobs_requeue_after_seconds)
    pushed: list[str] = []
    async with db.session() as session:
        jobs = JobRepository(session)
        for job_id in await jobs.stale_pending(cutoff, SWEEP_BATCH):
            if await jobs.touch_pending(job_id, cutoff, now):
                pushed.append(job_id)
        for job in await jobs.expired_leases(now, SWEEP_BATCH):
            gave_up = job.attempts >= job.max_attempts
            error = "worker lost: its lease expired while the job was running"
            state = JobState.failed if gave_up else JobState.pending
            if await jobs.release_lost(job.id, job.attempts, now, state=state, error=error):
                log.warning("job.worker_lost", job_id=job.id, kind=job.kind, state=state.value)
                if not gave_up:
                    pushed.append(job.id)
        enqueue_after_commit(session, queue, pushed)
    if pushed:
        log.info("jobs.swept", count=len(pushed))
    return len(pushed)


async def sweep_forever(db: Database, queue: JobQueue, settings: Settings) -> None:
    while True:
        await asyncio.sleep(settings.jobs_sweep_interval_seconds)
        try:
            await sweep(db, queue, settings)
        except Exception:  # the next pass retries; a failed pass must not stop the process
            log.exception("jobs.sweep_failed")


class ThreadedExecutor:
    """huey's run_job for thread workers: one event loop and one Database per thread."""

    def __init__(self, context: AppContext, registry: JobRegistry, queue: HueyJobQueue) -> None:
        self.context = context
        self.registry = registry
        self.queue = queue
        self._local = threading.local()
        queue.huey.on_shutdown(name="assetd_close_thread")(self.close_thread)

    def __call__(self, job_id: str) -> None:
        runner: JobRunner | None = getattr(self._local, "runner", None)
        if runner is None:
            self._local.loop = asyncio.new_event_loop()
            db = Database(self.context.settings.resolved_database_url(), background=True)
            thread_context = dataclasses.replace(self.context, db=db)
            runner = self._local.runner = JobRunner(thread_context, self.registry, self.queue)
        self._local.loop.run_until_complete(runner.run(job_id))

    def close_thread(self) -> None:
        runner: JobRunner | None = getattr(self._local, "runner", None)
        if runner is None:
            return
        loop: asyncio.AbstractEventLoop = self._local.loop
        try:
            loop.run_until_complete(runner.db.dispose())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            loop.close()
            del self._local.runner, self._local.loop


def run_worker(settings: Settings, threads: int) -> None:
    """`assetd worker`: run jobs until SIGTERM (running jobs finish first) or SIGINT (at once)."""
    import anyio

    from assetd.context import build_context
    from assetd.logging import configure_logging
    from assetd.storage.factory import storage_from_settings

    configure_logging(settings.log_level, json=settings.log_json)
    storage = storage_from_settings(settings)
    queue = HueyJobQueue(build_huey(settings.resolved_jobs_url()))
    # The sweeper's own Database lives on the sweeper thread's loop; each worker thread
    # gets its own through ThreadedExecutor.
    context = build_context(settings, Database(settings.resolved_database_url()), storage, queue)
    registry = build_registry(settings)
    queue.set_executor(ThreadedExecutor(context, registry, queue))
    consumer = queue.consumer(
        threads, embedded=False, shutdown_timeout=settings.jobs_shutdown_timeout_seconds
    )

    stop = threading.Event()

    def sweeper() -> None:
        async def loop() -> None:
            try:
                while not stop.is_set():
                    try:
                        await sweep(context.db, queue, settings)
                    except Exception:  # the next pass retries
                        log.exception("jobs.sweep_failed")
                    interval = settings.jobs_sweep_interval_seconds
                    await anyio.to_thread.run_sync(stop.wait, interval)
            finally:
                await context.db.dispose()

        asyncio.run(loop())

    sweeper_thread = threading.Thread(target=sweeper, name="Sweeper", daemon=True)
    if settings.jobs_sweep_interval_seconds > 0:
        sweeper_thread.start()
    log.info("worker.started", threads=threads, kinds=registry.kinds())
    try:
        consumer.run()
    finally:
        stop.set()
        if sweeper_thread.is_alive():
            sweeper_thread.join(timeout=10)
        queue.close()
        storage.close()
        log.info("worker.stopped")
