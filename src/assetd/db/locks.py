"""Named locks that every process of a deployment sees, taken without waiting.

For work that must not run twice at once for the same thing and lasts longer than a
transaction should: a tus PATCH checks the upload's offset, writes the request's bytes into
storage, then records the new offset. Two PATCHes at the same offset would both pass the
check and both write, and the loser's bytes could replace the winner's after the winner's
offset and hashes were recorded. A row lock cannot cover that: the bytes take as long as
the client takes to send them, and no transaction should stay open that long.

A lock is released when its holder leaves the block, and by the database or the kernel
when the process holding it dies, so a crash leaves none behind.

- PostgreSQL: a session-level advisory lock (`pg_try_advisory_lock`) on a connection of
  its own, from a pool of its own, so that long-held locks cannot starve requests of
  connections: it keeps a few connections warm (a new one cost 7 ms here, a warm one
  0.9 with its liveness check) and opens as many more as are held at once. Every process
  on every machine sees it.
- SQLite, which runs on one machine: a one-byte POSIX lock (`lockf`) on a file beside the
  database, at an offset hashed from the name. POSIX locks belong to a process, not a file
  descriptor, and any close() of the file drops all of them, so this process's own
  holders are tracked here too, one descriptor per file, closed when nothing is held.
- SQLite in memory (tests): the process is the deployment; the in-process set is enough.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import sqlalchemy as sa
import structlog
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from assetd.db.sqlite_inline import sqlite_file

log = structlog.get_logger()

# PostgreSQL connections the lock pool keeps open between locks, per process.
LOCK_POOL_SIZE = 2


def lock_key(name: str) -> int:
    """63 bits of the name's SHA-256: a non-negative bigint for PostgreSQL and an offset
    for lockf. Two names sharing a key would only make one wait for the other."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") >> 1


@dataclass
class _LockFile:
    """This process's holds on one lock file, and the descriptor they share.

    `guard` because the job runner's threads have Database objects (and event loops) of
    their own on the same file; every call under it is a quick, non-blocking syscall.
    """

    path: Path
    held: set[int] = field(default_factory=set)
    fd: int | None = None
    guard: threading.Lock = field(default_factory=threading.Lock)

    def take(self, key: int) -> bool:
        with self.guard:
            if key in self.held:
                return False  # lockf would grant it again: the process owns the byte
            if self.fd is None:
                self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.lockf(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, key)
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                self._close_if_idle()
                return False
            self.held.add(key)
            return True

    def release(self, key: int) -> None:
        with self.guard:
            self.held.discard(key)
            assert self.fd is not None
            fcntl.lockf(self.fd, fcntl.LOCK_UN, 1, key)
            self._close_if_idle()

    def _close_if_idle(self) -> None:
        # Closing drops every lock of this process on the file: only when none is held.
        if not self.held and self.fd is not None:
            os.close(self.fd)
            self.fd = None


# Per lock file, for the whole process: two Database objects on one SQLite file (the
# server's and its in-process job runner's) must see each other's holds.
_FILES: dict[Path, _LockFile] = {}


class NamedLocks:
    def __init__(self, url: str) -> None:
        self._engine: AsyncEngine | None = None
        self._file: _LockFile | None = None
        self._held: set[int] = set()  # PostgreSQL and in-memory SQLite
        if not url.startswith("sqlite"):
            # Autocommit: the lock belongs to the session, and no transaction stays open.
            self._engine = create_async_engine(
                url,
                isolation_level="AUTOCOMMIT",
                pool_size=LOCK_POOL_SIZE,
                max_overflow=-1,  # no limit: one connection per lock held
                pool_pre_ping=True,
            )
            return
        database = sqlite_file(url)
        if database is not None:
            path = database.resolve().with_name(database.name + "-named.lock")
            self._file = _FILES.setdefault(path, _LockFile(path))

    @asynccontextmanager
    async def hold(self, name: str) -> AsyncIterator[bool]:
        """Yields True with the lock held until the block ends, or False at once when
        another request of any process holds it."""
        key = lock_key(name)
        if self._file is not None:
            taken = self._file.take(key)
            try:
                yield taken
            finally:
                if taken:
                    self._file.release(key)
            return
        if key in self._held:
            yield False
            return
        self._held.add(key)
        try:
            if self._engine is None:
                yield True
            else:
                async with self._advisory(key) as taken:
                    yield taken
        finally:
            self._held.discard(key)

    @asynccontextmanager
    async def _advisory(self, key: int) -> AsyncIterator[bool]:
        assert self._engine is not None
        connection = await self._engine.connect()
        taken = False
        try:
            taken = bool(await connection.scalar(sa.select(sa.func.pg_try_advisory_lock(key))))
            yield taken
        finally:
            # Shielded: a cancelled request must still give the lock back.
            with anyio.CancelScope(shield=True):
                try:
                    if taken:
                        await connection.scalar(sa.select(sa.func.pg_advisory_unlock(key)))
                except Exception:
                    # A connection that may still hold the lock must not go back to the
                    # pool: invalidated, it is closed, and its session's locks end with it.
                    log.warning("advisory_unlock_failed", key=key, exc_info=True)
                    await connection.invalidate()
                finally:
                    await connection.close()

    async def dispose(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
