"""SQLite on the event loop (assetd.db.sqlite_inline): writers wait for each other, and for
other programs, without stopping the loop; after_commit runs only what was committed.

These make their own SQLite files, whatever database the rest of the suite runs on.
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from assetd.db.session import Database, after_commit
from assetd.db.sqlite_inline import InlineConnection

pytestmark = pytest.mark.anyio


@pytest.fixture
def sqlite_file(tmp_path: Path) -> Path:
    path = tmp_path / "w.db"
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("CREATE TABLE t (n INTEGER)")
    return path


def _url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


async def _insert(db: Database, n: int) -> None:
    async with db.session() as session:
        await session.execute(sa.text("INSERT INTO t (n) VALUES (:n)"), {"n": n})


def _rows(path: Path) -> list[int]:
    with sqlite3.connect(path) as connection:
        return [n for (n,) in connection.execute("SELECT n FROM t ORDER BY rowid")]


class Ticker:
    """Counts how often the loop gets round to it: a blocked loop stops the count."""

    def __init__(self) -> None:
        self.ticks = 0
        self.longest_gap = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.005)
            now = time.monotonic()
            self.longest_gap = max(self.longest_gap, now - last)
            last = now
            self.ticks += 1

    def __enter__(self) -> Ticker:
        self._task = asyncio.ensure_future(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()


async def test_statements_run_on_the_loop_thread_without_a_thread_per_connection(
    sqlite_file: Path,
) -> None:
    db = Database(_url(sqlite_file))
    threads_before = threading.active_count()
    try:
        async with db.session() as session:
            connection = await session.connection()
            raw = await connection.get_raw_connection()
            driver = raw.driver_connection
            assert isinstance(driver, InlineConnection)
            await session.execute(sa.text("INSERT INTO t (n) VALUES (1)"))
        assert threading.active_count() == threads_before
    finally:
        await db.dispose()
    assert _rows(sqlite_file) == [1]


async def test_a_writer_waits_for_another_program_without_blocking_the_loop(
    sqlite_file: Path,
) -> None:
    # Another program (no writer lock file) holds SQLite's write lock for 0.6 s.
    with subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys, time\n"
            f"c = sqlite3.connect({str(sqlite_file)!r}, isolation_level=None)\n"
            "c.execute('BEGIN IMMEDIATE'); c.execute('INSERT INTO t (n) VALUES (1)')\n"
            "print('locked', flush=True); time.sleep(0.6); c.execute('COMMIT')\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        db = Database(_url(sqlite_file))
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline().strip() == "locked"
            began = time.monotonic()
            with Ticker() as ticker:
                await _insert(db, 2)
            waited = time.monotonic() - began
        finally:
            await db.dispose()

    assert waited > 0.3  # it did wait for the other program's commit …
    assert ticker.ticks > 20  # … while the loop went on running other work
    assert ticker.longest_gap < 0.2
    assert _rows(sqlite_file) == [1, 2]


class LockHolder:
    """A write transaction (inserting 1) that holds the lock until release() is called."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._holding = asyncio.Event()
        self._release = asyncio.Event()
        self.task: asyncio.Future[None] | None = None

    async def start(self) -> None:
        self.task = asyncio.ensure_future(self._hold())
        await self._holding.wait()

    async def _hold(self) -> None:
        async with self._db.session() as session:
            await session.execute(sa.text("INSERT INTO t (n) VALUES (1)"))
            self._holding.set()
            await self._release.wait()

    def release(self) -> asyncio.Future[None]:
        self._release.set()
        assert self.task is not None
        return self.task


async def test_writers_of_two_databases_queue_on_the_lock_file(sqlite_file: Path) -> None:
    first, second = Database(_url(sqlite_file)), Database(_url(sqlite_file))
    holder = LockHolder(first)
    try:
        await holder.start()
        waiter = asyncio.ensure_future(_insert(second, 2))
        with Ticker() as ticker:
            await asyncio.sleep(0.3)
            assert not waiter.done()  # queued behind the first writer …
            await asyncio.wait_for(asyncio.gather(holder.release(), waiter), timeout=5)
        assert ticker.ticks > 20  # … on a thread, not on the loop
    finally:
        await first.dispose()
        await second.dispose()
    assert _rows(sqlite_file) == [1, 2]
    assert (sqlite_file.parent / "w.db-writer.lock").exists()


async def test_a_writer_cancelled_while_queued_leaves_the_lock_free(sqlite_file: Path) -> None:
    first, second, third = (Database(_url(sqlite_file)) for _ in range(3))
    holder = LockHolder(first)
    try:
        await holder.start()
        cancelled = asyncio.ensure_future(_insert(second, 2))
        await asyncio.sleep(0.2)
        cancelled.cancel()
        await holder.release()
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        # Had the cancelled writer kept the lock it was waiting for, this would hang.
        await asyncio.wait_for(_insert(third, 3), timeout=5)
    finally:
        for db in (first, second, third):
            await db.dispose()
    assert _rows(sqlite_file) == [1, 3]


async def test_after_commit_runs_once_the_change_is_visible(sqlite_file: Path) -> None:
    db = Database(_url(sqlite_file))
    seen: list[list[int]] = []
    try:
        async with db.session() as session:
            await session.execute(sa.text("INSERT INTO t (n) VALUES (1)"))
            after_commit(session, lambda: seen.append(_rows(sqlite_file)))
            assert seen == []
    finally:
        await db.dispose()
    assert seen == [[1]]  # on a worker thread, through another connection: committed


async def test_after_commit_is_dropped_when_the_session_rolls_back(sqlite_file: Path) -> None:
    db = Database(_url(sqlite_file))
    ran: list[str] = []

    async def fail_after_registering() -> None:
        async with db.session() as session:
            await session.execute(sa.text("INSERT INTO t (n) VALUES (1)"))
            after_commit(session, lambda: ran.append("rolled back"))
            raise RuntimeError("the unit of work fails")

    try:
        with pytest.raises(RuntimeError):
            await fail_after_registering()
        async with db.session() as session:
            await session.execute(sa.text("INSERT INTO t (n) VALUES (2)"))
            after_commit(session, lambda: ran.append("committed"))
    finally:
        await db.dispose()
    assert ran == ["committed"]
    assert _rows(sqlite_file) == [2]


async def test_a_failing_after_commit_action_does_not_undo_the_commit(
    sqlite_file: Path,
) -> None:
    db = Database(_url(sqlite_file))

    def fails() -> None:
        raise OSError("fsync failed")

    try:
        async with db.session() as session:
            await session.execute(sa.text("INSERT INTO t (n) VALUES (1)"))
            after_commit(session, fails)
    finally:
        await db.dispose()
    assert _rows(sqlite_file) == [1]
