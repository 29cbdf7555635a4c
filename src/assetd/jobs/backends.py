"""huey behind the JobQueue Protocol: SqliteHuey embedded, RedisHuey scaled, MemoryHuey tests."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, urlsplit, urlunsplit

import structlog
from huey import Huey, MemoryHuey, RedisHuey, SqliteHuey
from huey.consumer import Consumer
from huey.storage import SqliteStorage

log = structlog.get_logger()

RUN_JOB_TASK = "assetd_run_job"


def build_huey(url: str) -> Huey:
    """A huey instance for a jobs URL: sqlite:///path, redis://host:port/db, memory://.

    `?queue=name` picks the queue's name (default "assetd"), so that several deployments or
    test runs can share one Redis.
    """
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    name = query.pop("queue", ["assetd"])[0]
    # Results are never read: the jobs table holds each job's outcome.
    if parts.scheme == "sqlite":
        # As in SQLAlchemy URLs: sqlite:///relative/path, sqlite:////absolute/path.
        path = Path(parts.path[1:] if parts.path.startswith("/") else parts.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        return SqliteHuey(
            name, filename=str(path), results=False, timeout=30, storage_class=_SqliteBroker
        )
    if parts.scheme in ("redis", "rediss"):
        rest = "&".join(f"{k}={v}" for k, values in query.items() for v in values)
        plain = urlunsplit((parts.scheme, parts.netloc, parts.path, rest, ""))
        return RedisHuey(name, url=plain, results=False)
    if parts.scheme == "memory":
        return MemoryHuey(name, results=False)
    raise ValueError(f"unsupported jobs URL {url!r}: use sqlite:///…, redis://… or memory://")


class _SqliteBroker(SqliteStorage):  # type: ignore[misc]
    """huey's SQLite storage with synchronous=NORMAL, which WAL keeps consistent.

    huey leaves SQLite's default (FULL), an fsync for every push and every take. The broker
    needs no durability of its own: a job is a row in assetd's database first, and the
    sweeper pushes again what a crash lost.
    """

    def _create_connection(self) -> sqlite3.Connection:
        connection: sqlite3.Connection = super()._create_connection()
        connection.execute("PRAGMA synchronous=NORMAL")
        return connection


class HueyJobQueue:
    """Pushes job ids as `run_job(job_id)` huey tasks; a worker sets the executor."""

    def __init__(self, huey: Huey) -> None:
        self.huey = huey
        self._execute: Callable[[str], None] | None = None
        # Registered on this instance, not with a module-level decorator: every app or worker
        # builds its own huey, and the producer needs the task's name to enqueue it.
        self._task = huey.task(name=RUN_JOB_TASK)(self._run_job)

    def set_executor(self, execute: Callable[[str], None]) -> None:
        self._execute = execute

    def _run_job(self, job_id: str) -> None:
        if self._execute is None:
            raise RuntimeError("this process runs no jobs (no executor set)")
        self._execute(job_id)

    def push(self, job_ids: list[str], *, delay_seconds: float = 0.0) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._push_now(job_ids, delay_seconds)
            return
        # A broker write is blocking I/O (SQLite may wait for its lock): keep it off the loop.
        loop.run_in_executor(None, self._push_logged, job_ids, delay_seconds)

    def _push_logged(self, job_ids: list[str], delay_seconds: float) -> None:
        try:
            self._push_now(job_ids, delay_seconds)
        except Exception:  # the rows are committed; the sweeper pushes them later
            log.exception("jobs.push_failed", job_ids=job_ids)

    def _push_now(self, job_ids: list[str], delay_seconds: float) -> None:
        for job_id in job_ids:
            if delay_seconds > 0:
                self._task.schedule(args=(job_id,), delay=delay_seconds)
            else:
                self._task(job_id)

    def pending_count(self) -> int:
        """Messages waiting in the broker (ready or scheduled for later)."""
        return int(self.huey.pending_count()) + int(self.huey.scheduled_count())

    def consumer(
        self, threads: int, *, embedded: bool, shutdown_timeout: float | None = None
    ) -> Consumer:
        """Thread workers; embedded ones leave signals to uvicorn, `assetd worker` takes them."""
        # SIGTERM (what orchestrators send) lets running jobs finish, up to shutdown_timeout.
        options = {
            "workers": threads,
            "worker_type": "thread",
            "periodic": False,
            "backoff": 1.5,
            "max_delay": 1.0,
            "shutdown_timeout": shutdown_timeout,
            "graceful_signal": "TERM",
        }
        return (_QuietConsumer if embedded else Consumer)(self.huey, **options)

    def close(self) -> None:
        self.huey.storage.close()
        # huey's Redis storage leaves its connection pool open.
        pool = getattr(self.huey.storage, "pool", None)
        if pool is not None:
            pool.disconnect()


class _QuietConsumer(Consumer):  # type: ignore[misc]
    """A consumer that leaves signal handling to its host (uvicorn, or `assetd worker`)."""

    def _set_signal_handlers(self) -> None:
        pass
