"""Engines, session factories and the unit of work."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import anyio.to_thread
import sqlalchemy as sa
import structlog
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session
from sqlalchemy.util.concurrency import await_

from assetd.assets.query import register_sqlite_functions
from assetd.db.locks import NamedLocks
from assetd.db.sqlite_inline import InlineConnection, InlineDBAPI, inline_creator

T = TypeVar("T")

log = structlog.get_logger()

# SQLite readers the pools keep connections for; readers beyond that open connections and
# close them again, and on SQLite each is an open and 4 PRAGMAs. The download benchmark runs
# 16 requests at a time.
READ_POOL_SIZE = 20
READ_POOL_OVERFLOW = 20


def _loads_json(text: str | bytes) -> Any:
    # Most JSON columns of a row hold an empty list or object (tags, ref_ids, facts, …);
    # json.loads of those costs more than the rest of the column's processing.
    # psycopg hands bytes, sqlite3 str, and bytes never equal a str.
    if text == "[]" or text == b"[]":
        return []
    if text == "{}" or text == b"{}":
        return {}
    return json.loads(text)


def create_engine(url: str, *, writer: bool = False, background: bool = False) -> AsyncEngine:
    """An async engine; SQLite gets WAL, a busy timeout and explicit transaction control.

    writer=True (SQLite only) makes the engine of one connection that every write
    transaction of this process queues for: SQLite admits one writer at a time anyway, and
    waiting on the pool wakes the next writer the moment the last one commits, where
    SQLite's own busy handler would sleep it in steps of up to 100 ms.

    background=True (SQLite): this process's writers do not queue with the others (see
    sqlite_inline.InlineConnection), they take the lock when nobody holds it.
    """
    if url.startswith("sqlite"):
        # SQLite is called on the loop's thread (sqlite_inline), not through a thread per call.
        creator = inline_creator(url, queue_writers=not background)
        if writer:
            engine = create_async_engine(
                url,
                async_creator=creator,
                module=InlineDBAPI(),
                pool_size=1,
                max_overflow=0,
                pool_timeout=120,
                json_deserializer=_loads_json,
            )
        else:
            engine = create_async_engine(
                url,
                async_creator=creator,
                module=InlineDBAPI(),
                pool_size=READ_POOL_SIZE,
                max_overflow=READ_POOL_OVERFLOW,
                json_deserializer=_loads_json,
            )
        _configure_sqlite(engine.sync_engine, immediate=writer)
        return engine
    return create_async_engine(
        url, pool_size=10, max_overflow=20, pool_pre_ping=True, json_deserializer=_loads_json
    )


def create_sqlite_reader(url: str) -> sa.Engine | None:
    """A blocking engine on the same SQLite file for Database.read(); None for :memory:.

    Autocommit: a lone SELECT is its own consistent read, so no BEGIN/COMMIT round trips.
    """
    sync_url = sa.make_url(url).set(drivername="sqlite")
    if sync_url.database in (None, "", ":memory:") or "mode=memory" in str(sync_url):
        return None
    engine = sa.create_engine(
        sync_url,
        connect_args={"timeout": 30, "check_same_thread": False},
        pool_size=READ_POOL_SIZE,
        max_overflow=READ_POOL_OVERFLOW,
        isolation_level="AUTOCOMMIT",
        json_deserializer=_loads_json,
    )
    _configure_sqlite(engine, immediate=None)
    return engine


def _configure_sqlite(engine: sa.Engine, *, immediate: bool | None) -> None:
    """PRAGMAs and functions on every connection; immediate=None: no "begin" hook."""

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the driver so that "begin" below decides.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()
        register_sqlite_functions(dbapi_connection)

    if immediate is None:
        return

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        # A deferred transaction that reads and then writes can fail with SQLITE_BUSY without
        # waiting when another writer got in between; writers take the lock up front instead.
        statement = "BEGIN IMMEDIATE" if immediate else "BEGIN"
        driver = conn.connection.driver_connection
        if isinstance(driver, InlineConnection):
            # Waiting for another process's write lock must not stop the event loop.
            await_(driver.begin(statement))
        else:
            conn.exec_driver_sql(statement)


class Database:
    """Owns the engines and hands out sessions; built once per app in create_app()."""

    def __init__(self, url: str, *, background: bool = False) -> None:
        """background=True for job runners: on SQLite their writes give way to requests'."""
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.engine = create_engine(url)
        # On PostgreSQL readers and writers share one pool; row locks do the queueing there.
        self.write_engine = (
            create_engine(url, writer=True, background=background)
            if self.is_sqlite
            else self.engine
        )
        self._read = async_sessionmaker(self.engine, expire_on_commit=False)
        self._write = async_sessionmaker(self.write_engine, expire_on_commit=False)
        self.sync_reader = create_sqlite_reader(url) if self.is_sqlite else None
        self.locks = NamedLocks(url)

    async def read(self, fn: Callable[[sa.Connection], T]) -> T:
        """fn(connection) for reads only, outside any transaction, in one go.

        The hot read paths (downloads, lists) use this instead of a session: on SQLite the
        whole read is one thread hop on a blocking connection, where aiosqlite costs a hop
        per call (about 9 per query with BEGIN and COMMIT); on PostgreSQL it runs on the
        event loop in autocommit, which spares the BEGIN and ROLLBACK round trips.
        """
        if self.sync_reader is not None:
            return await anyio.to_thread.run_sync(_run_sync_read, self.sync_reader, fn)
        async with self.engine.connect() as connection:
            if not self.is_sqlite:
                await connection.execution_options(isolation_level="AUTOCOMMIT")
            return await connection.run_sync(fn)

    @asynccontextmanager
    async def session(self, *, write: bool = True) -> AsyncIterator[AsyncSession]:
        """One unit of work: commits when the block ends, rolls back when it raises; then
        runs what after_commit() left for the commits that happened."""
        factory = self._write if write else self._read
        async with factory() as session:
            try:
                yield session
                await session.commit()
            except BaseException:
                await session.rollback()
                raise
            finally:
                actions = session.info.pop(_COMMITTED, None)
                if actions:
                    await anyio.to_thread.run_sync(_run_after_commit, actions)

    async def dispose(self) -> None:
        await self.locks.dispose()
        await self.engine.dispose()
        if self.write_engine is not self.engine:
            await self.write_engine.dispose()
        if self.sync_reader is not None:
            await anyio.to_thread.run_sync(self.sync_reader.dispose)


