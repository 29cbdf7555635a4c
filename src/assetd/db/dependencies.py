"""The request's unit of work: one session, committed before the response is sent."""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import Depends
from sqlalchemy.ext.asyncio import AsyncSession

from assetd.context import AppContext, get_context


async def _unit_of_work(context: AppContext = Depends(get_context)) -> AsyncIterator[AsyncSession]:
    # No connection is taken until the first query, so an upload route can stream its body
    # before the transaction starts.
    async with context.db.session() as session:
        yield session


async def _read_only(context: AppContext = Depends(get_context)) -> AsyncIterator[AsyncSession]:
    # Readers must not take SQLite's write lock (BEGIN IMMEDIATE), or downloads would queue
    # behind each other and behind every upload.
    async with context.db.session(write=False) as session:
        yield session


# scope="function": commit happens before the response goes out, so a client never sees a
# success for a change that then failed to commit.
UnitOfWork = Depends(_unit_of_work, scope="function")
ReadOnly = Depends(_read_only, scope="function")
