"""The JobQueue contract on every huey backend: pushed ids reach a consumer, delays hold."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from assetd.jobs.backends import HueyJobQueue, build_huey
from tests.integration.jobs.test_worker import REDIS_URL, redis_or_skip


@pytest.fixture(params=["memory", "sqlite", "redis"])
def queue(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[HueyJobQueue]:
    name = f"contract_{uuid.uuid4().hex[:12]}"
    if request.param == "redis":
        redis_or_skip()
        url = f"{REDIS_URL}?queue={name}"
    elif request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'jobs.db'}"
    else:
        url = "memory://"
    job_queue = HueyJobQueue(build_huey(url))
    try:
        yield job_queue
    finally:
        job_queue.huey.flush()
        job_queue.close()


class TestHueyJobQueue:
    def test_pushed_ids_reach_the_consumer_and_delays_hold(self, queue: HueyJobQueue) -> None:
        seen: dict[str, float] = {}
        arrived = threading.Event()

        def execute(job_id: str) -> None:
            seen[job_id] = time.monotonic()
            if len(seen) == 3:
                arrived.set()

        queue.set_executor(execute)
        consumer = queue.consumer(2, embedded=True, shutdown_timeout=5)
        consumer.start()
        try:
            start = time.monotonic()
            # Outside an event loop, push() writes to the broker before it returns.
            queue.push(["a" * 24, "b" * 24])
            queue.push(["c" * 24], delay_seconds=1.5)
            assert arrived.wait(15), seen
        finally:
            consumer.stop(graceful=True)
        assert set(seen) == {"a" * 24, "b" * 24, "c" * 24}
        assert seen["c" * 24] - start >= 1.5
        assert queue.pending_count() == 0

    def test_a_producer_without_executor_only_enqueues(self, queue: HueyJobQueue) -> None:
        queue.push(["d" * 24])
        assert queue.pending_count() == 1
