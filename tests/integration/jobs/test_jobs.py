"""Jobs: pushed only after commit, run by the embedded consumer, retried, idempotent, visible."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI

from assetd.context import AppContext
from assetd.db.base import utcnow
from assetd.db.session import Database
from assetd.jobs.backends import HueyJobQueue, build_huey
from assetd.jobs.models import JobState
from assetd.jobs.queue import JobQueue
from assetd.jobs.repository import JobRepository
from assetd.jobs.service import JobService
from assetd.jobs.worker import JobRegistry, JobRunner, sweep
from tests.factories import TenantCredentials
from tests.integration.jobs.conftest import (
    FAIL,
    OK,
    SLOW,
    AppFactory,
    Calls,
    new_asset,
    read_job,
    wait_for,
    wait_for_state,
)

pytestmark = pytest.mark.anyio


class RecordingQueue:
    """A JobQueue that only remembers what was pushed."""

    def __init__(self) -> None:
        self.pushed: list[tuple[str, float]] = []

    def push(self, job_ids: list[str], *, delay_seconds: float = 0.0) -> None:
        self.pushed.extend((job_id, delay_seconds) for job_id in job_ids)

    def close(self) -> None:
        pass


class Boom(Exception):
    pass


async def schedule_then_fail(
    db: Database, queue: JobQueue, tenant_id: str, asset_id: str, version_id: str, kinds: list[str]
) -> None:
    """Schedule jobs in a transaction that then fails (and so rolls back)."""
    async with db.session() as session:
        jobs = await JobService(session, queue).schedule(tenant_id, asset_id, version_id, kinds)
        assert len(jobs) == len(kinds)
        raise Boom


class TestOutbox:
    async def test_rollback_pushes_nothing_and_leaves_no_row(
        self,
        jobs_client: httpx.AsyncClient,
        db: Database,
        tenant: TenantCredentials,
    ) -> None:
        asset_id, version_id = await new_asset(jobs_client, db, tenant)
        queue = RecordingQueue()
        with pytest.raises(Boom):
            await schedule_then_fail(
                db, queue, tenant.id, asset_id, version_id, [OK, "rendition:thumb"]
            )
        assert queue.pushed == []
        response = await jobs_client.get(f"/v1/assets/{asset_id}/jobs", headers=tenant.headers)
        # (The upload itself may have scheduled jobs of its own kinds.)
        assert not {OK, "rendition:thumb"} & {job["kind"] for job in response.json()}

    async def test_push_happens_only_after_commit(
        self, jobs_client: httpx.AsyncClient, db: Database, tenant: TenantCredentials
    ) -> None:
        asset_id, version_id = await new_asset(jobs_client, db, tenant)
        queue = RecordingQueue()
        async with db.session() as session:
            jobs = await JobService(session, queue).schedule(tenant.id, asset_id, version_id, [OK])
            await session.flush()
            assert queue.pushed == []  # flushed, not committed: no worker may see it yet
        assert queue.pushed == [(jobs[0].id, 0.0)]

    async def test_rollback_leaves_the_broker_empty(
        self, jobs_client: httpx.AsyncClient, db: Database, tenant: TenantCredentials
    ) -> None:
        # A real huey queue (nobody consuming it): the rolled-back job never reaches it, the
        # committed one does.
        asset_id, version_id = await new_asset(jobs_client, db, tenant)
        queue = HueyJobQueue(build_huey("memory://"))
        with pytest.raises(Boom):
            await schedule_then_fail(db, queue, tenant.id, asset_id, version_id, [OK])
        await asyncio.sleep(0.2)
        assert queue.pending_count() == 0
        async with db.session() as session:
            await JobService(session, queue).schedule(tenant.id, asset_id, version_id, [OK])

        async def arrived() -> bool:
            return queue.pending_count() == 1

        await wait_for(arrived, 5, "the committed job's message")


class TestExecution:
    async def test_committed_job_runs_to_done(
        self,
        jobs_app: FastAPI,
        jobs_client: httpx.AsyncClient,
        db: Database,
        tenant: TenantCredentials,
        calls: Calls,
    ) -> None:
        context: AppContext = jobs_app.state.context
        asset_id, version_id = await new_asset(jobs_client, db, tenant)
        async with context.db.session() as session:
            (job,) = await context.job_service(session).schedule(
                tenant.id, asset_id, version_id, [OK]
            )
        done = await wait_for_state(db, job.id, JobState.done)
        assert done.attempts == 1
        assert done.error is None
        assert done.lease_until is None
        assert calls.attempts(job.id) == [1]

        response = await jobs_client.get(f"/v1/assets/{asset_id}/jobs", headers=tenant.headers)
        assert response.status_code == 200, response.text
        (listed,) = [listed for listed in response.json() if listed["id"] == job.id]
        assert listed["kind"] == OK
        assert listed["state"] == "done"
        assert listed["attempts"] == 1
        assert listed["error"] is None
        assert listed["versionNumber"] == 1
        assert {"createdAt", "updatedAt", "maxAttempts", "runAfter"} <= listed.keys()

    async def test_failing_job_is_retried_with_backoff_then_failed(
        self,
        jobs_app: FastAPI,
        jobs_client: httpx.AsyncClient,
        db: Database,
        tenant: TenantCredentials,
        calls: Calls,
    ) -> None:
        context: AppContext = jobs_app.state.context
        asset_id, version_id = await new_asset(jobs_client, db, tenant)
        async with context.db.session() as session:
            (job,) = await context.job_service(session).schedule(
                tenant.id, asset_id, version_id, [FAIL], max_attempts=3
            )
        # Between attempts the job is pending again, with the error of the last one.
        seen: list[tuple[JobState, int, str | None]] = []

        async def retrying() -> bool:
            row = await read_job(db, job.id)
            seen.append((row.state, row.attempts, row.error))
            return row.state == JobState.failed or (
                row.state == JobState.pending and row.attempts > 0
            )

        await wait_for(retrying, 20, "the first failure")
        failed = await wait_for_state(db, job.id, JobState.failed, timeout=30)
        assert failed.attempts == 3
        assert failed.error == "RuntimeError: boom on attempt 3"
        assert calls.attempts(job.id) == [1, 2, 3]
        # Back-off doubles: 0.3 s after the first failure, 0.6 s after the second.
        first, second, third = calls.times(job.id)
        assert second - first >= 0.3
        assert third - second >= 0.6
        assert (JobState.pending, 1, "RuntimeError: boom on attempt 1") in seen

        response = await jobs_client.get(f"/v1/assets/{asset_id}/jobs", headers=tenant.headers)
        (listed,) = [listed for listed in response.json() if listed["id"] == job.id]
        assert listed["state"] == "failed"
        assert listed["error"] == "RuntimeError: boom on attempt 3"

    async def test_unknown_kind_fails_with_a_clear_error(
        self,
        jobs_app: FastAPI,
        jobs_client: httpx.AsyncClient,
        db: Database,
        tenant: TenantCredentials,
    ) -> None:
        context: AppContext = jobs_app.state.context
        asset_id, version_id = await new_asset(jobs_client, db, tenant)
        async with context.db.session() as session:
            (job,) = await context.job_service(session).schedule(
                tenant.id, asset_id, version_id, ["no-such-kind"], max_attempts=1
            )
        failed = await wait_for_state(db, job.id, JobState.failed)
        assert failed.error == "LookupError: no handler for job kind 'no-such-kind'"


class TestIdempotence:
    async def test_rerun_of_a_done_job_is_a_no_op(
        self,
        jobs_app: FastAPI,
        jobs_client: httpx.AsyncClient,
        db: Database,
        tenant: TenantCredentials,
        calls: Calls,
        registry: JobRegistry,
    ) -> None:
        context: AppContext = jobs_app.state.context
        asset_id, version_id = await new_asset(jobs_client, db, tenant)
        async with context.db.session() as session:
            (job,) = await context.job_service(session).schedule(
                tenant.id, asset_id, version_id, [OK]
            )
        before = await wait_for_state(db, job.id, JobState.done)

        # Directly, and through the broker as a duplicate message would arrive.
        runner = JobRunner(context, registry, RecordingQueue())
        assert await runner.run(job.id) is None
        context.jobs.push([job.id])
        await asyncio.sleep(0.5)

        after = await read_job(db, job.id)
        assert (after.state, after.attempts, after.updated_at) == (
            JobState.done,
            1,
            before.updated_at,
        )
        assert calls.attempts(job.id) == [1]

    async def test_a_job_under_a_live_lease_is_not_run_twice(
        self,
        make_app: AppFactory,
        db: Database,
        tenant: TenantCredentials,
        calls: Calls,
        registry: JobRegistry,
    ) -> None:
        async with make_app(jobs_in_process=False) as app:
            context: AppContext = app.state.context
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                asset_id, version_id = await new_asset(client, db, tenant)
            queue = RecordingQueue()
            async with db.session() as session:
                (job,) = await JobService(session, queue).schedule(
                    tenant.id, asset_id, version_id, [SLOW]
                )
            runner = JobRunner(context, registry, queue)
            first = asyncio.create_task(runner.run(job.id))
            await wait_for_state(db, job.id, JobState.running)
            # A duplicate message while the first run holds the lease: nothing happens.
            assert await runner.run(job.id) is None
            assert await first == JobState.done
        assert calls.attempts(job.id) == [1]

    async def test_a_job_is_not_run_before_its_backoff_ends(
        self,
        make_app: AppFactory,
        db: Database,
        tenant: TenantCredentials,
        calls: Calls,
        registry: JobRegistry,
    ) -> None:
        async with make_app(
            jobs_in_process=False, jobs_retry_base_seconds=60, jobs_retry_max_seconds=600
        ) as app:
            context: AppContext = app.state.context
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                asset_id, version_id = await new_asset(client, db, tenant)
            queue = RecordingQueue()
            async with db.session() as session:
                (job,) = await JobService(session, queue).schedule(
                    tenant.id, asset_id, version_id, [FAIL]
                )
            runner = JobRunner(context, registry, queue)
            assert await runner.run(job.id) == JobState.pending
            assert queue.pushed[-1] == (job.id, 60.0)  # re-pushed with the back-off delay
            assert await runner.run(job.id) is None  # an early duplicate: too soon
        assert calls.attempts(job.id) == [1]


class TestSweeper:
    async def test_a_lost_push_is_pushed_again(
        self,
        make_app: AppFactory,
        db: Database,
        tenant: TenantCredentials,
        calls: Calls,
    ) -> None:
        # The process died between commit and push: the row is pending, the broker empty.
        async with make_app(jobs_in_process=False) as app:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                asset_id, version_id = await new_asset(client, db, tenant)
            lost = RecordingQueue()
            async with db.session() as session:
                (job,) = await JobService(session, lost).schedule(
                    tenant.id, asset_id, version_id, [OK]
                )
        # An embedded app starts: its sweeper finds the job once it is older than the grace.
        async with make_app():
            await wait_for_state(db, job.id, JobState.done)
        assert calls.attempts(job.id) == [1]

    async def test_sweeps_race_for_a_stale_job_and_only_one_pushes_it(
        self,
        api_client: httpx.AsyncClient,
        api_app: FastAPI,
        db: Database,
        tenant: TenantCredentials,
    ) -> None:
        # The window is wide enough that the second sweep always starts inside it, however
        # slow the first one is on a loaded machine (0.5 s was not, on PostgreSQL).
        settings = api_app.state.context.settings.model_copy(
            update={"jobs_requeue_after_seconds": 2.0}
        )
        asset_id, version_id = await new_asset(api_client, db, tenant)
        async with db.session() as session:
            (job,) = await JobService(session, RecordingQueue()).schedule(
                tenant.id, asset_id, version_id, [OK]
            )
        await asyncio.sleep(2.1)
        first, second = RecordingQueue(), RecordingQueue()
        await sweep(db, first, settings)
        await sweep(db, second, settings)
        assert (job.id, 0.0) in first.pushed
        assert job.id not in {job_id for job_id, _ in second.pushed}

    async def test_an_expired_lease_goes_back_to_pending_or_fails(
        self,
        api_client: httpx.AsyncClient,
        api_app: FastAPI,
        db: Database,
        tenant: TenantCredentials,
    ) -> None:
        settings = api_app.state.context.settings
        asset_id, version_id = await new_asset(api_client, db, tenant)
        async with db.session() as session:
            again, last = await JobService(session, RecordingQueue()).schedule(
                tenant.id, asset_id, version_id, ["x:lost", "y:lost"], max_attempts=2
            )
        past = utcnow() - timedelta(minutes=5)
        async with db.session() as session:
            jobs = JobRepository(session)
            for job, attempts in ((again, 1), (last, 2)):
                stored = await jobs.find_any_tenant(job.id)
                assert stored is not None
                stored.state = JobState.running
                stored.attempts = attempts
                stored.lease_until = past
        queue = RecordingQueue()
        await sweep(db, queue, settings)
        pushed = {job_id for job_id, _ in queue.pushed}
        assert again.id in pushed
        assert last.id not in pushed
        requeued, given_up = await read_job(db, again.id), await read_job(db, last.id)
        assert requeued.state == JobState.pending
        assert given_up.state == JobState.failed
        assert "worker lost" in (given_up.error or "")


class TestJobsEndpoint:
    async def test_another_tenants_asset_answers_404(
        self,
        jobs_client: httpx.AsyncClient,
        db: Database,
        tenant: TenantCredentials,
        other_tenant: TenantCredentials,
    ) -> None:
        asset_id, version_id = await new_asset(jobs_client, db, tenant)
        async with db.session() as session:
            await JobService(session, RecordingQueue()).schedule(
                tenant.id, asset_id, version_id, [OK]
            )
        mine = await jobs_client.get(f"/v1/assets/{asset_id}/jobs", headers=tenant.headers)
        assert mine.status_code == 200
        assert [job["kind"] for job in mine.json()].count(OK) == 1
        theirs = await jobs_client.get(f"/v1/assets/{asset_id}/jobs", headers=other_tenant.headers)
        missing = await jobs_client.get(f"/v1/assets/{'0' * 24}/jobs", headers=other_tenant.headers)
        assert theirs.status_code == missing.status_code == 404
        assert theirs.json()["detail"] == missing.json()["detail"].replace("0" * 24, asset_id)

    async def test_needs_credentials(
        self, jobs_client: httpx.AsyncClient, db: Database, tenant: TenantCredentials
    ) -> None:
        asset_id, _ = await new_asset(jobs_client, db, tenant)
        response = await jobs_client.get(f"/v1/assets/{asset_id}/jobs")
        assert response.status_code == 401
