"""Upload → renditions job (in-process worker) → presets and signed transformations served."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
import pyvips
from fastapi import FastAPI

from assetd.db.session import Database
from assetd.maintenance import check_consistency, collect_garbage
from assetd.renditions.imaging import PRESETS
from assetd.storage.base import BlobNotFound
from assetd.storage.keys import blob_key
from assetd.storage.local import LocalBlobStorage
from tests.factories import TenantCredentials, add_key, bearer, upload
from tests.fixtures.real_files import (
    make_corrupt_pdf,
    make_image,
    make_jpeg_with_exif,
    make_mp4,
    make_pdf,
    make_png_bomb,
    make_truncated_jpeg,
)

pytestmark = pytest.mark.anyio

MONTH = "public, max-age=2592000"


async def settled_jobs(
    client: httpx.AsyncClient, tenant: TenantCredentials, asset_id: str
) -> dict[str, dict[str, Any]]:
    """The asset's jobs by kind once none is pending or running."""
    deadline = time.monotonic() + 60
    while True:
        response = await client.get(f"/v1/assets/{asset_id}/jobs", headers=tenant.headers)
        assert response.status_code == 200, response.text
        jobs: list[dict[str, Any]] = response.json()
        if jobs and all(job["state"] in ("done", "failed") for job in jobs):
            return {job["kind"]: job for job in jobs}
        assert time.monotonic() < deadline, jobs
        await asyncio.sleep(0.05)


async def uploaded(
    client: httpx.AsyncClient,
    tenant: TenantCredentials,
    path: Path,
    access: str = "PRIVATE",
    *,
    wait: bool = True,
) -> dict[str, Any]:
    meta = json.dumps({"access": access})
    response = await upload(client, tenant, path.read_bytes(), path.name, meta=meta)
    assert response.status_code == 201, response.text
    asset: dict[str, Any] = response.json()
    if wait:
        jobs = await settled_jobs(client, tenant, asset["id"])
        for preset in ("thumb", "medium", "large", "largeX2"):
            assert jobs[f"rendition:{preset}"]["state"] == "done", jobs
    return asset


def size_of(data: bytes) -> tuple[int, int]:
    image = pyvips.Image.new_from_buffer(data, "")
    return image.width, image.height


