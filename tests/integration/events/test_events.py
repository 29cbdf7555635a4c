"""The audit log: every change recorded with its actor, listable per tenant with q and cursors."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from assetd.db.session import Database
from assetd.events.models import EventType
from assetd.events.service import EventService
from tests.factories import TenantCredentials, upload

pytestmark = pytest.mark.anyio


async def list_events(
    client: httpx.AsyncClient, tenant: TenantCredentials, **params: Any
) -> httpx.Response:
    return await client.get("/v1/events", params=params, headers=tenant.headers)


async def all_types(
    client: httpx.AsyncClient, tenant: TenantCredentials, **params: Any
) -> list[str]:
    response = await list_events(client, tenant, sort="createdAt", pageSize=1000, **params)
    assert response.status_code == 200, response.text
    return [e["type"] for e in response.json()["items"]]


class TestEventRecording:
    async def test_each_asset_change_is_recorded_with_its_actor(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        created = await upload(client, tenant, b"first", "a.txt")
        assert created.status_code == 201, created.text
        asset = created.json()
        asset_id = asset["id"]
        h = tenant.headers
        assert (
            await client.patch(f"/v1/assets/{asset_id}", json={"name": "b"}, headers=h)
        ).status_code == 200
        added = await client.post(
            f"/v1/assets/{asset_id}/versions", files={"file": ("a.txt", b"second")}, headers=h
        )
        assert added.status_code == 201, added.text
        assert (await client.delete(f"/v1/assets/{asset_id}", headers=h)).status_code == 204
        assert (await client.post(f"/v1/assets/{asset_id}/restore", headers=h)).status_code == 200
        purged = await client.delete(f"/v1/assets/{asset_id}", params={"purge": "true"}, headers=h)
        assert purged.status_code == 204

        response = await list_events(client, tenant, q=f"assetId:{asset_id}", sort="createdAt")
        events = response.json()["items"]
        assert [e["type"] for e in events] == [
            "asset.created",
            "version.added",
            "asset.updated",
            "version.added",
            "asset.trashed",
            "asset.restored",
            "asset.purged",
        ]
        assert {e["actor"] for e in events} == {asset["createdBy"]}
        assert [e["versionNumber"] for e in events if e["type"] == "version.added"] == [1, 2]
        assert events[2]["details"] == {"fields": ["name"]}

    async def test_key_creation_and_revocation_are_recorded(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        created = await client.post("/v1/keys", json={"name": "ci"}, headers=tenant.headers)
        assert created.status_code == 201, created.text
        key_id = created.json()["id"]
        revoked = await client.delete(f"/v1/keys/{key_id}", headers=tenant.headers)
        assert revoked.status_code == 200, revoked.text
        response = await list_events(client, tenant, q=f"keyId:{key_id}", sort="createdAt")
        events = response.json()["items"]
        assert [e["type"] for e in events] == ["key.created", "key.revoked"]
        assert all(e["actor"] and e["actor"] != "system" for e in events)

    async def test_a_failed_change_records_nothing(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        response = await client.patch(
            "/v1/assets/" + "0" * 24, json={"name": "x"}, headers=tenant.headers
        )
        assert response.status_code == 404
        assert "asset.updated" not in await all_types(client, tenant)


class TestEventListing:
    async def test_q_filters_by_type_actor_and_details(
        self, client: httpx.AsyncClient, db: Database, tenant: TenantCredentials
    ) -> None:
        async with db.session() as session:
            events = EventService(session)
            await events.record(
                "alice", EventType.asset_updated, tenant_id=tenant.id, details={"n": 1}
            )
            await events.record(
                "bob", EventType.asset_updated, tenant_id=tenant.id, details={"n": 2}
            )
            await events.record("bob", EventType.asset_trashed, tenant_id=tenant.id)

        async def actors(q: str) -> list[str]:
            response = await list_events(client, tenant, q=q, sort="createdAt")
            assert response.status_code == 200, response.text
            return [e["actor"] for e in response.json()["items"]]

        assert await actors("type:asset.updated") == ["alice", "bob"]
        assert await actors("actor:bob type:asset.trashed") == ["bob"]
        assert await actors("details.n:>=2") == ["bob"]
        assert await actors("type:(asset.trashed,asset.updated) actor:~^al") == ["alice"]
        assert await actors("createdAt:>2000-01-01 actor:nobody") == []

    async def test_cursor_pages_through_every_event_once(
        self, client: httpx.AsyncClient, db: Database, tenant: TenantCredentials
    ) -> None:
        async with db.session() as session:
            for n in range(7):
                await EventService(session).record(
                    f"user{n}", EventType.asset_updated, tenant_id=tenant.id
                )
        seen: list[str] = []
        cursor = None
        for _ in range(10):
            params: dict[str, Any] = {"pageSize": 3, "q": "type:asset.updated"}
            if cursor:
                params["cursor"] = cursor
            page = (await list_events(client, tenant, **params)).json()
            seen += [e["actor"] for e in page["items"]]
            cursor = page["nextCursor"]
            if cursor is None:
                break
        assert seen == [f"user{n}" for n in reversed(range(7))]

    @pytest.mark.parametrize(
        "params",
        [
            {"q": "nosuchfield:1"},
            {"q": "type:\x00"},
            {"q": "details.a..b:1"},
            {"sort": "details"},
            {"cursor": "garbage"},
            {"pageSize": 0},
            {"pageSize": 100000},
            {"q": "x" * 5000},
        ],
    )
    async def test_bad_parameters_get_a_clear_4xx(
        self, client: httpx.AsyncClient, tenant: TenantCredentials, params: dict[str, Any]
    ) -> None:
        response = await list_events(client, tenant, **params)
        assert 400 <= response.status_code < 500, response.text

    async def test_tenants_see_only_their_own_events(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCredentials,
        other_tenant: TenantCredentials,
    ) -> None:
        created = await upload(client, tenant, b"secret", "s.txt")
        asset_id = created.json()["id"]
        assert "asset.created" in await all_types(client, tenant)
        response = await list_events(client, other_tenant, q=f"assetId:{asset_id}")
        assert response.status_code == 200
        assert response.json()["items"] == []

    async def test_anonymous_callers_are_refused(self, client: httpx.AsyncClient) -> None:
        assert (await client.get("/v1/events")).status_code == 401
