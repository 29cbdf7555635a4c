"""Upload → extraction job (in-process worker) → facts on version and asset → facts.* in q."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.factories import TenantCredentials, upload
from tests.fixtures.real_files import (
    make_apk,
    make_corrupt_pdf,
    make_jpeg_with_exif,
    make_msi,
    make_pdf,
)

pytestmark = pytest.mark.anyio


async def settled_jobs(
    client: httpx.AsyncClient, tenant: TenantCredentials, asset_id: str
) -> list[dict[str, Any]]:
    """The asset's extraction jobs once none is pending or running (the in-process worker
    runs them)."""
    deadline = time.monotonic() + 30
    while True:
        response = await client.get(f"/v1/assets/{asset_id}/jobs", headers=tenant.headers)
        assert response.status_code == 200, response.text
        everything: list[dict[str, Any]] = response.json()
        # Renditions have their own tests (tests/integration/renditions).
        jobs = [job for job in everything if job["kind"] == "extract"]
        if jobs and all(job["state"] in ("done", "failed") for job in jobs):
            return jobs
        assert time.monotonic() < deadline, jobs
        await asyncio.sleep(0.05)


async def uploaded(
    client: httpx.AsyncClient, tenant: TenantCredentials, path: Path
) -> dict[str, Any]:
    response = await upload(client, tenant, path.read_bytes(), path.name)
    assert response.status_code == 201, response.text
    asset: dict[str, Any] = response.json()
    jobs = await settled_jobs(client, tenant, asset["id"])
    assert [(job["kind"], job["state"]) for job in jobs] == [("extract", "done")], jobs
    got = await client.get(f"/v1/assets/{asset['id']}", headers=tenant.headers)
    result: dict[str, Any] = got.json()
    return result


async def test_image_facts_are_extracted_and_queryable(
    client: httpx.AsyncClient, tenant: TenantCredentials, tmp_path: Path
) -> None:
    photo = make_jpeg_with_exif(tmp_path, width=64, height=48, orientation=6)
    asset = await uploaded(client, tenant, photo)
    facts = asset["facts"]
    assert (facts["width"], facts["height"], facts["orientation"]) == (64, 48, 6)
    assert facts["camera"]["make"] == "Canon"
    versions = await client.get(f"/v1/assets/{asset['id']}/versions", headers=tenant.headers)
    assert versions.json()[0]["facts"] == facts
    for q, found in (
        ("facts.width:64", True),
        ("facts.width:>100", False),
        ("facts.camera.make:Canon", True),
        ("facts.orientation:6 type:image", True),
    ):
        page = await client.get("/v1/assets", params={"q": q}, headers=tenant.headers)
        assert page.status_code == 200, page.text
        assert ([a["id"] for a in page.json()["items"]] == [asset["id"]]) is found, q


async def test_apk_msi_and_pdf_facts(
    client: httpx.AsyncClient, tenant: TenantCredentials, tmp_path: Path
) -> None:
    for name in ("apk", "msi"):
        (tmp_path / name).mkdir()
    apk = await uploaded(client, tenant, make_apk(tmp_path / "apk"))
    assert apk["type"] == "app"
    assert apk["facts"]["packageName"] == "com.example.demo"
    assert apk["facts"]["versionCode"] == 42
    msi = await uploaded(client, tenant, make_msi(tmp_path / "msi"))
    assert msi["facts"]["productName"] == "Demo Product"
    assert msi["facts"]["manufacturer"] == "Example Corp"
    pdf = await uploaded(client, tenant, make_pdf(tmp_path, pages=3, title="Report"))
    assert (pdf["facts"]["pages"], pdf["facts"]["title"]) == (3, "Report")
    page = await client.get(
        "/v1/assets",
        params={"q": "facts.packageName:com.example.demo"},
        headers=tenant.headers,
    )
    assert [a["id"] for a in page.json()["items"]] == [apk["id"]]


async def test_a_corrupt_file_fails_its_job_with_the_error_and_the_server_goes_on(
    client: httpx.AsyncClient, tenant: TenantCredentials, tmp_path: Path
) -> None:
    broken = make_corrupt_pdf(tmp_path)
    response = await upload(client, tenant, broken.read_bytes(), "broken.pdf")
    assert response.status_code == 201, response.text
    jobs = await settled_jobs(client, tenant, response.json()["id"])
    assert jobs[0]["state"] == "failed"
    assert jobs[0]["error"]
    # The next upload is processed as usual.
    (tmp_path / "ok").mkdir()
    await uploaded(client, tenant, make_pdf(tmp_path / "ok"))


async def test_a_type_without_facts_gets_no_extract_job(
    client: httpx.AsyncClient, tenant: TenantCredentials
) -> None:
    response = await upload(client, tenant, bytes(range(256)) * 40, "opaque.bin")
    assert response.status_code == 201, response.text
    asset = response.json()

    listed = await client.get(f"/v1/assets/{asset['id']}/jobs", headers=tenant.headers)

    assert listed.status_code == 200, listed.text
    assert [job["kind"] for job in listed.json()] == []
    assert asset["facts"] == {}


async def test_jobs_of_another_tenants_asset_are_missing(
    client: httpx.AsyncClient,
    tenant: TenantCredentials,
    other_tenant: TenantCredentials,
    tmp_path: Path,
) -> None:
    asset = await uploaded(client, tenant, make_pdf(tmp_path))
    response = await client.get(f"/v1/assets/{asset['id']}/jobs", headers=other_tenant.headers)
    assert response.status_code == 404
