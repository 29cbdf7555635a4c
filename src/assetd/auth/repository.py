from __future__ import annotations

import sqlalchemy as sa

from assetd.auth.models import ApiKey
from assetd.db.repository import TenantScopedRepository


class ApiKeyRepository(TenantScopedRepository[ApiKey]):
    model = ApiKey

    # cross-tenant: the key is what tells us the tenant.
    async def get_by_hash(self, key_hash: str) -> ApiKey | None:
        result = await self.session.execute(sa.select(ApiKey).where(ApiKey.key_hash == key_hash))
        return result.scalar_one_or_none()

    async def list_for(self, tenant_id: str) -> list[ApiKey]:
        stmt = self.scoped_statement(tenant_id).order_by(ApiKey.created_at, ApiKey.id)
        return list((await self.session.execute(stmt)).scalars())
