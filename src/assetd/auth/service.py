"""API keys: issue, list, revoke, and turn a presented key into a Principal."""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from assetd.auth.models import ApiKey
from assetd.auth.principal import (
    ALL_SCOPES,
    MAX_ROLES,
    ROLE_PATTERN,
    SEED_SCOPE_ALIASES,
    Principal,
    expand_scopes,
)
from assetd.auth.repository import ApiKeyRepository
from assetd.db.base import utcnow
from assetd.errors import InvalidInput, NotFound
from assetd.events.models import EventType
from assetd.events.service import EventService
from assetd.jobs.service import JobService
from assetd.tenants.repository import TenantRepository
from assetd.tenants.service import TenantSnapshot

KEY_PREFIX = "assetd_"
KNOWN_SCOPES = frozenset(ALL_SCOPES) | frozenset(SEED_SCOPE_ALIASES)
_ROLE = re.compile(ROLE_PATTERN)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


class ApiKeyService:
    def __init__(self, session: AsyncSession, jobs: JobService | None = None) -> None:
        self.repository = ApiKeyRepository(session)
        self.events = EventService(session, jobs)
        self.tenants = TenantRepository(session)

    async def create(
        self,
        tenant_id: str,
        *,
        name: str = "",
        scopes: list[str] | tuple[str, ...] = ALL_SCOPES,
        roles: list[str] | tuple[str, ...] = (),
        expires_at: datetime | None = None,
        key: str | None = None,
        actor: str = "system",
    ) -> tuple[ApiKey, str]:
        """The new key row and its secret, which is not kept anywhere and shown only now."""
        unknown = sorted(set(scopes) - KNOWN_SCOPES)
        if unknown:
            raise InvalidInput(f"unknown scopes: {', '.join(unknown)}")
        if len(roles) > MAX_ROLES or any(not _ROLE.fullmatch(r) for r in roles):
            raise InvalidInput(f"at most {MAX_ROLES} roles, each 1 to 100 printable characters")
        if expires_at is not None and expires_at.tzinfo is None:
            expires_at = expires_at.replace(tzinfo=UTC)
        secret = key or generate_key()
        if len(secret) < 16:
            raise InvalidInput("an API key must be at least 16 characters")
        row = ApiKey(
            tenant_id=tenant_id,
            name=name,
            prefix=secret[:14],
            key_hash=hash_key(secret),
            scopes=list(dict.fromkeys(scopes)),
            roles=list(dict.fromkeys(roles)),
            expires_at=expires_at,
        )
        await self.repository.add(row)
        await self.events.record(actor, EventType.key_created, tenant_id=tenant_id, key_id=row.id)
        return row, secret

    async def list_for(self, tenant_id: str) -> list[ApiKey]:
        return await self.repository.list_for(tenant_id)

    async def revoke(self, tenant_id: str, key_id: str, *, actor: str = "system") -> ApiKey:
        row = await self.repository.get(tenant_id, key_id)
        if row is None:
            raise NotFound("API key not found")
        if row.revoked_at is None:
            row.revoked_at = utcnow()
            await self.repository.session.flush()
            await self.events.record(
                actor, EventType.key_revoked, tenant_id=tenant_id, key_id=key_id
            )
        return row

    async def authenticate(self, key: str) -> Principal | None:
        """The principal for a presented key, or None if it is unknown, revoked or expired."""
        row = await self.repository.get_by_hash(hash_key(key))
        if row is None or row.revoked_at is not None:
            return None
        if row.expires_at is not None and row.expires_at <= utcnow():
            return None
        tenant = await self.tenants.get_by_id(row.tenant_id)
        if tenant is None:
            return None
        return Principal(
            tenant=TenantSnapshot.of(tenant),
            subject=f"key:{row.id}",
            scopes=expand_scopes(row.scopes),
            roles=frozenset(row.roles),
            name=row.name or None,
        )
