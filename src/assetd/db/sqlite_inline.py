"""aiosqlite connections that call SQLite on the event loop's thread.

aiosqlite runs every call (execute, fetchall, commit, close, …) on a thread of its own and
wakes the event loop for each result. On this kind of VM one such hand-off costs about
80 µs of CPU, against 1-20 µs for the statements assetd runs, and an upload made ~60 of
them. SQLite in WAL mode with synchronous=NORMAL does no disk I/O at commit and never makes
a reader wait, so its calls are as cheap as any other Python on the loop. The one call
that can wait is taking the write lock (BEGIN IMMEDIATE) while another process holds it:
begin() does that without blocking the loop (see InlineConnection).

SQLAlchemy's aiosqlite dialect is handed these connections through `async_creator`, and
they keep aiosqlite's interface (its own methods run through `_execute`, the dialect's
isolation-level setter through `_tx`). InlineDBAPI, given to the engine as its DBAPI module,
only replaces the dialect's cursor and commit with ones that call sqlite3 without awaiting:
the adapter awaited three times per statement, for calls that never wait here.
"""

from __future__ import annotations

import asyncio
import collections
import fcntl
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, cast

import aiosqlite
import anyio.to_thread
import sqlalchemy as sa
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.util.concurrency import await_

# How long a statement may wait for a lock before SQLite answers "database is locked".
BUSY_TIMEOUT_MS = 30_000


class _InlineQueue:
    """Stands in for aiosqlite's queue to its thread: runs each call as it is queued."""

    def put_nowait(self, item: tuple[asyncio.Future[Any] | None, Callable[[], Any]]) -> None:
        future, function = item
        try:
            result = function()
        except BaseException as exc:  # handed to whoever awaits, as aiosqlite's thread does
            if future is not None and not future.done():
                future.set_exception(exc)
            return
        if future is not None and not future.done():
            future.set_result(result)


class InlineConnection(aiosqlite.Connection):
    """An aiosqlite.Connection without its thread; see the module's docstring.

    `writer_lock`: a file beside the database that writers of every assetd process flock()
    for the length of a write transaction. SQLite's lock still decides; this one only lets
    a waiting process sleep in the kernel and wake the moment the lock is released, where
    polling SQLite would wake it milliseconds late (measured: two server processes then
    made fewer uploads per second than one).
    """

    def __init__(
        self, connector: Callable[[], sqlite3.Connection], writer_lock: Path | None = None
    ) -> None:
        super().__init__(connector, iter_chunk_size=64)
        self._tx = _InlineQueue()  # type: ignore[assignment]
        self._writer_lock = writer_lock
        self._lock_fd: int | None = None
        self._lock_held = False

    def __await__(self) -> Any:
        # aiosqlite starts its thread here; this class has none to start.
        return self._connect().__await__()

    async def _connect(self) -> InlineConnection:
        if self._connection is None:
            self._connection = self._connector()
        return self

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if not self._running or self._connection is None:
            raise ValueError("Connection closed")
        return fn(*args, **kwargs)

    async def begin(self, statement: str) -> None:
        """BEGIN, or BEGIN IMMEDIATE for a writer, without blocking the loop on the lock."""
        connection = self._conn
        if statement != "BEGIN IMMEDIATE":
            # A deferred BEGIN takes no lock, so it never waits: no polling, no PRAGMAs.
            connection.execute(statement)
            return
        await self._take_writer_lock()
        try:
            await _begin_polling(connection, statement)
        except BaseException:
            self._release_writer_lock()
            raise

    async def commit(self) -> None:
        self.commit_now()

    async def rollback(self) -> None:
        self.rollback_now()

    def commit_now(self) -> None:
        try:
            self._conn.commit()
        finally:
            self._release_writer_lock()

    def rollback_now(self) -> None:
        try:
            self._conn.rollback()
        finally:
            self._release_writer_lock()

    async def close(self) -> None:
        self._release_writer_lock()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        await super().close()

    async def _take_writer_lock(self) -> None:
        if self._writer_lock is None:
            return
        if self._lock_fd is None:
            try:
                self._lock_fd = os.open(self._writer_lock, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError:
                self._writer_lock = None  # e.g. a read-only folder: SQLite's lock alone
                return
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            await _wait_for_lock(self._lock_fd)
        self._lock_held = True

    def _release_writer_lock(self) -> None:
        if self._lock_held and self._lock_fd is not None:
            self._lock_held = False
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)


async def _wait_for_lock(fd: int) -> None:
    """flock(fd) on a worker thread, so that the loop runs on while another writer works.

    A cancelled waiter returns at once; its thread, once it gets the lock, gives it straight
    back. It waits on its own duplicate of fd (the same open file, so the same lock): fd may
    be closed meanwhile, and its number reused for another file.
    """
    waiting = os.dup(fd)
    guard = threading.Lock()
    state = {"taken": False, "abandoned": False}

    def wait() -> None:
        try:
            fcntl.flock(waiting, fcntl.LOCK_EX)
            with guard:
                if state["abandoned"]:
                    fcntl.flock(waiting, fcntl.LOCK_UN)
                else:
                    state["taken"] = True
        finally:
            os.close(waiting)

    try:
        await anyio.to_thread.run_sync(wait, abandon_on_cancel=True)
    except BaseException:
        with guard:
            state["abandoned"] = True
            if state["taken"]:
                fcntl.flock(fd, fcntl.LOCK_UN)
        raise


