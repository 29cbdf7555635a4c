"""The API end to end on the S3 blob store (moto's S3 server on 127.0.0.1)."""

from __future__ import annotations

import hashlib
import os

import httpx
import pytest

from assetd.db.session import Database
from assetd.maintenance import check_consistency, collect_garbage
from assetd.storage.s3 import S3BlobStorage
from tests.factories import TenantCredentials, make_tenant, upload

pytestmark = pytest.mark.anyio


async def test_large_upload_goes_through_s3_multipart_and_reads_back(
    s3_client: httpx.AsyncClient, tenant: TenantCredentials, s3_storage: S3BlobStorage, db: Database
) -> None:
    content = os.urandom(20 * 1024 * 1024 + 5)
    response = await upload(s3_client, tenant, content, "big.bin")
    assert response.status_code == 201, response.text
    asset = response.json()
    assert asset["sha256"] == hashlib.sha256(content).hexdigest()
    whole = await s3_client.get(f"/v1/assets/{asset['id']}/content", headers=tenant.headers)
    assert whole.content == content
    ranged = await s3_client.get(
        f"/v1/assets/{asset['id']}/content",
        headers={**tenant.headers, "Range": "bytes=8388600-8388700"},
    )
    assert ranged.status_code == 206
    assert ranged.content == content[8388600:8388701]
    assert [i.key for i in s3_storage.list()] == [
        f"{tenant.id}/{asset['sha256'][:2]}/{asset['sha256'][2:]}"
    ]
    assert list(s3_storage.list_staging()) == []
    report = await check_consistency(db, s3_storage, verify_hashes=True)
    assert report.ok


async def test_refused_uploads_leave_nothing_in_the_bucket(
    s3_client: httpx.AsyncClient, db: Database, s3_storage: S3BlobStorage
) -> None:
    small = await make_tenant(db, "small", max_file_size_bytes=9 * 1024 * 1024)
    too_big = await upload(s3_client, small, os.urandom(10 * 1024 * 1024), "big.bin")
    assert too_big.status_code == 413
    mismatch = await upload(
        s3_client, small, os.urandom(100), "x.bin", **{"X-Checksum-Sha256": "0" * 64}
    )
    assert mismatch.status_code == 400
    assert list(s3_storage.list()) == []
    assert list(s3_storage.list_staging()) == []


async def test_dedup_purge_and_gc_on_s3(
    s3_client: httpx.AsyncClient, tenant: TenantCredentials, s3_storage: S3BlobStorage, db: Database
) -> None:
    content = os.urandom(1000)
    first = (await upload(s3_client, tenant, content, "a.bin")).json()
    second = (await upload(s3_client, tenant, content, "b.bin")).json()
    assert len(list(s3_storage.list())) == 1
    for asset in (first, second):
        response = await s3_client.delete(
            f"/v1/assets/{asset['id']}?purge=true", headers=tenant.headers
        )
        assert response.status_code == 204
    report = await collect_garbage(db, s3_storage, grace_seconds=0)
    assert report.released_blobs_deleted == 1
    assert list(s3_storage.list()) == []
