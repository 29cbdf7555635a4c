"""`assetd worker` processes: a worker killed mid-job loses nothing; Redis as the broker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import redis

from assetd.db.session import Database
from assetd.jobs.backends import HueyJobQueue, build_huey
from assetd.jobs.models import JobState
from assetd.jobs.service import JobService
from assetd.jobs.testing import HANG_FIRST
from tests.factories import TenantCredentials
from tests.integration.jobs.conftest import (
    OK,
    AppFactory,
    Calls,
    new_asset,
    read_job,
    wait_for,
    wait_for_state,
)
from tests.server import plain_url, server_env

pytestmark = pytest.mark.anyio

REDIS_URL = os.environ.get("ASSETD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@contextmanager
def run_worker(env: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    with (
        open(log_path, "ab") as log,
        subprocess.Popen(
            [sys.executable, "-m", "assetd", "worker", "--threads", "2"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        ) as process,
    ):
        try:
            yield process
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


@pytest.mark.slow
async def test_a_worker_killed_mid_job_loses_no_job(
    make_app: AppFactory,
    db: Database,
    database_url: str,
    tenant: TenantCredentials,
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "worker-data"
    jobs_url = f"sqlite:///{tmp_path / 'broker' / 'jobs.db'}"
    env = server_env(
        data_dir,
        database_url=plain_url(database_url),
        extra={
            "ASSETD_JOBS_URL": jobs_url,
            "ASSETD_STORAGE_URL": "memory://",
            "ASSETD_TEST_JOBS": "1",
            "ASSETD_JOBS_LEASE_SECONDS": "1.5",
            "ASSETD_JOBS_SWEEP_INTERVAL_SECONDS": "0.2",
            "ASSETD_JOBS_SHUTDOWN_TIMEOUT_SECONDS": "5",
        },
    )
    log_path = tmp_path / "workers.log"
    # The API side: no jobs of its own, the same broker as the workers.
    async with make_app(jobs_in_process=False) as app:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            asset_id, version_id = await new_asset(client, db, tenant)
        queue = HueyJobQueue(build_huey(jobs_url))
        async with db.session() as session:
            (job,) = await JobService(session, queue).schedule(
                tenant.id, asset_id, version_id, [HANG_FIRST]
            )
        first_marker = data_dir / "test-jobs" / f"{job.id}.1"

        with run_worker(env, log_path) as first:

            async def started() -> bool:
                assert first.poll() is None, log_path.read_text()
                return first_marker.exists()

            await wait_for(started, 60, "the first worker to start the job")
            running = await read_job(db, job.id)
            assert (running.state, running.attempts) == (JobState.running, 1)
            first.send_signal(signal.SIGKILL)
            first.wait()

        with run_worker(env, log_path) as second:
            done = await wait_for_state(db, job.id, JobState.done, timeout=60)
            assert done.attempts == 2
            assert (data_dir / "test-jobs" / f"{job.id}.2").exists()
            # SIGTERM: a graceful stop, no traceback.
            second.send_signal(signal.SIGTERM)
            assert second.wait(timeout=30) == 0, log_path.read_text()
        queue.close()
    output = log_path.read_text()
    assert "job.worker_lost" in output, output
    assert "Traceback" not in output, output


def redis_or_skip() -> None:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.exceptions.ConnectionError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Redis is required in CI and is not reachable: {exc}")
        pytest.skip(f"Redis not reachable: {exc}")


async def test_jobs_run_through_redis(
    make_app: AppFactory, db: Database, tenant: TenantCredentials, calls: Calls
) -> None:
    redis_or_skip()
    name = f"assetd_test_{uuid.uuid4().hex[:12]}"
    async with make_app(jobs_url=f"{REDIS_URL}?queue={name}") as app:
        context = app.state.context
        assert type(context.jobs.huey).__name__ == "RedisHuey"
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            asset_id, version_id = await new_asset(client, db, tenant)
        async with db.session() as session:
            (job,) = await context.job_service(session).schedule(
                tenant.id, asset_id, version_id, [OK]
            )
        await wait_for_state(db, job.id, JobState.done)
    assert calls.attempts(job.id) == [1]
    connection = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(connection.scan_iter(f"huey.*{name}*"))
        if keys:
            connection.delete(*keys)
    finally:
        connection.close()
