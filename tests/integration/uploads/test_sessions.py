"""Upload sessions on the local store: presigned parts through assetd, complete, cancel."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
from datetime import timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from assetd.db.base import utcnow
from assetd.db.session import Database
from assetd.storage.local import LocalBlobStorage
from assetd.uploads.models import UploadSession
from tests.factories import TenantCredentials, make_tenant

pytestmark = pytest.mark.anyio

MiB = 1024 * 1024
PART = 5 * MiB


async def start(
    client: httpx.AsyncClient, tenant: TenantCredentials, **body: Any
) -> dict[str, Any]:
    body.setdefault("filename", "big.bin")
    response = await client.post("/v1/uploads", json=body, headers=tenant.headers)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def put_parts(
    client: httpx.AsyncClient, session: dict[str, Any], data: bytes
) -> list[dict[str, Any]]:
    parts = []
    for target in session["parts"]:
        start_at = (target["number"] - 1) * session["partSizeBytes"]
        chunk = data[start_at : start_at + target["sizeBytes"]]
        response = await client.put(target["url"], content=chunk)
        assert response.status_code == 200, response.text
        parts.append({"number": target["number"], "etag": response.headers["etag"]})
    return parts


def staged_uploads(storage: LocalBlobStorage) -> list[str]:
    return [info.key for info in storage.list_uploads()]


async def test_parts_in_any_order_complete_into_a_new_asset(
    client: httpx.AsyncClient, tenant: TenantCredentials, storage: LocalBlobStorage
) -> None:
    data = os.urandom(2 * PART + 12345)
    session = await start(
        client,
        tenant,
        sizeBytes=len(data),
        partSizeBytes=PART,
        sha256=hashlib.sha256(data).hexdigest(),
        asset={"name": "Big one", "tags": ["x"]},
    )
    assert session["partCount"] == 3
    assert [p["sizeBytes"] for p in session["parts"]] == [PART, PART, 12345]
    # The asset exists at once, but has no content until complete.
    asset_id = session["assetId"]
    got = await client.get(f"/v1/assets/{asset_id}", headers=tenant.headers)
    assert got.json()["name"] == "Big one"
    assert got.json()["version"] is None
    content = await client.get(f"/v1/assets/{asset_id}/content", headers=tenant.headers)
    assert content.status_code == 404

    targets = session["parts"]
    etags = {}
    # Out of order and in parallel.
    responses = await asyncio.gather(
        *(
            client.put(
                t["url"],
                content=data[(t["number"] - 1) * PART : (t["number"] - 1) * PART + t["sizeBytes"]],
            )
            for t in reversed(targets)
        )
    )
    for target, response in zip(reversed(targets), responses, strict=True):
        assert response.status_code == 200, response.text
        etags[target["number"]] = response.headers["etag"]
        start_at = (target["number"] - 1) * PART
        part = data[start_at : start_at + target["sizeBytes"]]
        assert response.headers["etag"] == f'"{hashlib.md5(part).hexdigest()}"'

    status = await client.get(f"/v1/uploads/{session['id']}", headers=tenant.headers)
    assert status.json()["receivedParts"] == [1, 2, 3]

    done = await client.post(
        f"/v1/uploads/{session['id']}/complete",
        json={"parts": [{"number": n, "etag": e} for n, e in sorted(etags.items())]},
        headers=tenant.headers,
    )
    assert done.status_code == 200, done.text
    result = done.json()
    assert result["upload"]["state"] == "completed"
    assert result["version"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert result["version"]["md5"] == hashlib.md5(data).hexdigest()
    assert result["asset"]["version"] == 1
    assert result["asset"]["sizeBytes"] == len(data)
    content = await client.get(f"/v1/assets/{asset_id}/content", headers=tenant.headers)
    assert content.status_code == 200
    assert content.content == data
    assert staged_uploads(storage) == []


async def test_small_file_is_one_put_and_a_new_version(
    client: httpx.AsyncClient, tenant: TenantCredentials
) -> None:
    first = await client.post(
        "/v1/assets", files={"file": ("a.txt", b"old")}, headers=tenant.headers
    )
    asset_id = first.json()["id"]
    session = await start(client, tenant, filename="a.txt", sizeBytes=3, assetId=asset_id)
    assert len(session["parts"]) == 1
    await put_parts(client, session, b"new")
    done = await client.post(f"/v1/uploads/{session['id']}/complete", headers=tenant.headers)
    assert done.status_code == 200, done.text
    assert done.json()["version"]["number"] == 2
    content = await client.get(f"/v1/assets/{asset_id}/content", headers=tenant.headers)
    assert content.content == b"new"


async def test_empty_file(client: httpx.AsyncClient, tenant: TenantCredentials) -> None:
    session = await start(client, tenant, filename="empty.txt", sizeBytes=0)
    await put_parts(client, session, b"")
    done = await client.post(f"/v1/uploads/{session['id']}/complete", headers=tenant.headers)
    assert done.status_code == 200, done.text
    assert done.json()["version"]["sizeBytes"] == 0


async def test_resent_part_replaces_the_old_one(
    client: httpx.AsyncClient, tenant: TenantCredentials
) -> None:
    session = await start(client, tenant, sizeBytes=6)
    url = session["parts"][0]["url"]
    assert (await client.put(url, content=b"wrong!")).status_code == 200
    assert (await client.put(url, content=b"right!")).status_code == 200
    done = await client.post(f"/v1/uploads/{session['id']}/complete", headers=tenant.headers)
    content = await client.get(
        f"/v1/assets/{done.json()['asset']['id']}/content", headers=tenant.headers
    )
    assert content.content == b"right!"


async def test_part_checksums_are_verified(
    client: httpx.AsyncClient, tenant: TenantCredentials
) -> None:
    session = await start(client, tenant, sizeBytes=5)
    url = session["parts"][0]["url"]
    good_md5 = base64.b64encode(hashlib.md5(b"hello").digest()).decode()
    bad_md5 = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    good_sha = base64.b64encode(hashlib.sha256(b"hello").digest()).decode()
    bad_sha = base64.b64encode(hashlib.sha256(b"other").digest()).decode()
    wrong = await client.put(url, content=b"hello", headers={"Content-MD5": bad_md5})
    assert wrong.status_code == 400
    assert "MD5" in wrong.json()["detail"]
    wrong = await client.put(url, content=b"hello", headers={"x-amz-checksum-sha256": bad_sha})
    assert wrong.status_code == 400
    assert "SHA-256" in wrong.json()["detail"]
    garbage = await client.put(url, content=b"hello", headers={"Content-MD5": "%%%"})
    assert garbage.status_code == 400
    status = await client.get(f"/v1/uploads/{session['id']}", headers=tenant.headers)
    assert status.json()["receivedParts"] == []  # a refused part is not there
    ok = await client.put(
        url,
        content=b"hello",
        headers={"Content-MD5": good_md5, "x-amz-checksum-sha256": good_sha},
    )
    assert ok.status_code == 200


async def test_oversized_and_undersized_parts_are_refused(
    client: httpx.AsyncClient, tenant: TenantCredentials
) -> None:
    data = os.urandom(PART + 10)
    session = await start(client, tenant, sizeBytes=len(data), partSizeBytes=PART)
    first, last = session["parts"]
    too_big = await client.put(last["url"], content=b"x" * 11)
    assert too_big.status_code == 413
    too_small = await client.put(first["url"], content=data[:100])
    assert too_small.status_code == 400
    await client.put(first["url"], content=data[:PART])
    incomplete = await client.post(f"/v1/uploads/{session['id']}/complete", headers=tenant.headers)
    assert incomplete.status_code == 400
    assert "missing parts: 2" in incomplete.json()["detail"]
    # The oversized last part did not spill into anything: send it right and finish.
    await client.put(last["url"], content=data[PART:])
    done = await client.post(f"/v1/uploads/{session['id']}/complete", headers=tenant.headers)
    assert done.status_code == 200
    content = await client.get(
        f"/v1/assets/{done.json()['asset']['id']}/content", headers=tenant.headers
    )
    assert content.content == data


async def test_wrong_parts_list_and_sha256_on_complete(
    client: httpx.AsyncClient, tenant: TenantCredentials, storage: LocalBlobStorage
) -> None:
    session = await start(client, tenant, sizeBytes=4)
    parts = await put_parts(client, session, b"abcd")
    complete_url = f"/v1/uploads/{session['id']}/complete"
    for body in (
        {"parts": [{"number": 1, "etag": '"0000"'}]},
        {"parts": [{"number": 1}, {"number": 1}]},
        {"parts": [{"number": 2}]},
        {"parts": []},
    ):
        response = await client.post(complete_url, json=body, headers=tenant.headers)
        assert response.status_code == 400, body
    assert (
        await client.post(complete_url, json={"parts": [{"number": 0}]}, headers=tenant.headers)
    ).status_code == 422
    # A wrong whole-file SHA-256 fails the session: nothing is left.
    wrong = await client.post(
        complete_url, json={"parts": parts, "sha256": "0" * 64}, headers=tenant.headers
    )
    assert wrong.status_code == 400
    assert "SHA-256" in wrong.json()["detail"]
    status = await client.get(f"/v1/uploads/{session['id']}", headers=tenant.headers)
    assert status.json()["state"] == "failed"
    assert status.json()["assetId"] is None  # the asset it made is gone again
    assert staged_uploads(storage) == []
    again = await client.post(complete_url, headers=tenant.headers)
    assert again.status_code == 410


async def test_complete_twice_and_cancel_after_complete(
    client: httpx.AsyncClient, tenant: TenantCredentials
) -> None:
    session = await start(client, tenant, sizeBytes=2)
    await put_parts(client, session, b"hi")
    url = f"/v1/uploads/{session['id']}/complete"
    assert (await client.post(url, headers=tenant.headers)).status_code == 200
    assert (await client.post(url, headers=tenant.headers)).status_code == 409
    cancel = await client.delete(f"/v1/uploads/{session['id']}", headers=tenant.headers)
    assert cancel.status_code == 409
    asset = await client.get(f"/v1/assets/{session['assetId']}", headers=tenant.headers)
    assert asset.status_code == 200


async def test_concurrent_completes_make_one_version(
    client: httpx.AsyncClient, tenant: TenantCredentials
) -> None:
    session = await start(client, tenant, sizeBytes=2)
    await put_parts(client, session, b"hi")
    url = f"/v1/uploads/{session['id']}/complete"
    responses = await asyncio.gather(*(client.post(url, headers=tenant.headers) for _ in range(4)))
    assert sorted(r.status_code for r in responses) == [200, 409, 409, 409]
    versions = await client.get(f"/v1/assets/{session['assetId']}/versions", headers=tenant.headers)
    assert len(versions.json()) == 1


async def test_cancel_frees_everything(
    client: httpx.AsyncClient, tenant: TenantCredentials, storage: LocalBlobStorage
) -> None:
    session = await start(client, tenant, sizeBytes=PART + 1, partSizeBytes=PART)
    await client.put(session["parts"][1]["url"], content=b"z")
    assert staged_uploads(storage) != []
    cancel = await client.delete(f"/v1/uploads/{session['id']}", headers=tenant.headers)
    assert cancel.status_code == 204
    assert staged_uploads(storage) == []
    asset = await client.get(f"/v1/assets/{session['assetId']}", headers=tenant.headers)
    assert asset.status_code == 404
    again = await client.delete(f"/v1/uploads/{session['id']}", headers=tenant.headers)
    assert again.status_code == 204
    late = await client.put(session["parts"][0]["url"], content=b"x" * PART)
    assert late.status_code == 410
    done = await client.post(f"/v1/uploads/{session['id']}/complete", headers=tenant.headers)
    assert done.status_code == 410


async def test_forged_and_expired_part_urls_are_refused(
    client: httpx.AsyncClient, tenant: TenantCredentials
) -> None:
    session = await start(client, tenant, sizeBytes=PART + 1, partSizeBytes=PART)
    url = httpx.URL(session["parts"][0]["url"])
    params = dict(url.params)
    cases = [
        {**params, "signature": "0" * 64},
        {**params, "expires": str(int(params["expires"]) + 1)},
        {**params, "expires": "1"},
    ]
    for query in cases:
        response = await client.put(url.copy_with(params=query), content=b"x")
        assert response.status_code == 403
    # Part 1's signature does not open part 2.
    other = url.copy_with(path=url.path.replace("/parts/1", "/parts/2"))
    assert (await client.put(other, content=b"x")).status_code == 403
    missing = await client.put(url.copy_with(params={"expires": params["expires"]}), content=b"")
    assert missing.status_code == 422


async def test_limits_checked_when_the_session_starts(
    client: httpx.AsyncClient, db: Database
) -> None:
    small = await make_tenant(db, "smallco", max_file_size_bytes=1000, quota_bytes=500)
    too_big = await client.post(
        "/v1/uploads", json={"filename": "a.bin", "sizeBytes": 1001}, headers=small.headers
    )
    assert too_big.status_code == 413
    over_quota = await client.post(
        "/v1/uploads", json={"filename": "a.bin", "sizeBytes": 600}, headers=small.headers
    )
    assert over_quota.status_code == 413
    picky = await make_tenant(db, "pickyco", allowed_extensions=["png"])
    refused = await client.post(
        "/v1/uploads", json={"filename": "a.exe", "sizeBytes": 5}, headers=picky.headers
    )
    assert refused.status_code == 422
    for body in [
        {"filename": "a.bin", "sizeBytes": 10, "partSizeBytes": 1024},
        {"filename": "a.bin", "sizeBytes": 10, "partSizeBytes": 6 * 1024**3},
        {"filename": "a.bin", "sizeBytes": 100 * 1024**3, "partSizeBytes": PART},
        {"filename": "", "sizeBytes": 1},
        {"filename": "a.bin", "sizeBytes": -1},
        {"filename": "a.bin", "sizeBytes": 1, "sha256": "xyz"},
        {"filename": "a.bin", "sizeBytes": 1, "assetId": "0" * 24, "asset": {}},
        {"filename": "a\x00.bin", "sizeBytes": 1},
    ]:
        response = await client.post("/v1/uploads", json=body, headers=small.headers)
        assert response.status_code in (400, 413, 422), (body, response.text)


async def test_default_part_size_and_part_count_limits(
    client: httpx.AsyncClient, db: Database
) -> None:
    big = await make_tenant(db, "bigco")
    session = await start(client, big, sizeBytes=5 * 1024**3)
    assert session["partSizeBytes"] == 100 * MiB
    assert session["partCount"] == 52
    assert len(session["parts"]) == 52
    assert session["parts"][-1]["sizeBytes"] == 5 * 1024**3 - 51 * 100 * MiB
    over = await client.post(
        "/v1/uploads",
        json={"filename": "a.bin", "sizeBytes": 5 * 1024**3 + 1},
        headers=big.headers,
    )
    assert over.status_code == 413


async def test_another_tenants_session_is_missing(
    client: httpx.AsyncClient, tenant: TenantCredentials, other_tenant: TenantCredentials
) -> None:
    session = await start(client, tenant, sizeBytes=2)
    for method, path in (
        ("GET", f"/v1/uploads/{session['id']}"),
        ("POST", f"/v1/uploads/{session['id']}/complete"),
        ("DELETE", f"/v1/uploads/{session['id']}"),
    ):
        response = await client.request(method, path, headers=other_tenant.headers)
        assert response.status_code == 404, (method, path)
    version_of_theirs = await client.post(
        "/v1/uploads",
        json={"filename": "a.bin", "sizeBytes": 2, "assetId": session["assetId"]},
        headers=other_tenant.headers,
    )
    assert version_of_theirs.status_code == 404
    no_auth = await client.post("/v1/uploads", json={"filename": "a", "sizeBytes": 1})
    assert no_auth.status_code == 401


async def test_expired_sessions_are_cleaned_up(
    client: httpx.AsyncClient,
    tenant: TenantCredentials,
    storage: LocalBlobStorage,
    db: Database,
    app: Any,
) -> None:
    from assetd.uploads.routes import upload_service

    session = await start(client, tenant, sizeBytes=PART + 1, partSizeBytes=PART)
    await client.put(session["parts"][1]["url"], content=b"z")
    kept = await start(client, tenant, sizeBytes=1)
    async with db.session() as s:
        await s.execute(
            sa.update(UploadSession)
            .where(UploadSession.id == session["id"])
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    # An upload a crash left without a session row.
    orphan = storage.start_upload()
    service = upload_service(app.state.context)
    assert await service.expire(utcnow() + timedelta(hours=2)) == 2
    status = await client.get(f"/v1/uploads/{session['id']}", headers=tenant.headers)
    assert status.json()["state"] == "expired"
    asset = await client.get(f"/v1/assets/{session['assetId']}", headers=tenant.headers)
    assert asset.status_code == 404
    remaining = staged_uploads(storage)
    assert orphan not in remaining
    assert len(remaining) == 1
    alive = await client.get(f"/v1/uploads/{kept['id']}", headers=tenant.headers)
    assert alive.json()["state"] == "open"