async def _begin_polling(connection: sqlite3.Connection, statement: str) -> None:
    """A BEGIN IMMEDIATE tried with no busy timeout, and again after short sleeps on the loop, while
    a process that does not take the writer lock (another program) holds SQLite's.

    SQLite's own busy handler would block the loop, and it sleeps in steps of up to 100 ms.
    """
    connection.execute("PRAGMA busy_timeout=0")
    try:
        delay = 0.0005
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        while True:
            try:
                connection.execute(statement)
                return
            except sqlite3.OperationalError as exc:
                busy = exc.sqlite_errorcode in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
                if not busy or time.monotonic() > deadline:
                    raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.004)
    finally:
        connection.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")


def sqlite_file(url: str) -> Path | None:
    """The database file a SQLite URL opens, as the dialect reads it; None in memory."""
    sync_url = sa.make_url(url).set(drivername="sqlite")
    args, _ = SQLiteDialect_pysqlite().create_connect_args(sync_url)
    database = str(args[0]) if args else ":memory:"
    if database == ":memory:" or "mode=memory" in database:
        return None
    return Path(database.removeprefix("file:").split("?")[0])


def inline_creator(url: str, *, queue_writers: bool = True) -> Callable[[], Any]:
    """An `async_creator` for create_async_engine() that opens `url` as the aiosqlite
    dialect would (path, uri=, URL query options), on an InlineConnection.

    queue_writers=False leaves out the writer lock file: job runners take SQLite's lock
    whenever it is free, by polling, and so give way to requests, which queue for it. With
    the lock file too, a runner thread in the server's process would be handed the lock in
    turn with requests, then hold it while waiting for the GIL (measured: 124 -> 89
    uploads/s).
    """
    sync_url = sa.make_url(url).set(drivername="sqlite")
    args, kwargs = SQLiteDialect_pysqlite().create_connect_args(sync_url)
    kwargs.setdefault("timeout", BUSY_TIMEOUT_MS / 1000)
    # Pooled connections may be used by any thread that runs the engine's event loop, one
    # at a time: the checks of sqlite3 would only get in the way.
    kwargs["check_same_thread"] = False
    connector = partial(sqlite3.connect, *args, **kwargs)
    path = sqlite_file(url)
    writer_lock = None
    if queue_writers and path is not None:
        writer_lock = path.with_name(path.name + "-writer.lock")

    async def create() -> InlineConnection:
        return await InlineConnection(connector, writer_lock)._connect()

    return create


class _InlineCursor(AsyncAdapt_aiosqlite_cursor):
    """SQLAlchemy's aiosqlite cursor over a plain sqlite3 cursor: one await per statement
    where the adapter made three (cursor, execute with fetch, close), each a greenlet
    round trip, plus an asyncio.Lock, for calls that complete at once here. The one await
    is kept because AsyncConnection.execute insists that a statement awaited something."""

    __slots__ = ()
    _awaitable_cursor_close = False  # a sqlite3 cursor closes synchronously

    def _make_new_cursor(self, connection: Any) -> Any:
        return connection._conn.cursor()

    def _aenter_cursor(self, cursor: Any) -> Any:
        return cursor

    def execute(self, operation: Any, parameters: Any = None) -> Any:
        try:
            return await_(self._execute_now(operation, parameters))
        except Exception as error:
            self._adapt_connection._handle_exception(error)

    async def _execute_now(self, operation: Any, parameters: Any) -> Any:
        cursor: Any = self._cursor  # a sqlite3.Cursor (see _make_new_cursor)
        if parameters is None:
            result = cursor.execute(operation)
        else:
            result = cursor.execute(operation, parameters)
        if cursor.description:
            self._rows = collections.deque(cursor.fetchall())
        return result

    def executemany(self, operation: Any, seq_of_parameters: Any) -> Any:
        try:
            return await_(self._executemany_now(operation, seq_of_parameters))
        except Exception as error:
            self._adapt_connection._handle_exception(error)

    async def _executemany_now(self, operation: Any, seq_of_parameters: Any) -> Any:
        cursor: Any = self._cursor
        return cursor.executemany(operation, seq_of_parameters)


class _InlineAdaptedConnection(AsyncAdapt_aiosqlite_connection):
    """The dialect's connection over an InlineConnection: statements, commit and rollback
    without an await (server-side cursors keep aiosqlite's, which go through _execute)."""

    __slots__ = ()
    _cursor_cls = _InlineCursor

    def commit(self) -> None:
        self._end(InlineConnection.commit_now)

    def rollback(self) -> None:
        self._end(InlineConnection.rollback_now)

    def _end(self, end: Callable[[InlineConnection], None]) -> None:
        connection = cast(InlineConnection, self._connection)
        if connection._connection:  # not closed (the dialect's own check)
            try:
                end(connection)
            except Exception as error:
                self._handle_exception(error)


class InlineDBAPI(AsyncAdapt_aiosqlite_dbapi):
    """The DBAPI module for create_async_engine(module=…) with inline_creator()."""

    def __init__(self) -> None:
        super().__init__(aiosqlite, sqlite3)

    def connect(self, *arg: Any, **kw: Any) -> _InlineAdaptedConnection:
        creator = kw.pop("async_creator_fn")
        return _InlineAdaptedConnection(self, await_(creator(*arg, **kw)))
