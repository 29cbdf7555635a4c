"""Repository bases: every query of a tenant-owned table starts from scoped_statement()."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

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
