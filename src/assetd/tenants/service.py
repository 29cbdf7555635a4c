"""Tenants and their policies."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from assetd.errors import Conflict, InvalidInput, NotFound
from assetd.tenants.models import TENANT_SLUG_PATTERN, Tenant
from assetd.tenants.repository import TenantRepository
from assetd.tenants.schemas import TenantCreate, TenantUpdate

_SLUG = re.compile(TENANT_SLUG_PATTERN)


@dataclass(frozen=True)
class TenantSnapshot:
    """A tenant's identity and policies, detached from any session (cached with principals)."""

    id: str
    slug: str
    max_file_size_bytes: int | None
    allowed_extensions: tuple[str, ...] | None
    allowed_types: tuple[str, ...] | None
    quota_bytes: int | None

    @classmethod
    def of(cls, tenant: Tenant) -> TenantSnapshot:
        return cls(
            id=tenant.id,
            slug=tenant.slug,
            max_file_size_bytes=tenant.max_file_size_bytes,
            allowed_extensions=_normalized(tenant.allowed_extensions),
            allowed_types=_normalized(tenant.allowed_types),
            quota_bytes=tenant.quota_bytes,
        )


def _normalized(values: list[str] | None) -> tuple[str, ...] | None:
    if values is None:
        return None
    return tuple(v.lower().lstrip(".") for v in values)


class TenantService:
    def __init__(self, session: AsyncSession) -> None:
        self.repository = TenantRepository(session)

    async def create(self, data: TenantCreate) -> Tenant:
        if not _SLUG.fullmatch(data.slug):
            raise InvalidInput(f"tenant slug must match {TENANT_SLUG_PATTERN}")
        if await self.repository.get_by_slug(data.slug):
            raise Conflict(f"tenant {data.slug!r} already exists")
        tenant = Tenant(slug=data.slug, name=data.name or data.slug, used_bytes=0)
        _apply_policy(tenant, data.model_dump(exclude_unset=True))
        return await self.repository.add(tenant)

    async def get(self, tenant_id: str) -> Tenant:
        tenant = await self.repository.get_by_id(tenant_id)
        if tenant is None:
            raise NotFound("tenant not found")
        return tenant

    async def get_by_slug(self, slug: str) -> Tenant:
        tenant = await self.repository.get_by_slug(slug)
        if tenant is None:
            raise NotFound(f"tenant {slug!r} not found")
        return tenant

    async def find_by_slug(self, slug: str) -> Tenant | None:
        """The tenant, or None: for callers that must answer "not found" in their own words."""
        return await self.repository.get_by_slug(slug)

    async def find_id(self, slug: str) -> str | None:
        tenant = await self.find_by_slug(slug)
        return tenant.id if tenant is not None else None

    async def used_bytes(self, tenant_id: str) -> int:
        tenant = await self.repository.get_by_id(tenant_id)
        return tenant.used_bytes if tenant is not None else 0

    async def update(self, tenant_id: str, data: TenantUpdate) -> Tenant:
        tenant = await self.get(tenant_id)
        changes = data.model_dump(exclude_unset=True)
        if changes.get("name") is not None:
            tenant.name = changes.pop("name")
        changes.pop("name", None)
        _apply_policy(tenant, changes)
        await self.repository.session.flush()
        return tenant

    async def list_all(self) -> list[Tenant]:
        return await self.repository.list_all()

    async def count(self) -> int:
        return await self.repository.count()


def _apply_policy(tenant: Tenant, changes: dict[str, object]) -> None:
    for field in ("max_file_size_bytes", "allowed_extensions", "allowed_types", "quota_bytes"):
        if field in changes:
            setattr(tenant, field, changes[field])
