"""Webhooks: admin-managed subscriptions, signed deliveries by the job queue, retries, a log."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from assetd.app import create_app
from assetd.auth.principal import READ
from assetd.config import Settings
from assetd.db.base import utcnow
from assetd.db.session import Database
from assetd.events import service as events_service
from assetd.events.models import WebhookSubscription
from assetd.events.repository import WebhookSubscriptionRepository
from tests.factories import TenantCredentials, add_key, bearer, upload
from tests.integration.events.conftest import Receiver
from tests.integration.jobs.conftest import fast_jobs

pytestmark = pytest.mark.anyio


async def subscribe(
    client: httpx.AsyncClient, tenant: TenantCredentials, url: str, **fields: Any
) -> dict[str, Any]:
    body = {"url": url, "eventTypes": ["*"], **fields}
    response = await client.post("/v1/webhooks", json=body, headers=tenant.headers)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


async def deliveries(
    client: httpx.AsyncClient, tenant: TenantCredentials, webhook_id: str
) -> list[dict[str, Any]]:
    response = await client.get(f"/v1/webhooks/{webhook_id}/deliveries", headers=tenant.headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()
    return items


async def wait_until(check: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("timed out")


class TestDelivery:
    async def test_a_change_is_posted_signed_to_the_receiver(
        self, jobs_client: httpx.AsyncClient, tenant: TenantCredentials, receiver: Receiver
    ) -> None:
        hook = await subscribe(jobs_client, tenant, receiver.url, eventTypes=["asset.created"])
        created = await upload(jobs_client, tenant, b"hello", "h.txt")
        asset_id = created.json()["id"]

        async def arrived() -> bool:
            return len(receiver.received()) == 1

        await wait_until(arrived)
        got = receiver.received()[0]
        assert got.is_signed_by(hook["secret"])
        assert not got.is_signed_by("another secret")
        assert got.event == "asset.created"
        body = got.json()
        assert body["type"] == "asset.created"
        assert body["assetId"] == asset_id

        async def logged() -> bool:
            return [d["state"] for d in await deliveries(jobs_client, tenant, hook["id"])] == [
                "delivered"
            ]

        await wait_until(logged)
        (log,) = await deliveries(jobs_client, tenant, hook["id"])
        assert log["id"] == got.delivery
        assert log["statusCode"] == 200
        assert log["attempts"] == 1
        assert log["eventId"] == body["id"]
        assert log["deliveredAt"] is not None
        # Only asset.created was asked for: version.added went nowhere.
        await asyncio.sleep(0.3)
        assert len(receiver.received()) == 1

    async def test_a_failing_receiver_is_retried_then_the_delivery_fails(
        self, jobs_client: httpx.AsyncClient, tenant: TenantCredentials, receiver: Receiver
    ) -> None:
        receiver.status = 500
        hook = await subscribe(jobs_client, tenant, receiver.url, eventTypes=["key.created"])
        created = await jobs_client.post("/v1/keys", json={"name": "x"}, headers=tenant.headers)
        assert created.status_code == 201

        async def failed() -> bool:
            return [d["state"] for d in await deliveries(jobs_client, tenant, hook["id"])] == [
                "failed"
            ]

        await wait_until(failed)
        (log,) = await deliveries(jobs_client, tenant, hook["id"])
        assert log["attempts"] == 3
        assert log["statusCode"] == 500
        assert "500" in log["error"]
        assert len(receiver.received()) == 3
        assert len({r.delivery for r in receiver.received()}) == 1

    async def test_a_receiver_that_recovers_gets_the_delivery(
        self, jobs_client: httpx.AsyncClient, tenant: TenantCredentials, receiver: Receiver
    ) -> None:
        receiver.status = 503
        hook = await subscribe(jobs_client, tenant, receiver.url)
        await jobs_client.post("/v1/keys", json={"name": "x"}, headers=tenant.headers)

        async def tried() -> bool:
            return len(receiver.received()) >= 1

        await wait_until(tried)
        receiver.status = 204

        async def delivered() -> bool:
            return [d["state"] for d in await deliveries(jobs_client, tenant, hook["id"])] == [
                "delivered"
            ]

        await wait_until(delivered)
        (log,) = await deliveries(jobs_client, tenant, hook["id"])
        assert log["attempts"] >= 2
        assert log["statusCode"] == 204
        assert log["error"] is None

    async def test_an_unreachable_receiver_is_logged(
        self, jobs_client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        hook = await subscribe(jobs_client, tenant, "http://127.0.0.1:9/nothing-listens")
        await jobs_client.post("/v1/keys", json={"name": "x"}, headers=tenant.headers)

        async def failed() -> bool:
            return [d["state"] for d in await deliveries(jobs_client, tenant, hook["id"])] == [
                "failed"
            ]

        await wait_until(failed)
        (log,) = await deliveries(jobs_client, tenant, hook["id"])
        assert log["statusCode"] is None
        assert log["error"]

    async def test_an_inactive_subscription_gets_nothing(
        self, jobs_client: httpx.AsyncClient, tenant: TenantCredentials, receiver: Receiver
    ) -> None:
        inactive = await subscribe(jobs_client, tenant, receiver.url, isActive=False)
        paused = await subscribe(jobs_client, tenant, receiver.url)
        patched = await jobs_client.patch(
            f"/v1/webhooks/{paused['id']}", json={"isActive": False}, headers=tenant.headers
        )
        assert patched.status_code == 200
        assert patched.json()["isActive"] is False
        await upload(jobs_client, tenant, b"quiet", "q.txt")
        await asyncio.sleep(1.0)
        assert receiver.received() == []
        assert await deliveries(jobs_client, tenant, inactive["id"]) == []
        assert await deliveries(jobs_client, tenant, paused["id"]) == []

    async def test_another_tenants_events_are_not_delivered(
        self,
        jobs_client: httpx.AsyncClient,
        tenant: TenantCredentials,
        other_tenant: TenantCredentials,
        receiver: Receiver,
    ) -> None:
        await subscribe(jobs_client, other_tenant, receiver.url)
        own = await subscribe(jobs_client, tenant, receiver.url, eventTypes=["asset.created"])
        await upload(jobs_client, tenant, b"mine", "m.txt")

        async def arrived() -> bool:
            return len(receiver.received()) >= 1

        await wait_until(arrived)
        await asyncio.sleep(0.5)
        (got,) = receiver.received()
        assert got.is_signed_by(own["secret"])


class TestActiveWebhookCache:
    """Each process keeps a tenant's active webhooks ACTIVE_WEBHOOKS_TTL_SECONDS: its own
    changes apply at once, another process's within that time."""

    async def test_a_change_through_this_process_applies_at_once(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        await upload(client, tenant, b"before", "b.txt")  # the tenant's (no) webhooks, cached
        hook = await subscribe(client, tenant, "https://hooks.example.com/in")
        await upload(client, tenant, b"after", "a.txt")
        assert len(await deliveries(client, tenant, hook["id"])) == 2  # created, version added

        paused = await client.patch(
            f"/v1/webhooks/{hook['id']}", json={"isActive": False}, headers=tenant.headers
        )
        assert paused.status_code == 200
        await upload(client, tenant, b"paused", "p.txt")
        assert len(await deliveries(client, tenant, hook["id"])) == 2

    async def test_another_process_change_is_seen_after_the_ttl(
        self,
        client: httpx.AsyncClient,
        db: Database,
        tenant: TenantCredentials,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        await upload(client, tenant, b"before", "b.txt")
        # Written as another process would: this process's cache does not hear of it.
        async with db.session() as session:
            hook = WebhookSubscription(
                tenant_id=tenant.id,
                url="https://hooks.example.com/in",
                event_types=["*"],
                secret="s" * 64,
                created_at=utcnow(),
                modified_at=utcnow(),
            )
            await WebhookSubscriptionRepository(session).add(hook)
        await upload(client, tenant, b"cached", "c.txt")
        assert await deliveries(client, tenant, hook.id) == []

        cache = events_service._active_webhooks
        later = events_service.ACTIVE_WEBHOOKS_TTL_SECONDS + 0.1
        monkeypatch.setattr(cache, "clock", lambda: time.monotonic() + later)
        await upload(client, tenant, b"seen", "s.txt")
        assert len(await deliveries(client, tenant, hook.id)) == 2


class TestSubscriptions:
    async def test_crud_and_the_secret_is_shown_once(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        hook = await subscribe(
            client, tenant, "https://example.test/h", eventTypes=["asset.created"]
        )
        assert len(hook["secret"]) == 64
        h = tenant.headers
        listed = (await client.get("/v1/webhooks", headers=h)).json()
        assert [w["id"] for w in listed] == [hook["id"]]
        assert "secret" not in listed[0]
        got = await client.get(f"/v1/webhooks/{hook['id']}", headers=h)
        assert got.status_code == 200
        assert "secret" not in got.json()
        patched = await client.patch(
            f"/v1/webhooks/{hook['id']}",
            json={"url": "http://127.0.0.1:1/x", "eventTypes": ["version.added", "version.added"]},
            headers=h,
        )
        assert patched.json()["eventTypes"] == ["version.added"]
        assert patched.json()["url"] == "http://127.0.0.1:1/x"
        assert (await client.delete(f"/v1/webhooks/{hook['id']}", headers=h)).status_code == 204
        assert (await client.get(f"/v1/webhooks/{hook['id']}", headers=h)).status_code == 404

    async def test_another_tenants_webhook_is_missing(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCredentials,
        other_tenant: TenantCredentials,
    ) -> None:
        hook = await subscribe(client, tenant, "https://example.test/h")
        o = other_tenant.headers
        path = f"/v1/webhooks/{hook['id']}"
        assert (await client.get(path, headers=o)).status_code == 404
        assert (await client.patch(path, json={"isActive": False}, headers=o)).status_code == 404
        assert (await client.delete(path, headers=o)).status_code == 404
        assert (await client.get(path + "/deliveries", headers=o)).status_code == 404
        assert (await client.get("/v1/webhooks", headers=o)).json() == []

    async def test_webhooks_need_the_admin_scope(
        self, client: httpx.AsyncClient, db: Database, tenant: TenantCredentials
    ) -> None:
        reader = bearer(await add_key(db, tenant, READ))
        assert (await client.get("/v1/webhooks", headers=reader)).status_code == 403
        body = {"url": "https://example.test/h", "eventTypes": ["*"]}
        assert (await client.post("/v1/webhooks", json=body, headers=reader)).status_code == 403
        # The audit log is open to readers.
        assert (await client.get("/v1/events", headers=reader)).status_code == 200

    @pytest.mark.parametrize(
        "body",
        [
            {"url": "ftp://example.test/h", "eventTypes": ["*"]},
            {"url": "file:///etc/passwd", "eventTypes": ["*"]},
            {"url": "javascript:alert(1)", "eventTypes": ["*"]},
            {"url": "http://", "eventTypes": ["*"]},
            {"url": "example.test/h", "eventTypes": ["*"]},
            {"url": "http://user:pw@example.test/h", "eventTypes": ["*"]},
            {"url": "http://example.test:99999/h", "eventTypes": ["*"]},
            {"url": "http://exa mple.test/h", "eventTypes": ["*"]},
            {"url": "http://example.test/\x00", "eventTypes": ["*"]},
            {"url": "http://example.test/" + "a" * 3000, "eventTypes": ["*"]},
            {"url": "https://example.test/h", "eventTypes": []},
            {"url": "https://example.test/h", "eventTypes": ["asset.nope"]},
            {"url": "https://example.test/h", "eventTypes": ["*", "asset.created"]},
            {"url": "https://example.test/h", "eventTypes": ["asset.created\x00"]},
            {"url": "https://example.test/h", "eventTypes": ["asset.created"] * 10_000},
            {"url": "https://example.test/h", "eventTypes": ["x" * 100_000]},
            {"url": "https://example.test/h", "eventTypes": "*"},
            {"url": 5, "eventTypes": ["*"]},
            {"eventTypes": ["*"]},
            {"url": "https://example.test/h", "eventTypes": ["*"], "secret": "mine"},
        ],
    )
    async def test_hostile_input_is_refused(
        self, client: httpx.AsyncClient, tenant: TenantCredentials, body: dict[str, Any]
    ) -> None:
        response = await client.post("/v1/webhooks", json=body, headers=tenant.headers)
        assert response.status_code in (400, 422), response.text
        assert (await client.get("/v1/webhooks", headers=tenant.headers)).json() == []

    async def test_hostile_updates_are_refused(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        hook = await subscribe(client, tenant, "https://example.test/h")
        path = f"/v1/webhooks/{hook['id']}"
        for body in (
            {"url": "gopher://x"},
            {"eventTypes": ["bogus"]},
            {"isActive": "maybe"},
            {"url": None, "eventTypes": None, "isActive": None, "extra": 1},
        ):
            response = await client.patch(path, json=body, headers=tenant.headers)
            assert response.status_code in (400, 422), (body, response.text)
        bad_id = await client.get("/v1/webhooks/" + "x" * 100, headers=tenant.headers)
        assert bad_id.status_code == 422


class TestPrivateTargets:
    """With the default ASSETD_WEBHOOK_ALLOW_PRIVATE_TARGETS=false (the test suite's settings
    turn it on for its loopback receivers)."""

    @pytest.fixture
    async def strict_client(
        self, db: Database, settings: Settings
    ) -> AsyncIterator[httpx.AsyncClient]:
        strict = fast_jobs(settings, webhook_allow_private_targets=False, jobs_max_attempts=1)
        application = create_app(strict)
        async with application.router.lifespan_context(application):
            transport = httpx.ASGITransport(app=application)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
                yield c

    @pytest.mark.parametrize(
        "url",
        [
            "http://127.0.0.1:8080/hook",
            "http://[::1]/hook",
            "http://169.254.169.254/latest/meta-data/",
            "http://10.0.0.5/hook",
            "http://[::ffff:192.168.0.1]/hook",
        ],
    )
    async def test_a_url_naming_a_non_public_address_is_refused(
        self, strict_client: httpx.AsyncClient, tenant: TenantCredentials, url: str
    ) -> None:
        body = {"url": url, "eventTypes": ["*"]}
        created = await strict_client.post("/v1/webhooks", json=body, headers=tenant.headers)
        assert created.status_code == 400, created.text
        assert "not a public address" in created.json()["detail"]
        hook = await subscribe(strict_client, tenant, "https://hooks.example.com/in")
        patched = await strict_client.patch(
            f"/v1/webhooks/{hook['id']}", json={"url": url}, headers=tenant.headers
        )
        assert patched.status_code == 400, patched.text
        listed = await strict_client.get("/v1/webhooks", headers=tenant.headers)
        assert [h["url"] for h in listed.json()] == ["https://hooks.example.com/in"]

    async def test_a_name_for_loopback_is_not_delivered_to(
        self, strict_client: httpx.AsyncClient, tenant: TenantCredentials, receiver: Receiver
    ) -> None:
        # The receiver listens on 127.0.0.1; "localhost" names it without the network.
        port = receiver.url.split(":")[2].split("/")[0]
        hook = await subscribe(strict_client, tenant, f"http://localhost:{port}/hook")
        await upload(strict_client, tenant, b"hello", "h.txt")

        async def failed() -> bool:
            logs = await deliveries(strict_client, tenant, hook["id"])
            return bool(logs) and all(d["state"] == "failed" for d in logs)

        await wait_until(failed)
        logs = await deliveries(strict_client, tenant, hook["id"])
        assert all("refused: localhost resolves to" in d["error"] for d in logs), logs
        assert all(d["statusCode"] is None for d in logs)
        assert receiver.received() == []
