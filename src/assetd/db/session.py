"""Engines, session factories and the unit of work."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from assetd.assets.query import register_sqlite_functions


def create_engine(url: str, *, writer: bool = False) -> AsyncEngine:
    """An async engine; SQLite gets WAL, a busy timeout and explicit transaction control.

    writer=True (SQLite only) makes the engine of one connection that every write
    transaction of this process queues for: SQLite admits one writer at a time anyway, and
    waiting on the pool wakes the next writer the moment the last one commits, where
    SQLite's own busy handler would sleep it in steps of up to 100 ms.
    """
    if url.startswith("sqlite"):
        if writer:
            engine = create_async_engine(
                url, connect_args={"timeout": 30}, pool_size=1, max_overflow=0, pool_timeout=120
            )
        else:
            engine = create_async_engine(url, connect_args={"timeout": 30})
        _configure_sqlite(engine, immediate=writer)
        return engine
    return create_async_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


def _configure_sqlite(engine: AsyncEngine, *, immediate: bool) -> None:
    @sa.event.listens_for(engine.sync_engine, "connect")
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

    @sa.event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        # A deferred transaction that reads and then writes can fail with SQLITE_BUSY without
        # waiting when another writer got in between; writers take the lock up front instead.
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


class Database:
    """Owns the engines and hands out sessions; built once per app in create_app()."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.engine = create_engine(url)
        # On PostgreSQL readers and writers share one pool; row locks do the queueing there.
        self.write_engine = create_engine(url, writer=True) if self.is_sqlite else self.engine
        self._read = async_sessionmaker(self.engine, expire_on_commit=False)
        self._write = async_sessionmaker(self.write_engine, expire_on_commit=False)

    @asynccontextmanager
    async def session(self, *, write: bool = True) -> AsyncIterator[AsyncSession]:
        """One unit of work: commits when the block ends, rolls back when it raises."""
        factory = self._write if write else self._read
        async with factory() as session:
            try:
                yield session
                await session.commit()
            except BaseException:
                await session.rollback()
                raise

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self.write_engine is not self.engine:
            await self.write_engine.dispose()
