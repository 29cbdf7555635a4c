"""tus 1.0.0 at /v1/tus, in process: discovery, creation, appends, checksums, termination."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
from collections.abc import AsyncIterator, Mapping, MutableMapping
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from assetd.auth.principal import READ
from assetd.config import Settings
from assetd.db.base import utcnow
from assetd.db.session import Database
from assetd.storage.local import LocalBlobStorage
from assetd.uploads.models import UploadSession
from assetd.uploads.streaming import RunningDigests
from tests.factories import TenantCredentials, add_key, bearer, make_tenant, upload

pytestmark = pytest.mark.anyio

KiB = 1024
MiB = 1024 * KiB
TUS = {"Tus-Resumable": "1.0.0"}
OFFSET_TYPE = "application/offset+octet-stream"


def encode_metadata(values: Mapping[str, str]) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items())


def decode_metadata(header: str) -> dict[str, str]:
    pairs = (item.strip().partition(" ") for item in header.split(","))
    return {key: base64.b64decode(value).decode() for key, _, value in pairs}


def checksum(algorithm: str, data: bytes) -> str:
    return f"{algorithm} {base64.b64encode(hashlib.new(algorithm, data).digest()).decode()}"


async def tus(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    headers: Mapping[str, str | bytes] | None = None,
    content: bytes | None = None,
) -> httpx.Response:
    """One tus request; every answer, errors included, must say which tus version it speaks."""
    # Bytes values pass as they are: some tests send header bytes that are not ASCII.
    raw = [
        (k.encode(), v if isinstance(v, bytes) else v.encode()) for k, v in (headers or {}).items()
    ]
    response = await client.request(method, url, headers=raw, content=content)
    assert response.headers.get("tus-resumable") == "1.0.0", (method, url, response.headers)
    return response


async def create(
    client: httpx.AsyncClient,
    tenant: TenantCredentials,
    length: int,
    metadata: Mapping[str, str] | None = None,
    **headers: str,
) -> httpx.Response:
    sent: dict[str, str] = {**TUS, **tenant.headers, "Upload-Length": str(length)}
    if metadata is not None:
        sent["Upload-Metadata"] = encode_metadata(metadata)
    return await tus(client, "POST", "/v1/tus", {**sent, **headers})


async def start(
    client: httpx.AsyncClient,
    tenant: TenantCredentials,
    length: int,
    metadata: Mapping[str, str] | None = None,
) -> str:
    """A new upload's URL."""
    response = await create(client, tenant, length, metadata or {"filename": "file.bin"})
    assert response.status_code == 201, response.text
    return response.headers["location"]


async def append(
    client: httpx.AsyncClient,
    tenant: TenantCredentials,
    url: str,
    offset: int,
    body: bytes,
    **headers: str,
) -> httpx.Response:
    sent = {**TUS, **tenant.headers, "Content-Type": OFFSET_TYPE, "Upload-Offset": str(offset)}
    return await tus(client, "PATCH", url, {**sent, **headers}, body)


async def offset_of(client: httpx.AsyncClient, tenant: TenantCredentials, url: str) -> int:
    head = await tus(client, "HEAD", url, {**TUS, **tenant.headers})
    assert head.status_code == 200, head.headers
    return int(head.headers["upload-offset"])


async def content_of(
    client: httpx.AsyncClient, tenant: TenantCredentials, asset_id: str
) -> httpx.Response:
    return await client.get(f"/v1/assets/{asset_id}/content", headers=tenant.headers)


def staged_uploads(storage: LocalBlobStorage) -> list[str]:
    return [info.key for info in storage.list_uploads()]


