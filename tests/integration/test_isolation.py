"""Tenants are walls: every endpoint answers another tenant's id exactly like a missing one."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.factories import TenantCredentials, upload

pytestmark = pytest.mark.anyio

ENDPOINTS = [
    ("GET", "/v1/assets/{id}", None),
    ("PATCH", "/v1/assets/{id}", {"json": {"name": "stolen"}}),
    ("DELETE", "/v1/assets/{id}", None),
    ("DELETE", "/v1/assets/{id}?purge=true", None),
    ("POST", "/v1/assets/{id}/restore", None),
    ("GET", "/v1/assets/{id}/versions", None),
    ("POST", "/v1/assets/{id}/versions", {"files": {"file": ("x.txt", b"evil")}}),
    ("POST", "/v1/assets/{id}/versions/1/promote", None),
    ("GET", "/v1/assets/{id}/content", None),
    ("HEAD", "/v1/assets/{id}/content", None),
    ("GET", "/v1/assets/{id}/versions/1/content", None),
    ("POST", "/v1/assets/{id}/signed-url", None),
]


@pytest.fixture
async def victim_asset(client: httpx.AsyncClient, tenant: TenantCredentials) -> dict[str, Any]:
    response = await upload(client, tenant, b"secret", "s.txt")
    body: dict[str, Any] = response.json()
    return body


@pytest.mark.parametrize(("method", "path", "kwargs"), ENDPOINTS)
async def test_other_tenant_gets_404_like_a_missing_id(
    client: httpx.AsyncClient,
    tenant: TenantCredentials,
    other_tenant: TenantCredentials,
    victim_asset: dict[str, Any],
    method: str,
    path: str,
    kwargs: dict[str, Any] | None,
) -> None:
    foreign = await client.request(
        method, path.format(id=victim_asset["id"]), headers=other_tenant.headers, **(kwargs or {})
    )
    missing = await client.request(
        method, path.format(id="0" * 24), headers=other_tenant.headers, **(kwargs or {})
    )
    assert foreign.status_code == 404
    assert missing.status_code == 404
    if method != "HEAD":
        assert foreign.json()["title"] == missing.json()["title"]
        assert foreign.json()["detail"].replace(victim_asset["id"], "X") == missing.json()[
            "detail"
        ].replace("0" * 24, "X")
    # And the owner still sees the asset unchanged.
    mine = await client.get(f"/v1/assets/{victim_asset['id']}", headers=tenant.headers)
    assert mine.status_code == 200
    assert mine.json()["name"] == "s.txt"
    assert mine.json()["state"] == "active"
    assert mine.json()["version"] == 1


async def test_lists_never_show_other_tenants_assets(
    client: httpx.AsyncClient,
    tenant: TenantCredentials,
    other_tenant: TenantCredentials,
    victim_asset: dict[str, Any],
) -> None:
    for q in (None, f"id:{victim_asset['id']}", "name:~.*"):
        params = {"q": q} if q else {}
        response = await client.get(
            "/v1/assets", params=params, headers={**other_tenant.headers, "X-Total-Count": "true"}
        )
        assert response.json()["items"] == []
        assert response.headers["x-total-count"] == "0"


async def test_tenant_endpoint_shows_only_own_tenant(
    client: httpx.AsyncClient, tenant: TenantCredentials, other_tenant: TenantCredentials
) -> None:
    mine = (await client.get("/v1/tenant", headers=other_tenant.headers)).json()
    assert mine["slug"] == other_tenant.slug


TEMPLATE_ENDPOINTS = [
    (kind, method, body)
    for kind in ("metadata-templates", "security-templates")
    for method, body in (("GET", None), ("PATCH", {"name": "stolen"}), ("DELETE", None))
]


@pytest.mark.parametrize(("kind", "method", "body"), TEMPLATE_ENDPOINTS)
async def test_other_tenants_template_gets_404_like_a_missing_id(
    client: httpx.AsyncClient,
    tenant: TenantCredentials,
    other_tenant: TenantCredentials,
    kind: str,
    method: str,
    body: dict[str, Any] | None,
) -> None:
    created = await client.post(f"/v1/{kind}", json={"name": "mine"}, headers=tenant.headers)
    victim = created.json()["id"]
    missing_id = "ea6eb24d-adef-4080-bd02-f64f567c437f"
    foreign = await client.request(
        method, f"/v1/{kind}/{victim}", json=body, headers=other_tenant.headers
    )
    missing = await client.request(
        method, f"/v1/{kind}/{missing_id}", json=body, headers=other_tenant.headers
    )
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json()["detail"].replace(victim, "X") == missing.json()["detail"].replace(
        missing_id, "X"
    )
    listing = await client.get(f"/v1/{kind}", headers=other_tenant.headers)
    assert listing.json()["items"] == []
    mine = await client.get(f"/v1/{kind}/{victim}", headers=tenant.headers)
    assert mine.json()["name"] == "mine"
