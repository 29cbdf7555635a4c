"""Small factories: tenants with keys, and asset uploads through the API."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from assetd.auth.principal import ALL_SCOPES
from assetd.auth.service import ApiKeyService
from assetd.db.session import Database
from assetd.tenants.schemas import TenantCreate
from assetd.tenants.service import TenantService


@dataclass(frozen=True)
class TenantCredentials:
    id: str
    slug: str
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


async def make_tenant(
    db: Database, slug: str, *, scopes: tuple[str, ...] = ALL_SCOPES, **policy: Any
) -> TenantCredentials:
    async with db.session() as session:
        tenant = await TenantService(session).create(TenantCreate(slug=slug, **policy))
        _, key = await ApiKeyService(session).create(tenant.id, name="test", scopes=scopes)
        return TenantCredentials(tenant.id, slug, key)


async def add_key(db: Database, tenant: TenantCredentials, *scopes: str, **kwargs: Any) -> str:
    async with db.session() as session:
        _, key = await ApiKeyService(session).create(tenant.id, scopes=scopes, **kwargs)
        return key


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def upload(
    client: httpx.AsyncClient,
    tenant: TenantCredentials,
    content: bytes,
    filename: str = "file.bin",
    meta: str | None = None,
    **headers: str,
) -> httpx.Response:
    data = {"meta": meta} if meta is not None else None
    return await client.post(
        "/v1/assets",
        files={"file": (filename, content)},
        data=data,
        headers={**tenant.headers, **headers},
    )
