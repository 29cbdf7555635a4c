"""Seed 003: partner upload (private/public), CompanyAsset, GET by key with renditions."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import pyvips

from tests.factories import TenantCredentials
from tests.fixtures.real_files import make_jpeg_with_exif, make_pdf

pytestmark = pytest.mark.anyio

BASE = "/api/v1/partner/asset"


async def partner_upload(
    client: httpx.AsyncClient,
    tenant: TenantCredentials,
    path: Path,
    visibility: str = "private",
    name: str = "Logo",
) -> dict[str, Any]:
    response = await client.post(
        f"{BASE}/upload/{visibility}",
        files={"file": (path.name, path.read_bytes())},
        data={"name": name},
        headers=tenant.headers,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def wait_for_jobs(
    client: httpx.AsyncClient, tenant: TenantCredentials, asset_id: str
) -> None:
    deadline = time.monotonic() + 60
    while True:
        jobs = (await client.get(f"/v1/assets/{asset_id}/jobs", headers=tenant.headers)).json()
        if jobs and all(job["state"] in ("done", "failed") for job in jobs):
            return
        assert time.monotonic() < deadline, jobs
        await asyncio.sleep(0.05)


def local(url: str) -> str:
    return url.removeprefix("http://testserver")


async def test_private_upload_and_every_company_asset_field(
    client: httpx.AsyncClient, tenant: TenantCredentials, tmp_path: Path
) -> None:
    photo = make_jpeg_with_exif(tmp_path, width=640, height=480, orientation=1)
    before = int(time.time() * 1000)
    asset = await partner_upload(client, tenant, photo)
    assert set(asset) == {
        "id", "companyId", "created", "modified", "deleted", "updated", "name", "key", "type",
        "publicURL", "active", "priority", "secured", "thumbURL", "mediumURL", "largeURL",
        "largeX2URL", "origURL", "platformFileUrl",
    }  # fmt: skip
    assert asset["companyId"] == tenant.slug
    assert asset["name"] == "Logo"
    assert asset["type"] == "IMAGE"
    assert asset["secured"] is True
    assert asset["publicURL"] is None
    assert asset["active"] is True
    assert asset["deleted"] is False
    assert asset["created"] >= before - 1000
    assert asset["key"] == asset["id"]
    assert asset["origURL"].endswith(f"{BASE}/{asset['key']}")

    # Private: credentials needed, then the bytes with their type and a 30-day cache.
    assert (await client.get(local(asset["origURL"]))).status_code == 401
    original = await client.get(local(asset["origURL"]), headers=tenant.headers)
    assert original.status_code == 200
    assert original.content == photo.read_bytes()
    assert original.headers["content-type"] == "image/jpeg"
    assert original.headers["cache-control"] == "private, max-age=2592000"

    await wait_for_jobs(client, tenant, asset["id"])
    for field, size in (("thumbURL", 150), ("mediumURL", 480), ("largeURL", 640)):
        rendition = await client.get(local(asset[field]), headers=tenant.headers)
        assert rendition.status_code == 200, (field, rendition.text)
        image = pyvips.Image.new_from_buffer(rendition.content, "")
        assert max(image.width, image.height) == size, field
        assert rendition.headers["content-type"].startswith("image/")


async def test_public_upload_is_served_without_credentials(
    client: httpx.AsyncClient, tenant: TenantCredentials, tmp_path: Path
) -> None:
    pdf = make_pdf(tmp_path)
    asset = await partner_upload(client, tenant, pdf, "public", name="Brochure")
    assert asset["secured"] is False
    assert asset["publicURL"] == asset["origURL"]
    assert asset["type"] == "DOCUMENT"
    response = await client.get(local(asset["publicURL"]))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/pdf"
    assert response.headers["cache-control"] == "public, max-age=2592000"
    await wait_for_jobs(client, tenant, asset["id"])
    thumb = await client.get(local(asset["thumbURL"]))
    assert thumb.status_code == 200, thumb.text


async def test_errors_and_handle_error(
    client: httpx.AsyncClient,
    tenant: TenantCredentials,
    other_tenant: TenantCredentials,
    tmp_path: Path,
) -> None:
    asset = await partner_upload(client, tenant, make_pdf(tmp_path))
    url = local(asset["origURL"])
    theirs = await client.get(url, headers=other_tenant.headers)
    assert theirs.status_code == 404
    assert set(theirs.json()) == {"timestamp", "status", "error", "message", "path"}
    for key in ("0" * 24, "nonsense", "0" * 24 + "-huge", asset["id"] + "-../x"):
        response = await client.get(f"{BASE}/{key}", headers=tenant.headers)
        assert response.status_code == 404, key
    graceful = await client.get(f"{BASE}/{'0' * 24}", params={"handleError": "true"})
    assert graceful.status_code == 200
    assert graceful.headers["content-type"] == "image/png"
    assert graceful.headers["x-error-status"] == "404"
    assert graceful.headers["cache-control"] == "no-store"
    no_file = await client.post(
        f"{BASE}/upload/private", data={"name": "x"}, headers=tenant.headers
    )
    assert no_file.status_code == 400
    anonymous = await client.post(f"{BASE}/upload/public", files={"file": ("a.txt", b"hi")})
    assert anonymous.status_code == 401
    assert anonymous.json()["status"] == 401


async def test_handle_error_header_stays_valid_for_any_key(client: httpx.AsyncClient) -> None:
    # Found by the fuzzer: the error detail quotes the key, and headers must be visible ASCII.
    response = await client.get(f"{BASE}/%0Aé%7F", params={"handleError": "true"})
    assert response.status_code == 200
    assert response.headers["x-error-status"] == "404"