def relative(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


async def transform_url(
    client: httpx.AsyncClient, tenant: TenantCredentials, asset_id: str, **spec: Any
) -> httpx.Response:
    return await client.post(
        f"/v1/assets/{asset_id}/transform-url", json=spec, headers=tenant.headers
    )


class TestPresets:
    async def test_an_uploaded_jpeg_gets_every_preset(
        self, client: httpx.AsyncClient, tenant: TenantCredentials, tmp_path: Path
    ) -> None:
        photo = make_jpeg_with_exif(tmp_path, width=3000, height=2000, orientation=1)
        asset = await uploaded(client, tenant, photo)
        listed = await client.get(f"/v1/assets/{asset['id']}/renditions", headers=tenant.headers)
        assert listed.status_code == 200, listed.text
        assert [r["preset"] for r in listed.json()] == list(PRESETS)
        for item in listed.json():
            size = PRESETS[item["preset"]]
            expected = (size, round(size * 2 / 3))
            assert (item["width"], item["height"]) == expected
            assert item["mimeType"] == "image/webp"
            response = await client.get(
                f"/v1/assets/{asset['id']}/renditions/{item['preset']}", headers=tenant.headers
            )
            assert response.status_code == 200, response.text
            assert response.headers["content-type"] == "image/webp"
            assert response.headers["cache-control"] == "private, no-cache"
            assert size_of(response.content) == expected
            # The listed (signed) URL works without credentials.
            signed = await client.get(relative(item["url"]))
            assert signed.status_code == 200
            assert signed.content == response.content
        head = await client.head(
            f"/v1/assets/{asset['id']}/renditions/thumb", headers=tenant.headers
        )
        assert head.status_code == 200
        assert head.content == b""
        etag = head.headers["etag"]
        again = await client.get(
            f"/v1/assets/{asset['id']}/renditions/thumb",
            headers={**tenant.headers, "If-None-Match": etag},
        )
        assert again.status_code == 304

    async def test_orientation_is_applied(
        self, client: httpx.AsyncClient, tenant: TenantCredentials, tmp_path: Path
    ) -> None:
        asset = await uploaded(client, tenant, make_jpeg_with_exif(tmp_path, 64, 48, 6))
        response = await client.get(
            f"/v1/assets/{asset['id']}/renditions/thumb", headers=tenant.headers
        )
        assert size_of(response.content) == (48, 64)

    async def test_pdf_page_one_and_mp4_poster(
        self, client: httpx.AsyncClient, tenant: TenantCredentials, tmp_path: Path
    ) -> None:
        pdf = await uploaded(client, tenant, make_pdf(tmp_path))
        response = await client.get(
            f"/v1/assets/{pdf['id']}/renditions/medium", headers=tenant.headers
        )
        assert response.status_code == 200, response.text
        assert size_of(response.content) == (480, 240)
        clip = await uploaded(client, tenant, make_mp4(tmp_path, seconds=2, width=320, height=240))
        response = await client.get(
            f"/v1/assets/{clip['id']}/renditions/thumb", headers=tenant.headers
        )
        assert response.status_code == 200, response.text
        assert size_of(response.content) == (150, 113)

    async def test_types_without_renditions_and_unknown_presets_are_missing(
        self, client: httpx.AsyncClient, tenant: TenantCredentials, tmp_path: Path
    ) -> None:
        response = await upload(client, tenant, b"just text\n", "notes.txt")
        asset = response.json()
        listed = await client.get(f"/v1/assets/{asset['id']}/jobs", headers=tenant.headers)
        # A type with neither renditions nor facts to extract gets no jobs at all.
        assert listed.status_code == 200, listed.text
        assert listed.json() == []
        missing = await client.get(
            f"/v1/assets/{asset['id']}/renditions/thumb", headers=tenant.headers
        )
        assert missing.status_code == 404
        assert "retry-after" not in missing.headers
        listed = await client.get(f"/v1/assets/{asset['id']}/renditions", headers=tenant.headers)
        assert listed.json() == []
        image = await uploaded(client, tenant, make_image(tmp_path, "png"))
        unknown = await client.get(
            f"/v1/assets/{image['id']}/renditions/huge", headers=tenant.headers
        )
        assert unknown.status_code == 404

    async def test_a_rendition_not_made_yet_says_when_to_come_back(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCredentials,
        tmp_path: Path,
        db: Database,
    ) -> None:
        # Hold the job back: nothing runs it while it is pending in the future.
        asset = await uploaded(client, tenant, make_image(tmp_path, "png", 300, 200), wait=False)
        response = await client.get(
            f"/v1/assets/{asset['id']}/renditions/thumb", headers=tenant.headers
        )
        if response.status_code == 404:  # the in-process worker may already be done
            assert response.json()["detail"] == "not made yet"
            assert response.headers["retry-after"] == "2"
        else:
            assert response.status_code == 200
        await settled_jobs(client, tenant, asset["id"])
        response = await client.get(
            f"/v1/assets/{asset['id']}/renditions/thumb", headers=tenant.headers
        )
        assert response.status_code == 200


class TestAccess:
    async def test_public_renditions_are_public_and_cached_for_30_days(
        self, client: httpx.AsyncClient, tenant: TenantCredentials, tmp_path: Path
    ) -> None:
        asset = await uploaded(client, tenant, make_image(tmp_path, "png", 600, 400), "PUBLIC")
        url = f"/v1/files/{tenant.slug}/{asset['id']}/renditions/medium"
        response = await client.get(url)
        assert response.status_code == 200, response.text
        assert response.headers["cache-control"] == MONTH
        assert size_of(response.content) == (480, 320)
        listed = await client.get(f"/v1/assets/{asset['id']}/renditions", headers=tenant.headers)
        assert "signature" not in listed.json()[0]["url"]

    async def test_private_renditions_need_credentials_or_a_signature(
        self,
        app: FastAPI,
        client: httpx.AsyncClient,
        tenant: TenantCredentials,
        db: Database,
        tmp_path: Path,
    ) -> None:
        asset = await uploaded(client, tenant, make_image(tmp_path, "png", 600, 400))
        url = f"/v1/files/{tenant.slug}/{asset['id']}/renditions/thumb"
        assert (await client.get(url)).status_code == 401
        with_key = await client.get(url, headers=tenant.headers)
        assert with_key.status_code == 200
        assert with_key.headers["cache-control"] == "private, no-cache"
        no_read = await add_key(db, tenant, "assets:write")
        assert (await client.get(url, headers=bearer(no_read))).status_code == 403

        listed = await client.get(f"/v1/assets/{asset['id']}/renditions", headers=tenant.headers)
        signed = relative(listed.json()[0]["url"])
        assert (await client.get(signed)).status_code == 200
        query = parse_qs(urlsplit(signed).query)
        expires, signature = int(query["expires"][0]), query["signature"][0]
        tampered = [
            {"expires": expires, "signature": "0" * 64},
            {"expires": expires + 1, "signature": signature},
            {"expires": expires},
        ]
        for params in tampered:
            assert (await client.get(url, params=params)).status_code == 403, params
        # Signed for thumb, not for medium.
        other = f"/v1/files/{tenant.slug}/{asset['id']}/renditions/medium"
        response = await client.get(other, params={"expires": expires, "signature": signature})
        assert response.status_code == 403
        # An expired signature is refused even when it is genuine.
        past = int(time.time()) - 10
        genuine = app.state.context.signer.signature(
            "rendition", tenant.id, asset["id"], "thumb", past
        )
        response = await client.get(url, params={"expires": past, "signature": genuine})
        assert response.status_code == 403

    async def test_another_tenants_renditions_are_missing(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCredentials,
        other_tenant: TenantCredentials,
        tmp_path: Path,
    ) -> None:
        asset = await uploaded(client, tenant, make_image(tmp_path, "png", 300, 200), "PUBLIC")
        for path in (
            f"/v1/assets/{asset['id']}/renditions",
            f"/v1/assets/{asset['id']}/renditions/thumb",
        ):
            response = await client.get(path, headers=other_tenant.headers)
            assert response.status_code == 404, path
        response = await client.get(f"/v1/files/{other_tenant.slug}/{asset['id']}/renditions/thumb")
        assert response.status_code == 404
        response = await transform_url(client, other_tenant, asset["id"], w=10)
        assert response.status_code == 404


class TestTransform:
    async def test_a_signed_transform_is_made_once_and_cached(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCredentials,
        tmp_path: Path,
        storage: LocalBlobStorage,
    ) -> None:
        asset = await uploaded(client, tenant, make_image(tmp_path, "png", 900, 600), "PUBLIC")
        response = await transform_url(
            client, tenant, asset["id"], w=300, h=300, fit="cover", fmt="jpeg", q=70
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["spec"] == "w=300,h=300,fit=cover,fmt=jpeg,q=70"
        url = relative(body["url"])
        first = await client.get(url)
        assert first.status_code == 200, first.text
        assert first.headers["content-type"] == "image/jpeg"
        assert first.headers["cache-control"] == MONTH
        assert size_of(first.content) == (300, 300)
        blobs = sorted(info.key for info in storage.list())
        second = await client.get(url)
        assert second.content == first.content
        assert second.headers["etag"] == first.headers["etag"]
        # Nothing new stored: the second answer came from the cached rendition.
        assert sorted(info.key for info in storage.list()) == blobs
        head = await client.head(url)
        assert head.status_code == 200
        # The first answer sent the bytes it had just made: they are the stored ones.
        assert first.headers["etag"] == f'"{hashlib.sha256(first.content).hexdigest()}"'

    async def test_a_jpeg_thumbnail_is_made_from_the_stored_file(
        self, client: httpx.AsyncClient, tenant: TenantCredentials, tmp_path: Path
    ) -> None:
        photo = make_jpeg_with_exif(tmp_path, width=3000, height=2000, orientation=6)
        asset = await uploaded(client, tenant, photo, "PUBLIC", wait=False)
        response = await transform_url(client, tenant, asset["id"], w=200, fmt="jpeg", q=80)
        made = await client.get(relative(response.json()["url"]))
        assert made.status_code == 200, made.text
        assert size_of(made.content) == (200, 300)  # turned upright, as the camera meant

    async def test_simultaneous_requests_for_one_transform_store_it_once(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCredentials,
        tmp_path: Path,
        db: Database,
        storage: LocalBlobStorage,
    ) -> None:
        asset = await uploaded(client, tenant, make_image(tmp_path, "png", 900, 600))
        response = await transform_url(client, tenant, asset["id"], w=120, fmt="png")
        url = relative(response.json()["url"])
        before = len(list(storage.list()))
        answers = await asyncio.gather(*(client.get(url) for _ in range(3)))
        assert [answer.status_code for answer in answers] == [200, 200, 200]
        assert len({answer.content for answer in answers}) == 1
        assert len({answer.headers["etag"] for answer in answers}) == 1
        assert len(list(storage.list())) == before + 1
        report = await check_consistency(db, storage)
        assert report.ok, report

    async def test_a_source_gone_from_the_store_is_missing_content_not_a_bad_file(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCredentials,
        tmp_path: Path,
        storage: LocalBlobStorage,
    ) -> None:
        source = make_image(tmp_path, "png", 300, 200)
        asset = await uploaded(client, tenant, source)
        response = await transform_url(client, tenant, asset["id"], w=50)
        sha256 = hashlib.sha256(source.read_bytes()).hexdigest()
        storage.path_for(blob_key(tenant.id, sha256)).unlink()
        # BlobNotFound (a 500 "Content missing", which the test client raises instead), not
        # the 404 of a file that cannot be rendered.
        with pytest.raises(BlobNotFound):
            await client.get(relative(response.json()["url"]))

    async def test_unsigned_or_tampered_transforms_are_forbidden(
        self, client: httpx.AsyncClient, tenant: TenantCredentials, tmp_path: Path
    ) -> None:
        asset = await uploaded(client, tenant, make_image(tmp_path, "png", 900, 600), "PUBLIC")
        base = f"/v1/files/{tenant.slug}/{asset['id']}/transform"
        assert (await client.get(base, params={"w": 100})).status_code == 403
        response = await transform_url(client, tenant, asset["id"], w=100)
        url = urlsplit(response.json()["url"])
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        assert (await client.get(f"{url.path}?{urlencode(query)}")).status_code == 200
        for change in ({"w": "101"}, {"fmt": "png"}, {"signature": "f" * 64}, {"q": "81"}):
            response = await client.get(url.path, params={**query, **change})
            assert response.status_code == 403, change
        expired = await client.get(url.path, params={**query, "expires": "1"})
        assert expired.status_code == 403

    async def test_out_of_limit_transforms_are_refused(
        self, client: httpx.AsyncClient, tenant: TenantCredentials, tmp_path: Path
    ) -> None:
        asset = await uploaded(client, tenant, make_image(tmp_path, "png", 90, 60))
        for spec in (
            {"w": 5000},
            {"w": 100, "h": 0},
            {},
            {"w": 10, "q": 0},
            {"w": 10, "q": 101},
            {"w": 10, "fit": "stretch"},
            {"w": 10, "fmt": "bmp"},
        ):
            response = await transform_url(client, tenant, asset["id"], **spec)
            assert response.status_code == 400, (spec, response.text)
            assert response.headers["content-type"] == "application/problem+json"

    async def test_a_private_transform_is_served_privately(
        self, client: httpx.AsyncClient, tenant: TenantCredentials, tmp_path: Path
    ) -> None:
        asset = await uploaded(client, tenant, make_pdf(tmp_path))
        response = await transform_url(
            client, tenant, asset["id"], w=100, h=100, fit="contain", fmt="png"
        )
        served = await client.get(relative(response.json()["url"]))
        assert served.status_code == 200, served.text
        assert served.headers["cache-control"] == "private, no-cache"
        assert size_of(served.content) == (100, 100)


class TestFailures:
    @pytest.mark.parametrize("maker", ["bomb", "truncated", "corrupt_pdf"])
    async def test_hostile_files_fail_the_job_and_the_server_goes_on(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCredentials,
        tmp_path: Path,
        maker: str,
    ) -> None:
        path = {
            "bomb": make_png_bomb,
            "truncated": make_truncated_jpeg,
            "corrupt_pdf": make_corrupt_pdf,
        }[maker](tmp_path)
        response = await upload(client, tenant, path.read_bytes(), path.name)
        assert response.status_code == 201, response.text
        asset = response.json()
        jobs = await settled_jobs(client, tenant, asset["id"])
        # Each preset's job fails on its own, with the error recorded.
        for preset in ("thumb", "medium", "large", "largeX2"):
            assert jobs[f"rendition:{preset}"]["state"] == "failed", jobs
            assert jobs[f"rendition:{preset}"]["error"].startswith("PermanentJobError")
        missing = await client.get(
            f"/v1/assets/{asset['id']}/renditions/thumb", headers=tenant.headers
        )
        assert missing.status_code == 404
        assert "retry-after" not in missing.headers
        # The next upload is rendered as usual.
        (tmp_path / "ok").mkdir()
        await uploaded(client, tenant, make_image(tmp_path / "ok", "png"))

    async def test_purge_releases_rendition_blobs_for_gc(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCredentials,
        tmp_path: Path,
        db: Database,
        storage: LocalBlobStorage,
    ) -> None:
        # Large enough for four different presets (equal ones would share one blob).
        asset = await uploaded(client, tenant, make_image(tmp_path, "png", 2400, 1600))
        made = await transform_url(client, tenant, asset["id"], w=50)
        assert (await client.get(relative(made.json()["url"]))).status_code == 200
        report = await check_consistency(db, storage)
        assert report.ok, report
        # The original plus four presets plus one transformation.
        assert len(list(storage.list())) == 6
        used = await client.get("/v1/tenant", headers=tenant.headers)
        purged = await client.delete(
            f"/v1/assets/{asset['id']}", params={"purge": "true"}, headers=tenant.headers
        )
        assert purged.status_code == 204
        report = await check_consistency(db, storage)
        assert report.ok, report
        gc = await collect_garbage(db, storage, 0)
        assert gc.released_blobs_deleted == 6
        assert list(storage.list()) == []
        if used.status_code == 200 and "usedBytes" in used.json():
            after = await client.get("/v1/tenant", headers=tenant.headers)
            assert after.json()["usedBytes"] == 0