async def patch_while_another_writes(client: httpx.AsyncClient, tenant: TenantCredentials) -> None:
    """A PATCH that arrives while another writes to the same upload is refused at once
    (423), and the upload completes with the first request's bytes only."""
    data = os.urandom(2 * MiB)
    sha = hashlib.sha256(data).hexdigest()
    url = await start(client, tenant, len(data), {"filename": "f.bin", "sha256": sha})
    halfway, go_on = asyncio.Event(), asyncio.Event()

    async def slow_body() -> AsyncIterator[bytes]:
        yield data[:MiB]
        halfway.set()  # the server has taken the first MiB and asks for more
        await go_on.wait()
        yield data[MiB:]

    headers = {**TUS, **tenant.headers, "Content-Type": OFFSET_TYPE, "Upload-Offset": "0"}
    first = asyncio.create_task(client.request("PATCH", url, headers=headers, content=slow_body()))
    await asyncio.wait_for(halfway.wait(), 10)
    # Other bytes at the same offset: before the lock, they waited, then overwrote.
    rival = asyncio.create_task(append(client, tenant, url, 0, os.urandom(2 * MiB)))
    answered, _ = await asyncio.wait({rival}, timeout=10)
    go_on.set()
    assert answered, "the second PATCH waited for the first instead of answering"
    refused = rival.result()
    assert refused.status_code == 423, refused.text
    assert refused.json()["title"] == "Locked"
    finished = await asyncio.wait_for(first, 10)
    assert finished.status_code == 204, finished.text
    assert finished.headers["upload-offset"] == str(len(data))
    assert finished.headers["x-asset-version"] == "1"
    asset_id = finished.headers["x-asset-id"]
    assert (await content_of(client, tenant, asset_id)).content == data
    versions = await client.get(f"/v1/assets/{asset_id}/versions", headers=tenant.headers)
    assert versions.json()[0]["sha256"] == sha
    # The lock went with the first request: the next PATCH is told the upload is done.
    late = await append(client, tenant, url, 0, b"x")
    assert late.status_code == 409, late.text


class TestDiscovery:
    async def test_options_lists_version_extensions_limit_and_algorithms(
        self, client: httpx.AsyncClient, settings: Settings
    ) -> None:
        # OPTIONS is how a client learns the server; it needs neither credentials nor version.
        response = await tus(client, "OPTIONS", "/v1/tus")
        assert response.status_code == 204
        assert response.headers["tus-version"] == "1.0.0"
        extensions = set(response.headers["tus-extension"].split(","))
        assert {
            "creation",
            "creation-with-upload",
            "termination",
            "checksum",
            "expiration",
        } <= extensions
        assert int(response.headers["tus-max-size"]) == settings.max_file_size_bytes
        algorithms = set(response.headers["tus-checksum-algorithm"].split(","))
        assert {"sha1", "sha256"} <= algorithms


