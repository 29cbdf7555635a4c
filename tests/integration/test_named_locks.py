"""Named locks (assetd.db.locks) on the suite's database: one holder at a time, across
tasks, Database objects and processes; released at the block's end, on cancellation and
when the holding process dies."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from assetd.db.locks import NamedLocks, lock_key
from assetd.db.session import Database

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]

# Takes the lock named argv[2], says whether it got it, and keeps it until stdin has a line.
HOLDER = """
import asyncio, sys
from assetd.db.session import Database

async def main() -> None:
    db = Database(sys.argv[1])
    async with db.locks.hold(sys.argv[2]) as held:
        print("held" if held else "busy", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    await db.dispose()

asyncio.run(main())
"""


async def is_free(locks: NamedLocks, name: str) -> bool:
    async with locks.hold(name) as held:
        return held


async def becomes_free(locks: NamedLocks, name: str, seconds: float = 10.0) -> bool:
    # A dead process's PostgreSQL session ends when its backend notices the closed socket.
    deadline = asyncio.get_running_loop().time() + seconds
    while not await is_free(locks, name):
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


@pytest.fixture
def holder(database_url: str) -> Iterator[subprocess.Popen[str]]:
    with subprocess.Popen(
        [sys.executable, "-c", HOLDER, database_url, "upload:abc"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    ) as process:
        try:
            yield process
        finally:
            process.kill()


async def test_one_holder_at_a_time_within_a_process(db: Database) -> None:
    async with db.locks.hold("upload:abc") as first:
        assert first
        async with db.locks.hold("upload:abc") as second:
            assert not second
        # A refused attempt leaves the holder's lock as it was.
        assert not await is_free(db.locks, "upload:abc")
        assert await is_free(db.locks, "upload:other")
    assert await is_free(db.locks, "upload:abc")


async def test_two_database_objects_see_each_others_holds(db: Database, database_url: str) -> None:
    # The server and its in-process job runner each have a Database on the same file.
    other = Database(database_url)
    try:
        async with db.locks.hold("upload:abc") as held:
            assert held
            assert not await is_free(other.locks, "upload:abc")
            async with other.locks.hold("upload:xyz") as also:
                assert also
                assert not await is_free(db.locks, "upload:xyz")
            # The other object letting go of its own lock keeps this one.
            assert not await is_free(other.locks, "upload:abc")
        assert await is_free(other.locks, "upload:abc")
    finally:
        await other.dispose()


async def test_a_cancelled_holder_lets_go(db: Database) -> None:
    entered = asyncio.Event()

    async def hold_forever() -> None:
        async with db.locks.hold("upload:abc") as held:
            assert held
            entered.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(hold_forever())
    await asyncio.wait_for(entered.wait(), 10)
    assert not await is_free(db.locks, "upload:abc")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await is_free(db.locks, "upload:abc")


async def test_an_error_in_the_block_lets_go(db: Database) -> None:
    async def fail_while_holding() -> None:
        async with db.locks.hold("upload:abc") as held:
            assert held
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await fail_while_holding()
    assert await is_free(db.locks, "upload:abc")


@pytest.mark.parametrize("ending", ["exits", "is killed"])
async def test_another_process_holds_it_until_it_lets_go_or_dies(
    db: Database, holder: subprocess.Popen[str], ending: str
) -> None:
    assert holder.stdout is not None
    assert holder.stdin is not None
    line = await asyncio.to_thread(holder.stdout.readline)
    assert line.strip() == "held"
    assert not await is_free(db.locks, "upload:abc")
    assert await is_free(db.locks, "upload:other")
    if ending == "exits":
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert await asyncio.to_thread(holder.wait, 10) == 0
    else:
        holder.send_signal(signal.SIGKILL)
        await asyncio.to_thread(holder.wait, 10)
    assert await becomes_free(db.locks, "upload:abc")


async def test_a_lost_postgresql_connection_gives_the_lock_back(db: Database) -> None:
    if db.is_sqlite:
        pytest.skip("PostgreSQL's advisory locks")
    async with db.locks.hold("upload:abc") as held:
        assert held
        # The lock's session dies under it (a restart, a network cut, an admin's kill).
        async with db.engine.connect() as connection:
            killed = await connection.scalar(
                sa.text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    " AND query LIKE '%pg_try_advisory_lock%'"
                )
            )
        assert killed == 1
    # The unlock failed quietly; the lock went with the session, and the broken connection
    # did not go back to the pool.
    assert await becomes_free(db.locks, "upload:abc")
    assert await is_free(db.locks, "upload:other")


def test_threads_with_loops_of_their_own_never_hold_it_at_once(database_url: str) -> None:
    # The job runner's threads each have a Database and an event loop of their own.
    guard = threading.Lock()
    inside, most, taken = 0, 0, 0

    async def contend() -> None:
        nonlocal inside, most, taken
        db = Database(database_url)
        try:
            for _ in range(150):
                async with db.locks.hold("upload:abc") as held:
                    if not held:
                        continue
                    with guard:
                        inside += 1
                        taken += 1
                        most = max(most, inside)
                    await asyncio.sleep(0)
                    with guard:
                        inside -= 1
        finally:
            await db.dispose()

    threads = [threading.Thread(target=asyncio.run, args=(contend(),)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert taken > 0
    assert most == 1


async def test_in_memory_sqlite_locks_within_the_process() -> None:
    locks = NamedLocks("sqlite+aiosqlite:///:memory:")
    async with locks.hold("upload:abc") as held:
        assert held
        assert not await is_free(locks, "upload:abc")
    assert await is_free(locks, "upload:abc")
    await locks.dispose()


def test_keys_are_non_negative_63_bit_and_differ() -> None:
    keys = {lock_key(f"upload:{n}") for n in range(10_000)}
    assert len(keys) == 10_000
    assert all(0 <= key < 2**63 for key in keys)
    assert lock_key("upload:1") == lock_key("upload:1")
