"""Packages on the S3 blob store (moto on 127.0.0.1): the zip is read by ranged GETs."""

from __future__ import annotations

import asyncio
import io
import time
import zipfile
from pathlib import Path

import httpx
import pytest

from assetd.db.session import Database
from assetd.maintenance import check_consistency
from assetd.storage.s3 import S3BlobStorage
from tests.factories import TenantCredentials
from tests.integration.packages.conftest import PackageBuilder, install, jpeg, upload_package

pytestmark = pytest.mark.anyio


async def jobs_settled(client: httpx.AsyncClient, headers: dict[str, str], asset_id: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        response = await client.get(f"/v1/assets/{asset_id}/jobs", headers=headers)
        assert response.status_code == 200, response.text
        jobs = response.json()
        if jobs and all(job["state"] in ("done", "failed") for job in jobs):
            return
        assert time.monotonic() < deadline, jobs
        await asyncio.sleep(0.05)


async def test_report_install_export_and_refusal_on_s3(
    s3_client: httpx.AsyncClient,
    tenant: TenantCredentials,
    s3_storage: S3BlobStorage,
    db: Database,
    tmp_path: Path,
) -> None:
    h = tenant.headers
    builder = PackageBuilder()
    builder.add("0190aa00000000000000f001", jpeg(tmp_path, 640, 480), "photo.jpg", type="image")
    builder.add("0190aa00000000000000f002", b"#!/bin/sh\n", "run.sh", type="script")
    uploaded = await upload_package(s3_client, h, builder.zip())
    assert uploaded.status_code == 201, uploaded.text
    assert uploaded.json()["report"]["status"] == "READY"
    done = await install(s3_client, h, uploaded.json()["id"])
    assert done.status_code == 200, done.text

    exported = await s3_client.post(
        "/v1/packages/export", json={"q": "type:(image,script)"}, headers=h
    )
    assert exported.status_code == 200, exported.text
    with zipfile.ZipFile(io.BytesIO(exported.content)) as archive:
        assert archive.testzip() is None
        assert len(archive.namelist()) == 3

    # The photo's renditions are made in the background and land in the store too.
    await jobs_settled(s3_client, h, "0190aa00000000000000f001")
    before = sorted(info.key for info in s3_storage.list())
    refused = await upload_package(s3_client, h, b"PK\x05\x06" + bytes(18))
    assert refused.status_code == 422
    assert sorted(info.key for info in s3_storage.list()) == before
    report = await check_consistency(db, s3_storage, verify_hashes=True)
    assert report.ok, report