class TestCreation:
    async def test_create_makes_a_metadata_only_asset_and_head_reports_it(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        metadata = {"filename": "Ünïcode 写真.bin", "note": "", "source": "a, b and c"}
        response = await create(client, tenant, 1234, metadata)
        assert response.status_code == 201, response.text
        location = response.headers["location"]
        assert location.startswith("http://testserver/v1/tus/")
        expires = parsedate_to_datetime(response.headers["upload-expires"])
        assert datetime.now(UTC) + timedelta(hours=23) < expires
        asset_id = response.headers["x-asset-id"]
        asset = await client.get(f"/v1/assets/{asset_id}", headers=tenant.headers)
        assert asset.json()["name"] == "Ünïcode 写真.bin"
        assert asset.json()["version"] is None
        assert (await content_of(client, tenant, asset_id)).status_code == 404

        head = await tus(client, "HEAD", location, {**TUS, **tenant.headers})
        assert head.status_code == 200
        assert head.headers["upload-offset"] == "0"
        assert head.headers["upload-length"] == "1234"
        assert head.headers["cache-control"] == "no-store"
        assert head.headers["x-asset-id"] == asset_id
        assert parsedate_to_datetime(head.headers["upload-expires"]) == expires
        assert decode_metadata(head.headers["upload-metadata"]) == metadata

    async def test_creation_with_upload_takes_the_first_bytes(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        data = os.urandom(100 * KiB)
        response = await tus(
            client,
            "POST",
            "/v1/tus",
            {
                **TUS,
                **tenant.headers,
                "Upload-Length": str(len(data)),
                "Content-Type": OFFSET_TYPE,
            },
            data[: 40 * KiB],
        )
        assert response.status_code == 201, response.text
        assert response.headers["upload-offset"] == str(40 * KiB)
        assert "x-asset-version" not in response.headers
        url = response.headers["location"]
        assert await offset_of(client, tenant, url) == 40 * KiB
        done = await append(client, tenant, url, 40 * KiB, data[40 * KiB :])
        assert done.status_code == 204, done.text
        assert done.headers["x-asset-version"] == "1"
        content = await content_of(client, tenant, response.headers["x-asset-id"])
        assert content.content == data

    async def test_creation_with_the_whole_file_completes_at_once(
        self, client: httpx.AsyncClient, tenant: TenantCredentials, storage: LocalBlobStorage
    ) -> None:
        data = b"all of it in the POST"
        response = await tus(
            client,
            "POST",
            "/v1/tus",
            {**TUS, **tenant.headers, "Upload-Length": str(len(data)), "Content-Type": OFFSET_TYPE},
            data,
        )
        assert response.status_code == 201, response.text
        assert response.headers["upload-offset"] == str(len(data))
        assert response.headers["x-asset-version"] == "1"
        content = await content_of(client, tenant, response.headers["x-asset-id"])
        assert content.content == data
        assert staged_uploads(storage) == []

    async def test_creation_with_upload_checks_the_checksum(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        response = await tus(
            client,
            "POST",
            "/v1/tus",
            {
                **TUS,
                **tenant.headers,
                "Upload-Length": "10",
                "Content-Type": OFFSET_TYPE,
                "Upload-Checksum": checksum("sha256", b"other"),
            },
            b"first",
        )
        # The upload exists (the client may go on from its Location), its bytes do not.
        assert response.status_code == 460, response.text
        assert await offset_of(client, tenant, response.headers["location"]) == 0

    async def test_empty_file_completes_on_creation(
        self, client: httpx.AsyncClient, tenant: TenantCredentials, storage: LocalBlobStorage
    ) -> None:
        # Clients send no PATCH for an empty file (tus-js-client, tuspy): the POST must do.
        response = await create(client, tenant, 0, {"filename": "empty.txt"})
        assert response.status_code == 201, response.text
        assert response.headers["x-asset-version"] == "1"
        content = await content_of(client, tenant, response.headers["x-asset-id"])
        assert content.status_code == 200
        assert content.content == b""
        assert await offset_of(client, tenant, response.headers["location"]) == 0
        assert staged_uploads(storage) == []

    async def test_metadata_sets_the_asset_fields(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        metadata = {
            "filename": "report.pdf",
            "name": "Quarterly report",
            "description": "Q3, final",
            "access": "public",
            "tags": "finance, q3 ,,reports",
            "segmentId": "emea",
        }
        url = await start(client, tenant, 5, metadata)
        done = await append(client, tenant, url, 0, b"%PDF-")
        assert done.status_code == 204, done.text
        asset = (
            await client.get(f"/v1/assets/{done.headers['x-asset-id']}", headers=tenant.headers)
        ).json()
        assert asset["name"] == "Quarterly report"
        assert asset["description"] == "Q3, final"
        assert asset["access"] == "PUBLIC"
        assert asset["tags"] == ["finance", "q3", "reports"]
        assert asset["segmentId"] == "emea"
        assert asset["filename"] == "report.pdf"
        private = await create(client, tenant, 1, {"filename": "a.bin", "access": "private"})
        asset_id = private.headers["x-asset-id"]
        got = await client.get(f"/v1/assets/{asset_id}", headers=tenant.headers)
        assert got.json()["access"] == "PRIVATE"

    async def test_asset_id_metadata_adds_a_version(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        first = await upload(client, tenant, b"version one", "notes.txt")
        asset_id = first.json()["id"]
        url = await start(client, tenant, 11, {"filename": "notes.txt", "assetId": asset_id})
        head = await tus(client, "HEAD", url, {**TUS, **tenant.headers})
        assert head.headers["x-asset-id"] == asset_id
        done = await append(client, tenant, url, 0, b"version two")
        assert done.status_code == 204, done.text
        assert done.headers["x-asset-id"] == asset_id
        assert done.headers["x-asset-version"] == "2"
        assert (await content_of(client, tenant, asset_id)).content == b"version two"
        versions = await client.get(f"/v1/assets/{asset_id}/versions", headers=tenant.headers)
        assert sorted(v["number"] for v in versions.json()) == [1, 2]

    @pytest.mark.parametrize(
        "header",
        [
            pytest.param("filename bm90IGJhc2U2NA=", id="bad-padding"),
            pytest.param("filename !!!!", id="not-base64"),
            pytest.param("filename YQ==,filename Yg==", id="duplicate-key"),
            pytest.param("filename " + base64.b64encode(b"a\x00b").decode(), id="nul"),
            pytest.param("filename " + base64.b64encode(b"\xff\xfe").decode(), id="not-utf8"),
            pytest.param("filename YQ== extra", id="three-words"),
            pytest.param("access " + base64.b64encode(b"secret").decode(), id="bad-access"),
            pytest.param("tags " + base64.b64encode(b"x" * 101).decode(), id="long-tag"),
            pytest.param("sha256 " + base64.b64encode(b"abc").decode(), id="bad-sha256"),
            pytest.param("k " + "QUFB" * 4200, id="oversized"),
        ],
    )
    async def test_malformed_metadata_is_refused(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCredentials,
        storage: LocalBlobStorage,
        header: str,
    ) -> None:
        response = await tus(
            client,
            "POST",
            "/v1/tus",
            {**TUS, **tenant.headers, "Upload-Length": "10", "Upload-Metadata": header},
        )
        assert response.status_code == 400, response.text
        assert response.headers["content-type"] == "application/problem+json"
        listed = await client.get("/v1/assets", headers=tenant.headers)
        assert listed.json()["items"] == []
        assert staged_uploads(storage) == []

    @pytest.mark.parametrize(
        "headers",
        [
            pytest.param({}, id="no-length"),
            pytest.param({"Upload-Length": "-1"}, id="negative"),
            pytest.param({"Upload-Length": "ten"}, id="not-a-number"),
            # A digit to str.isdigit(), but not to int(): must be a 400, not a crash.
            pytest.param({"Upload-Length": b"\xb2"}, id="superscript-two"),
            pytest.param({"Upload-Defer-Length": "1"}, id="deferred"),
            pytest.param({"Upload-Length": "5", "Upload-Defer-Length": "1"}, id="both"),
        ],
    )
    async def test_length_must_be_given_up_front(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCredentials,
        headers: dict[str, str | bytes],
    ) -> None:
        response = await tus(client, "POST", "/v1/tus", {**TUS, **tenant.headers, **headers})
        assert response.status_code == 400, response.text

    async def test_length_over_the_tenant_limit_is_refused(
        self, client: httpx.AsyncClient, db: Database
    ) -> None:
        small = await make_tenant(db, "smallco", max_file_size_bytes=1000, quota_bytes=1500)
        too_big = await create(client, small, 1001, {"filename": "a.bin"})
        assert too_big.status_code == 413, too_big.text
        assert (await create(client, small, 1000, {"filename": "a.bin"})).status_code == 201
        # The quota counts stored bytes: with 900 stored, 600 remain.
        done = await tus(
            client,
            "POST",
            "/v1/tus",
            {**TUS, **small.headers, "Upload-Length": "900", "Content-Type": OFFSET_TYPE},
            os.urandom(900),
        )
        assert done.headers["x-asset-version"] == "1"
        over_quota = await create(client, small, 700, {"filename": "a.bin"})
        assert over_quota.status_code == 413, over_quota.text


class TestAppend:
    async def test_chunks_complete_into_a_downloadable_version(
        self, client: httpx.AsyncClient, tenant: TenantCredentials, storage: LocalBlobStorage
    ) -> None:
        data = os.urandom(3 * MiB + 17)
        sha = hashlib.sha256(data).hexdigest()
        url = await start(client, tenant, len(data), {"filename": "big.bin", "sha256": sha})
        cuts = [0, 1, MiB, 2 * MiB + 5, len(data)]
        for begin, end in zip(cuts, cuts[1:], strict=False):
            response = await append(client, tenant, url, begin, data[begin:end])
            assert response.status_code == 204, response.text
            assert response.headers["upload-offset"] == str(end)
            assert "upload-expires" in response.headers
            if end < len(data):
                assert "x-asset-version" not in response.headers
                assert await offset_of(client, tenant, url) == end
        assert response.headers["x-asset-version"] == "1"
        asset_id = response.headers["x-asset-id"]
        content = await content_of(client, tenant, asset_id)
        assert content.status_code == 200
        assert content.content == data
        versions = await client.get(f"/v1/assets/{asset_id}/versions", headers=tenant.headers)
        assert versions.json()[0]["sha256"] == sha
        assert versions.json()[0]["originalName"] == "big.bin"
        # The finished upload still answers HEAD: all bytes are there.
        assert await offset_of(client, tenant, url) == len(data)
        assert staged_uploads(storage) == []
        # A complete upload takes no more bytes.
        late = await append(client, tenant, url, len(data), b"x")
        assert late.status_code == 409, late.text

    @pytest.mark.parametrize("algorithm", ["sha1", "sha256"])
    async def test_checksum_mismatch_is_460_and_keeps_nothing(
        self, client: httpx.AsyncClient, tenant: TenantCredentials, algorithm: str
    ) -> None:
        url = await start(client, tenant, 10)
        good = await append(
            client, tenant, url, 0, b"hello", **{"Upload-Checksum": checksum(algorithm, b"hello")}
        )
        assert good.status_code == 204, good.text
        bad = await append(
            client, tenant, url, 5, b"world", **{"Upload-Checksum": checksum(algorithm, b"w0rld")}
        )
        assert bad.status_code == 460, bad.text
        assert bad.headers["content-type"] == "application/problem+json"
        assert await offset_of(client, tenant, url) == 5
        done = await append(
            client, tenant, url, 5, b"world", **{"Upload-Checksum": checksum(algorithm, b"world")}
        )
        assert done.status_code == 204, done.text
        content = await content_of(client, tenant, done.headers["x-asset-id"])
        assert content.content == b"helloworld"

    @pytest.mark.parametrize(
        "value",
        [
            pytest.param(checksum("md5", b"hello"), id="unknown-algorithm"),
            pytest.param("sha1", id="no-digest"),
            pytest.param("sha1 !!!!", id="not-base64"),
            pytest.param(checksum("sha256", b"hello").replace("sha256", "sha1"), id="wrong-size"),
        ],
    )
    async def test_unusable_checksum_header_is_400(
        self, client: httpx.AsyncClient, tenant: TenantCredentials, value: str
    ) -> None:
        url = await start(client, tenant, 5)
        response = await append(client, tenant, url, 0, b"hello", **{"Upload-Checksum": value})
        assert response.status_code == 400, response.text
        assert await offset_of(client, tenant, url) == 0

    async def test_wrong_content_type_is_415(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        url = await start(client, tenant, 5)
        for content_type in ("application/octet-stream", "text/plain", ""):
            response = await append(
                client, tenant, url, 0, b"hello", **{"Content-Type": content_type}
            )
            assert response.status_code == 415, (content_type, response.text)
        assert await offset_of(client, tenant, url) == 0

    async def test_offset_must_be_where_the_upload_is(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        url = await start(client, tenant, 10)
        assert (await append(client, tenant, url, 0, b"hello")).status_code == 204
        for offset in (0, 4, 6, 10):
            behind = await append(client, tenant, url, offset, b"world")
            assert behind.status_code == 409, (offset, behind.text)
        headers = {**TUS, **tenant.headers, "Content-Type": OFFSET_TYPE}
        missing = await tus(client, "PATCH", url, headers, b"world")
        assert missing.status_code == 400, missing.text
        for bad in ("-5", "five", "", b"\xb2"):
            garbled = await tus(client, "PATCH", url, {**headers, "Upload-Offset": bad}, b"world")
            assert garbled.status_code == 400, (bad, garbled.text)
        assert await offset_of(client, tenant, url) == 5

    async def test_a_patch_while_another_writes_is_423_and_changes_nothing(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        await patch_while_another_writes(client, tenant)

    async def test_bytes_past_the_length_are_refused_and_none_kept(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        url = await start(client, tenant, 10)
        too_long = await append(client, tenant, url, 0, b"0123456789X")
        assert too_long.status_code == 413, too_long.text
        assert await offset_of(client, tenant, url) == 0
        assert (await append(client, tenant, url, 0, b"012345")).status_code == 204
        again = await append(client, tenant, url, 6, b"6789X")
        assert again.status_code == 413, again.text
        assert await offset_of(client, tenant, url) == 6
        done = await append(client, tenant, url, 6, b"6789")
        assert done.status_code == 204, done.text
        content = await content_of(client, tenant, done.headers["x-asset-id"])
        assert content.content == b"0123456789"

    async def test_sha256_mismatch_fails_the_upload_and_leaves_nothing(
        self, client: httpx.AsyncClient, tenant: TenantCredentials, storage: LocalBlobStorage
    ) -> None:
        announced = hashlib.sha256(b"what was promised").hexdigest()
        response = await create(client, tenant, 8, {"filename": "a.bin", "sha256": announced})
        url, asset_id = response.headers["location"], response.headers["x-asset-id"]
        assert (await append(client, tenant, url, 0, b"what")).status_code == 204
        wrong = await append(client, tenant, url, 4, b" won")
        assert wrong.status_code == 400, wrong.text
        assert "SHA-256" in wrong.json()["detail"]
        asset = await client.get(f"/v1/assets/{asset_id}", headers=tenant.headers)
        assert asset.status_code == 404
        assert staged_uploads(storage) == []
        head = await tus(client, "HEAD", url, {**TUS, **tenant.headers})
        assert head.status_code in (404, 410)
        assert "upload-offset" not in head.headers
        assert (await append(client, tenant, url, 4, b" won")).status_code in (404, 410)

    async def test_expired_upload_is_gone(
        self, client: httpx.AsyncClient, tenant: TenantCredentials, db: Database
    ) -> None:
        url = await start(client, tenant, 10)
        assert (await append(client, tenant, url, 0, b"hello")).status_code == 204
        async with db.session() as session:
            await session.execute(
                sa.update(UploadSession)
                .where(UploadSession.id == url.rsplit("/", 1)[1])
                .values(expires_at=utcnow() - timedelta(seconds=1))
            )
        head = await tus(client, "HEAD", url, {**TUS, **tenant.headers})
        assert head.status_code == 410
        assert "upload-offset" not in head.headers
        assert (await append(client, tenant, url, 5, b"world")).status_code == 410


class TestInterruptedPatch:
    """A client that goes away mid-body: ASGI's http.disconnect, as uvicorn delivers it."""

    async def patch_then_disconnect(
        self, app: FastAPI, tenant: TenantCredentials, url: str, body: bytes, **headers: str
    ) -> None:
        path = httpx.URL(url).path
        sent = {
            **TUS,
            **tenant.headers,
            "Content-Type": OFFSET_TYPE,
            "Upload-Offset": "0",
            # The client promised more than it sent before going away.
            "Content-Length": str(len(body) * 4),
            "Host": "testserver",
            **headers,
        }
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "PATCH",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": [(k.lower().encode(), v.encode()) for k, v in sent.items()],
            "client": ("127.0.0.1", 50000),
            "server": ("testserver", 80),
        }
        messages: list[dict[str, Any]] = [
            {"type": "http.request", "body": body[: len(body) // 2], "more_body": True},
            {"type": "http.request", "body": body[len(body) // 2 :], "more_body": True},
        ]

        async def receive() -> MutableMapping[str, Any]:
            return messages.pop(0) if messages else {"type": "http.disconnect"}

        async def send(message: MutableMapping[str, Any]) -> None:
            pass  # nobody is listening any more

        await app(scope, receive, send)

    async def test_bytes_that_arrived_are_kept(
        self, app: FastAPI, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        data = os.urandom(2 * MiB)
        url = await start(client, tenant, len(data))
        await self.patch_then_disconnect(app, tenant, url, data[: 300 * KiB])
        assert await offset_of(client, tenant, url) == 300 * KiB
        done = await append(client, tenant, url, 300 * KiB, data[300 * KiB :])
        assert done.status_code == 204, done.text
        content = await content_of(client, tenant, done.headers["x-asset-id"])
        assert content.content == data

    async def test_with_a_checksum_nothing_is_kept(
        self, app: FastAPI, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        # The checksum covers the whole body: a part of it cannot be verified, so it goes.
        data = os.urandom(MiB)
        url = await start(client, tenant, len(data))
        await self.patch_then_disconnect(
            app, tenant, url, data[: 300 * KiB], **{"Upload-Checksum": checksum("sha1", data)}
        )
        assert await offset_of(client, tenant, url) == 0


class TestProtocolVersion:
    @pytest.mark.parametrize("version", [None, "0.2.2", "1.0"])
    async def test_missing_or_other_version_is_412(
        self, client: httpx.AsyncClient, tenant: TenantCredentials, version: str | None
    ) -> None:
        url = await start(client, tenant, 5)
        headers: dict[str, str] = {**tenant.headers}
        if version is not None:
            headers["Tus-Resumable"] = version
        requests: list[tuple[str, str, dict[str, str]]] = [
            ("POST", "/v1/tus", {"Upload-Length": "5"}),
            ("HEAD", url, {}),
            ("PATCH", url, {"Content-Type": OFFSET_TYPE, "Upload-Offset": "0"}),
            ("DELETE", url, {}),
        ]
        for method, target, extra in requests:
            response = await tus(client, method, target, {**headers, **extra}, b"")
            assert response.status_code == 412, (method, response.text)
            assert response.headers["tus-version"] == "1.0.0"
        # Nothing happened: no upload was made, the existing one is as it was.
        assert await offset_of(client, tenant, url) == 0
        listed = await client.get("/v1/assets", headers=tenant.headers)
        assert len(listed.json()["items"]) == 1


class TestTermination:
    async def test_delete_removes_the_upload_its_bytes_and_its_asset(
        self, client: httpx.AsyncClient, tenant: TenantCredentials, storage: LocalBlobStorage
    ) -> None:
        response = await create(client, tenant, 10, {"filename": "a.bin"})
        url, asset_id = response.headers["location"], response.headers["x-asset-id"]
        assert (await append(client, tenant, url, 0, b"hello")).status_code == 204
        assert staged_uploads(storage) != []
        deleted = await tus(client, "DELETE", url, {**TUS, **tenant.headers})
        assert deleted.status_code == 204, deleted.text
        assert staged_uploads(storage) == []
        asset = await client.get(f"/v1/assets/{asset_id}", headers=tenant.headers)
        assert asset.status_code == 404
        head = await tus(client, "HEAD", url, {**TUS, **tenant.headers})
        assert head.status_code in (404, 410)
        assert "upload-offset" not in head.headers
        late = await append(client, tenant, url, 5, b"world")
        assert late.status_code in (404, 410), late.text
        assert staged_uploads(storage) == []

    async def test_completed_upload_cannot_be_terminated(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        url = await start(client, tenant, 2)
        done = await append(client, tenant, url, 0, b"hi")
        deleted = await tus(client, "DELETE", url, {**TUS, **tenant.headers})
        assert deleted.status_code == 409, deleted.text
        content = await content_of(client, tenant, done.headers["x-asset-id"])
        assert content.content == b"hi"


class TestAccess:
    async def test_parts_session_is_not_a_tus_upload(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        session = await client.post(
            "/v1/uploads", json={"filename": "a.bin", "sizeBytes": 5}, headers=tenant.headers
        )
        assert session.status_code == 201, session.text
        url = f"/v1/tus/{session.json()['id']}"
        head = await tus(client, "HEAD", url, {**TUS, **tenant.headers})
        assert head.status_code == 404
        patch = await append(client, tenant, url, 0, b"hello")
        assert patch.status_code == 404, patch.text
        delete = await tus(client, "DELETE", url, {**TUS, **tenant.headers})
        assert delete.status_code == 404
        status = await client.get(f"/v1/uploads/{session.json()['id']}", headers=tenant.headers)
        assert status.json()["state"] == "open"

    async def test_another_tenants_upload_is_missing(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCredentials,
        other_tenant: TenantCredentials,
    ) -> None:
        response = await create(client, tenant, 10, {"filename": "a.bin"})
        url, asset_id = response.headers["location"], response.headers["x-asset-id"]
        assert (await append(client, tenant, url, 0, b"hello")).status_code == 204
        head = await tus(client, "HEAD", url, {**TUS, **other_tenant.headers})
        assert head.status_code == 404
        assert "upload-offset" not in head.headers
        patch = await append(client, other_tenant, url, 5, b"world")
        assert patch.status_code == 404, patch.text
        delete = await tus(client, "DELETE", url, {**TUS, **other_tenant.headers})
        assert delete.status_code == 404
        theirs = await create(client, other_tenant, 5, {"filename": "a", "assetId": asset_id})
        assert theirs.status_code == 404, theirs.text
        # Untouched by all of that.
        assert await offset_of(client, tenant, url) == 5

    async def test_credentials_and_write_scope_are_required(
        self, client: httpx.AsyncClient, tenant: TenantCredentials, db: Database
    ) -> None:
        url = await start(client, tenant, 10)
        reader = bearer(await add_key(db, tenant, READ))
        for credentials, status in (
            ({}, 401),
            ({"Authorization": "Basic eDp5"}, 401),
            (bearer("assetd_nope"), 401),
            (reader, 403),
        ):
            requests: list[tuple[str, str, dict[str, str]]] = [
                ("POST", "/v1/tus", {"Upload-Length": "5"}),
                ("HEAD", url, {}),
                ("PATCH", url, {"Content-Type": OFFSET_TYPE, "Upload-Offset": "0"}),
                ("DELETE", url, {}),
            ]
            for method, target, extra in requests:
                response = await tus(
                    client, method, target, {**TUS, **credentials, **extra}, b"hello"
                )
                assert response.status_code == status, (credentials, method, response.text)
        assert await offset_of(client, tenant, url) == 0
        # X-API-Key works as well as Bearer.
        headers = {**TUS, "X-API-Key": tenant.key, "Content-Type": OFFSET_TYPE}
        by_api_key = await tus(client, "PATCH", url, {**headers, "Upload-Offset": "0"}, b"hello")
        assert by_api_key.status_code == 204, by_api_key.text


class TestRunningDigests:
    """The process that saw every append completes without a second pass over the file."""

    async def test_last_patch_uses_the_hashes_carried_along(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCredentials,
        app: FastAPI,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        from assetd.uploads import service

        def no_second_pass(assembled: object) -> tuple[str, str, bytes]:
            raise AssertionError("the file was hashed again")

        monkeypatch.setattr(service, "digest", no_second_pass)
        data = os.urandom(3 * 1024 * 1024 + 17)
        url = await start(client, tenant, len(data))
        for start_at in range(0, len(data), 1024 * 1024):
            response = await append(
                client, tenant, url, start_at, data[start_at : start_at + 1024 * 1024]
            )
            assert response.status_code == 204, response.text
        asset_id = response.headers["x-asset-id"]
        versions = await client.get(f"/v1/assets/{asset_id}/versions", headers=tenant.headers)
        assert versions.json()[0]["sha256"] == hashlib.sha256(data).hexdigest()
        assert versions.json()[0]["md5"] == hashlib.md5(data).hexdigest()
        assert (await content_of(client, tenant, asset_id)).content == data

    async def test_without_them_the_file_is_hashed_from_the_store(
        self, client: httpx.AsyncClient, tenant: TenantCredentials, app: FastAPI
    ) -> None:
        data = os.urandom(2 * 1024 * 1024 + 5)
        url = await start(client, tenant, len(data))
        assert (await append(client, tenant, url, 0, data[:1000])).status_code == 204
        # As if the first append had gone to another process (or before a restart).
        app.state.context.upload_digests = RunningDigests()
        response = await append(client, tenant, url, 1000, data[1000:])
        assert response.status_code == 204, response.text
        versions = await client.get(
            f"/v1/assets/{response.headers['x-asset-id']}/versions", headers=tenant.headers
        )
        assert versions.json()[0]["sha256"] == hashlib.sha256(data).hexdigest()
        assert versions.json()[0]["md5"] == hashlib.md5(data).hexdigest()
