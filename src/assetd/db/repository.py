"""Repository bases: every query of a tenant-owned table starts from scoped_statement()."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Generic, TypeVar, cast

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import make_transient_to_detached

from assetd.db.base import Base

M = TypeVar("M", bound=Base)


class RepositoryBase(Generic[M]):
    model: type[M]

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, obj: M) -> M:
        self.session.add(obj)
        await self.session.flush()
        return obj

    @property
    def dialect(self) -> str:
        return self.session.get_bind().dialect.name


class TenantScopedRepository(RepositoryBase[M]):
    """Reads and writes only rows of the tenant passed in; another tenant's row is missing."""

    def scoped_statement(self, tenant_id: str) -> sa.Select[M]:
        column: Any = self.model.tenant_id  # type: ignore[attr-defined]
        return sa.select(self.model).where(column == tenant_id)

    async def get(self, tenant_id: str, obj_id: str) -> M | None:
        column: Any = self.model.id  # type: ignore[attr-defined]
        stmt = self.scoped_statement(tenant_id).where(column == obj_id)
        result = await self.session.execute(stmt)
        return result.scalar_one_or_none()


async def insert_new(session: AsyncSession, *objects: Base) -> None:
    """INSERT new objects with Core statements, one per table (several rows: executemany),
    then attach them to the session as persistent and unchanged, as if flushed.

    For the hot write paths: a unit-of-work flush costs several times the INSERT it runs
    (on an upload, ~0.15 ms of Core statement against ~0.6 ms for the flush of the asset
    and its version). The objects must be new, with their primary keys set; a column
    attribute left unset gets its column's Python default, as a flush would give it. A
    rollback expires them, as it does objects loaded in the transaction (a flushed object
    would be made transient instead).
    """
    rows: dict[sa.Insert, list[dict[str, Any]]] = {}
    for obj in objects:
        insert, columns = _insert_plan(type(obj))
        row = {}
        state = obj.__dict__
        for attribute, column, default in columns:
            if attribute not in state:
                setattr(obj, attribute, default() if default is not None else None)
            row[column] = state[attribute]
        rows.setdefault(insert, []).append(row)
    connection = await session.connection()
    for insert, values in rows.items():
        await connection.execute(insert, values if len(values) > 1 else values[0])
    for obj in objects:
        make_transient_to_detached(obj)
        session.add(obj)


_Default = Callable[[], Any] | None


@functools.cache
def _insert_plan(model: type[Base]) -> tuple[sa.Insert, list[tuple[str, str, _Default]]]:
    """The INSERT into the model's table and, per column: attribute name, column key,
    default factory (None: NULL). One Insert object for good: SQLAlchemy memoizes its
    cache key on it."""
    mapper = sa.inspect(model)
    columns = []
    for prop in mapper.column_attrs:
        column = cast(sa.Column[Any], prop.columns[0])
        columns.append((prop.key, column.key, _default_of(column)))
    return cast(sa.Table, mapper.local_table).insert(), columns


def _default_of(column: sa.Column[Any]) -> _Default:
    default = column.default
    if isinstance(default, sa.ColumnDefault) and default.is_callable:
        # SQLAlchemy wraps zero-argument callables to take an execution context.
        arg = default.arg
        return lambda: arg(None)
    if isinstance(default, sa.ColumnDefault) and default.is_scalar:
        value = default.arg
        return lambda: value
    if default is not None or column.server_default is not None:

        def required() -> Any:
            # A value the database computes would have to be read back: set it instead.
            raise TypeError(f"insert_new cannot default {column}: set it on the object")

        return required
    return None
