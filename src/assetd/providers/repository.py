"""All SQL about storage providers."""

from __future__ import annotations

import sqlalchemy as sa

from assetd.db.repository import TenantScopedRepository
from assetd.providers.models import StorageProvider


class StorageProviderRepository(TenantScopedRepository[StorageProvider]):
    model = StorageProvider

    async def name_taken(self, tenant_id: str, name: str, *, except_id: str | None = None) -> bool:
        stmt = sa.select(StorageProvider.id).where(
            StorageProvider.tenant_id == tenant_id, StorageProvider.name == name
        )
        if except_id is not None:
            stmt = stmt.where(StorageProvider.id != except_id)
        return (await self.session.scalar(stmt.limit(1))) is not None

    async def page(self, tenant_id: str, *, limit: int, offset: int) -> list[StorageProvider]:
        stmt = (
            self.scoped_statement(tenant_id)
            .order_by(StorageProvider.name, StorageProvider.id)
            .limit(limit)
            .offset(offset)
        )
        return list((await self.session.execute(stmt)).scalars())

    async def count(self, tenant_id: str) -> int:
        stmt = sa.select(sa.func.count()).where(StorageProvider.tenant_id == tenant_id)
        return int(await self.session.scalar(stmt) or 0)

    async def delete(self, provider: StorageProvider) -> None:
        await self.session.delete(provider)
        await self.session.flush()