def after_commit(session: AsyncSession, action: Callable[[], None]) -> None:
    """Run the blocking `action` on a worker thread once `session` commits, before its unit
    of work ends (so before a route answers); forget it if the session rolls back.

    For work that must follow the commit but need not hold the write lock meanwhile, such
    as the fsync that makes a published blob's rename durable.
    """
    info = session.info
    if _PENDING not in info:
        info[_PENDING] = []
        sync_session = session.sync_session
        sa.event.listen(sync_session, "after_commit", _committed)
        sa.event.listen(sync_session, "after_rollback", _rolled_back)
    info[_PENDING].append(action)


_PENDING = "assetd.after_commit.pending"
_COMMITTED = "assetd.after_commit.committed"


def _committed(session: Session) -> None:
    pending = session.info.get(_PENDING)
    if pending:
        session.info.setdefault(_COMMITTED, []).extend(pending)
        pending.clear()


def _rolled_back(session: Session) -> None:
    pending = session.info.get(_PENDING)
    if pending:
        pending.clear()


def _run_after_commit(actions: list[Callable[[], None]]) -> None:
    for action in actions:
        try:
            action()
        except Exception:
            # The change is committed: failing the request now would tell the client it
            # was not. An fsync that fails is for the operator (and `assetd check`) to see.
            log.exception("db.after_commit_failed", action=repr(action))


def _run_sync_read(engine: sa.Engine, fn: Callable[[sa.Connection], T]) -> T:
    with engine.connect() as connection:
        return fn(connection)
