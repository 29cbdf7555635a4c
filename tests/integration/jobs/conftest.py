"""Apps with a job registry the test controls, and helpers to make assets and watch jobs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from assetd.app import create_app
from assetd.assets.models import Version
from assetd.config import Settings
from assetd.context import AppContext
from assetd.db.session import Database
from assetd.jobs.models import Job
from assetd.jobs.worker import JobInfo, JobRegistry
from tests.factories import TenantCredentials, upload

OK = "test:ok"
FAIL = "test:fail"
SLOW = "test:slow"


@dataclass
class Calls:
    """What the test handlers saw: (job id, attempt, monotonic time) per run."""

    runs: list[tuple[str, int, float]] = field(default_factory=list)
    release: asyncio.Event | None = None

    def attempts(self, job_id: str) -> list[int]:
        return [attempt for run_id, attempt, _ in self.runs if run_id == job_id]

    def times(self, job_id: str) -> list[float]:
        return [at for run_id, _, at in self.runs if run_id == job_id]


@pytest.fixture
def calls() -> Calls:
    return Calls()


@pytest.fixture
def registry(calls: Calls) -> JobRegistry:
    async def ok(context: AppContext, job: JobInfo) -> None:
        # The handler's context has a working database of its own thread.
        async with context.db.session(write=False) as session:
            await session.execute(sa.text("SELECT 1"))
        calls.runs.append((job.id, job.attempt, time.monotonic()))

    async def fail(context: AppContext, job: JobInfo) -> None:
        calls.runs.append((job.id, job.attempt, time.monotonic()))
        raise RuntimeError(f"boom on attempt {job.attempt}")

    async def slow(context: AppContext, job: JobInfo) -> None:
        calls.runs.append((job.id, job.attempt, time.monotonic()))
        await asyncio.sleep(1.5)

    registry = JobRegistry()
    registry.register(OK, ok)
    registry.register(FAIL, fail)
    registry.register(SLOW, slow)
    return registry


def fast_jobs(settings: Settings, **overrides: Any) -> Settings:
    """Job timings short enough for a test: retries in fractions of a second."""
    values: dict[str, Any] = {
        "jobs_retry_base_seconds": 0.3,
        "jobs_retry_max_seconds": 2.0,
        "jobs_lease_seconds": 3.0,
        "jobs_sweep_interval_seconds": 0.2,
        "jobs_requeue_after_seconds": 1.0,
        "jobs_shutdown_timeout_seconds": 5.0,
        "upload_cleanup_interval_seconds": 0,
    }
    values.update(overrides)
    return settings.model_copy(update=values)


AppFactory = Callable[..., Any]


@pytest.fixture
def make_app(db: Database, settings: Settings, registry: JobRegistry) -> Callable[..., Any]:
    """`async with make_app(**settings) as app:` an app whose lifespan runs for the block."""

    @asynccontextmanager
    async def factory(**overrides: Any) -> AsyncIterator[FastAPI]:
        application = create_app(fast_jobs(settings, **overrides), job_registry=registry)
        async with application.router.lifespan_context(application):
            yield application

    return factory


@pytest.fixture
async def jobs_app(make_app: AppFactory) -> AsyncIterator[FastAPI]:
    async with make_app() as application:
        yield application


@pytest.fixture
async def jobs_client(jobs_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=jobs_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


async def new_asset(
    client: httpx.AsyncClient, db: Database, tenant: TenantCredentials
) -> tuple[str, str]:
    """An uploaded asset: (asset id, version id)."""
    response = await upload(client, tenant, b"some bytes", "note.txt")
    assert response.status_code == 201, response.text
    asset_id = response.json()["id"]
    async with db.session(write=False) as session:
        version_id = (
            await session.execute(sa.select(Version.id).where(Version.asset_id == asset_id))
        ).scalar_one()
    return asset_id, version_id


async def read_job(db: Database, job_id: str) -> Job:
    async with db.session(write=False) as session:
        return (await session.execute(sa.select(Job).where(Job.id == job_id))).scalar_one()


async def wait_for(
    check: Callable[[], Awaitable[bool]], timeout: float = 20.0, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


async def wait_for_state(db: Database, job_id: str, *states: str, timeout: float = 20.0) -> Job:
    async def reached() -> bool:
        return (await read_job(db, job_id)).state in states

    await wait_for(reached, timeout, f"job {job_id} to become {states}")
    return await read_job(db, job_id)


@pytest.fixture
async def api_app(make_app: AppFactory) -> AsyncIterator[FastAPI]:
    """An app that runs no jobs and no sweeper (the scaled shape's API process)."""
    async with make_app(jobs_in_process=False) as application:
        yield application


@pytest.fixture
async def api_client(api_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=api_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http
