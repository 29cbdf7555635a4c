"""First start: one tenant and one admin key, exactly once, even with racing processes."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import SecretStr

from assetd.auth.service import ApiKeyService
from assetd.config import Settings
from assetd.db.session import Database
from assetd.tenants.bootstrap import bootstrap
from assetd.tenants.service import TenantService

pytestmark = pytest.mark.anyio


async def test_bootstrap_creates_tenant_and_admin_key_once(
    db: Database, settings: Settings
) -> None:
    created = await bootstrap(db, settings)
    assert created is not None
    assert created.tenant_slug == "default"
    assert created.key_was_generated
    async with db.session(write=False) as session:
        principal = await ApiKeyService(session).authenticate(created.api_key)
    assert principal is not None
    assert principal.is_admin
    assert await bootstrap(db, settings) is None


async def test_bootstrap_uses_the_configured_tenant_and_key(
    db: Database, settings: Settings
) -> None:
    configured = settings.model_copy(
        update={
            "bootstrap_tenant": "acmecorp",
            "bootstrap_api_key": SecretStr("assetd_given-key-given-key-given"),
        }
    )
    created = await bootstrap(db, configured)
    assert created is not None
    assert (created.tenant_slug, created.api_key) == (
        "acmecorp",
        "assetd_given-key-given-key-given",
    )
    assert not created.key_was_generated


async def test_racing_first_starts_create_one_tenant(db: Database, settings: Settings) -> None:
    # Two server processes on one empty database: separate engines, started together.
    others = [Database(db.url) for _ in range(3)]
    try:
        results = await asyncio.gather(*(bootstrap(other, settings) for other in others))
    finally:
        for other in others:
            await other.dispose()
    assert sum(result is not None for result in results) == 1
    async with db.session(write=False) as session:
        assert await TenantService(session).count() == 1
