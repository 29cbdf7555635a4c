"""Upload sessions and tus on the S3 store: part bytes go from the client straight to S3
(moto's server on 127.0.0.1), never through assetd."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from assetd.app import create_app
from assetd.config import Settings
from assetd.db.session import Database
from assetd.maintenance import check_consistency
from assetd.storage.s3 import S3BlobStorage
from tests.factories import TenantCredentials
from tests.integration.uploads.test_tus import patch_while_another_writes

pytestmark = pytest.mark.anyio

MiB = 1024 * 1024


@pytest.fixture
async def s3_client(
    db: Database, settings: Settings, s3_storage: S3BlobStorage
) -> AsyncIterator[httpx.AsyncClient]:
    app: FastAPI = create_app(settings, storage=s3_storage)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


async def test_parts_go_straight_to_s3_then_complete(
    s3_client: httpx.AsyncClient,
    tenant: TenantCredentials,
    s3_storage: S3BlobStorage,
    s3_server: str,
    db: Database,
) -> None:
    data = os.urandom(2 * 5 * MiB + 999)
    created = await s3_client.post(
        "/v1/uploads",
        json={"filename": "big.bin", "sizeBytes": len(data), "partSizeBytes": 5 * MiB},
        headers=tenant.headers,
    )
    assert created.status_code == 201, created.text
    session = created.json()
    etags = []
    async with httpx.AsyncClient() as direct:
        for part in reversed(session["parts"]):
            # The URL is S3's own presigned UploadPart, not assetd's.
            assert part["url"].startswith(s3_server)
            start = (part["number"] - 1) * 5 * MiB
            chunk = data[start : start + part["sizeBytes"]]
            md5 = base64.b64encode(hashlib.md5(chunk).digest()).decode()
            put = await direct.put(part["url"], content=chunk, headers={"Content-MD5": md5})
            assert put.status_code == 200, put.text
            etags.append({"number": part["number"], "etag": put.headers["etag"]})
    status = await s3_client.get(f"/v1/uploads/{session['id']}", headers=tenant.headers)
    assert status.json()["receivedParts"] == [1, 2, 3]
    done = await s3_client.post(
        f"/v1/uploads/{session['id']}/complete",
        json={
            "parts": sorted(etags, key=lambda p: p["number"]),
            "sha256": hashlib.sha256(data).hexdigest(),
        },
        headers=tenant.headers,
    )
    assert done.status_code == 200, done.text
    asset_id = done.json()["asset"]["id"]
    content = await s3_client.get(f"/v1/assets/{asset_id}/content", headers=tenant.headers)
    assert content.content == data
    assert list(s3_storage.list_uploads()) == []
    assert (await check_consistency(db, s3_storage, verify_hashes=True)).ok


async def test_missing_part_and_wrong_etag_on_s3(
    s3_client: httpx.AsyncClient, tenant: TenantCredentials, s3_storage: S3BlobStorage
) -> None:
    data = os.urandom(5 * MiB + 10)
    created = await s3_client.post(
        "/v1/uploads",
        json={"filename": "b.bin", "sizeBytes": len(data), "partSizeBytes": 5 * MiB},
        headers=tenant.headers,
    )
    session = created.json()
    first = session["parts"][0]
    async with httpx.AsyncClient() as direct:
        await direct.put(first["url"], content=data[: 5 * MiB])
        complete_url = f"/v1/uploads/{session['id']}/complete"
        missing = await s3_client.post(complete_url, headers=tenant.headers)
        assert missing.status_code == 400
        assert "missing parts: 2" in missing.json()["detail"]
        await direct.put(session["parts"][1]["url"], content=data[5 * MiB :])
    wrong = await s3_client.post(
        complete_url,
        json={"parts": [{"number": 1, "etag": '"00"'}, {"number": 2}]},
        headers=tenant.headers,
    )
    assert wrong.status_code == 400
    cancel = await s3_client.delete(f"/v1/uploads/{session['id']}", headers=tenant.headers)
    assert cancel.status_code == 204
    assert list(s3_storage.list_uploads()) == []


async def test_tus_on_s3_across_the_part_minimum(
    s3_client: httpx.AsyncClient, tenant: TenantCredentials, s3_storage: S3BlobStorage
) -> None:
    data = os.urandom(12 * MiB + 3)
    headers = {**tenant.headers, "Tus-Resumable": "1.0.0"}
    created = await s3_client.post(
        "/v1/tus",
        headers={
            **headers,
            "Upload-Length": str(len(data)),
            "Upload-Metadata": "filename " + base64.b64encode(b"t.bin").decode(),
        },
    )
    assert created.status_code == 201, created.text
    location = created.headers["location"]
    offset = 0
    # Chunks that straddle S3's 5 MiB part minimum: the store keeps a tail between requests.
    for size in (3 * MiB, 4 * MiB, 5 * MiB + 3):
        patch = await s3_client.patch(
            location,
            content=data[offset : offset + size],
            headers={
                **headers,
                "Upload-Offset": str(offset),
                "Content-Type": "application/offset+octet-stream",
            },
        )
        assert patch.status_code == 204, patch.text
        offset += size
        assert int(patch.headers["upload-offset"]) == offset
    asset_id = created.headers["x-asset-id"]
    content = await s3_client.get(f"/v1/assets/{asset_id}/content", headers=tenant.headers)
    assert content.content == data
    assert list(s3_storage.list_uploads()) == []


async def test_tus_patch_while_another_writes_is_423_on_s3(
    s3_client: httpx.AsyncClient, tenant: TenantCredentials, s3_storage: S3BlobStorage
) -> None:
    # S3 appends take no lock of their own: before the upload lock, both requests wrote.
    await patch_while_another_writes(s3_client, tenant)
    assert list(s3_storage.list_uploads()) == []
