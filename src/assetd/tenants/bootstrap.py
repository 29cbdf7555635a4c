"""First start: a tenant and an admin key, so a new install is usable at once."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError

from assetd.auth.principal import ALL_SCOPES
from assetd.auth.service import ApiKeyService
from assetd.config import Settings
from assetd.db.session import Database
from assetd.tenants.schemas import TenantCreate
from assetd.tenants.service import TenantService

DEFAULT_TENANT = "default"


@dataclass(frozen=True)
class Bootstrapped:
    tenant_slug: str
    api_key: str
    key_was_generated: bool


async def bootstrap(db: Database, settings: Settings) -> Bootstrapped | None:
    """Create the first tenant and admin key when the database has no tenant; else None."""
    try:
        return await _bootstrap(db, settings)
    except IntegrityError:
        # Another server process bootstrapped the same empty database a moment earlier.
        return None


async def _bootstrap(db: Database, settings: Settings) -> Bootstrapped | None:
    async with db.session() as session:
        tenants = TenantService(session)
        if await tenants.count() > 0:
            return None
        slug = settings.bootstrap_tenant or DEFAULT_TENANT
        tenant = await tenants.create(TenantCreate(slug=slug, name=slug))
        given = (
            settings.bootstrap_api_key.get_secret_value() if settings.bootstrap_api_key else None
        )
        _, secret = await ApiKeyService(session).create(
            tenant.id, name="bootstrap admin", scopes=ALL_SCOPES, key=given
        )
        return Bootstrapped(slug, secret, key_was_generated=given is None)
