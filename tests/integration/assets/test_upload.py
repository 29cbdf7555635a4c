"""Uploads with real bytes: multipart and raw, limits, quotas, digests, names."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
import zlib

import httpx
import pytest

from assetd.db.session import Database
from assetd.storage.local import LocalBlobStorage
from tests.factories import TenantCredentials, make_tenant, upload

_IHDR = b"IHDR" + struct.pack(">IIBBBBB", 16, 16, 8, 2, 0, 0, 0)
PNG_HEAD = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0d" + _IHDR + struct.pack(">I", zlib.crc32(_IHDR))

pytestmark = pytest.mark.anyio

JPEG_HEAD = bytes.fromhex("ffd8ffe000104a46494600010100000100010000")


def stored_files(storage: LocalBlobStorage) -> list[str]:
    return [info.key for info in storage.list()]


def staged_files(storage: LocalBlobStorage) -> list[str]:
    return [info.key for info in storage.list_staging()]


class TestMultipartUpload:
    async def test_upload_stores_bytes_with_digests_and_sniffed_type(
        self, client: httpx.AsyncClient, tenant: TenantCredentials, storage: LocalBlobStorage
    ) -> None:
        content = b"%PDF-1.4\n" + os.urandom(300_000)
        response = await upload(client, tenant, content, "report.pdf")
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["kind"] == "BLOB"
        assert body["type"] == "document"
        assert body["mimeType"] == "application/pdf"
        assert body["sizeBytes"] == len(content)
        assert body["sha256"] == hashlib.sha256(content).hexdigest()
        assert body["filename"] == "report.pdf"
        assert body["name"] == "report.pdf"
        assert body["version"] == 1
        assert body["access"] == "PRIVATE"
        assert len(body["id"]) == 24
        assert stored_files(storage) == [f"{tenant.id}/{body['sha256'][:2]}/{body['sha256'][2:]}"]
        assert staged_files(storage) == []

        versions = (
            await client.get(f"/v1/assets/{body['id']}/versions", headers=tenant.headers)
        ).json()
        assert versions[0]["md5"] == hashlib.md5(content).hexdigest()
        assert versions[0]["isCurrent"] is True

    async def test_upload_takes_descriptive_fields_from_meta(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        meta = json.dumps(
            {
                "name": "Logo",
                "access": "PUBLIC",
                "tags": ["brand"],
                "metadata": {"color": "red"},
                "refIds": [{"id": "c1", "type": "CATEGORY"}],
            }
        )
        response = await upload(client, tenant, JPEG_HEAD + b"x" * 100, "logo.jpg", meta=meta)
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["name"] == "Logo"
        assert body["access"] == "PUBLIC"
        assert body["tags"] == ["brand"]
        assert body["metadata"] == {"color": "red"}
        assert body["refIds"] == [{"id": "c1", "type": "CATEGORY"}]
        assert body["type"] == "image"
        assert body["publicUrl"] == f"http://testserver/v1/files/acme/{body['id']}"

    @pytest.mark.parametrize(
        "filename", ["résumé été.txt", "日本語のファイル.txt", "emoji 🎉.txt", "semi;colon.txt"]
    )
    async def test_non_ascii_names_survive_upload_and_download(
        self, client: httpx.AsyncClient, tenant: TenantCredentials, filename: str
    ) -> None:
        response = await upload(client, tenant, b"hello world\n", filename)
        assert response.status_code == 201, response.text
        assert response.json()["filename"] == filename
        download = await client.get(
            f"/v1/assets/{response.json()['id']}/content", headers=tenant.headers
        )
        disposition = download.headers["content-disposition"]
        assert "filename*=UTF-8''" in disposition
        from urllib.parse import unquote

        assert unquote(disposition.split("filename*=UTF-8''")[1]) == filename

    async def test_path_in_filename_is_reduced_to_its_last_segment(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        response = await upload(client, tenant, b"data", "../../etc/passwd")
        assert response.json()["filename"] == "passwd"
        response = await upload(client, tenant, b"data", "C:\\Users\\x\\doc.txt")
        assert response.json()["filename"] == "doc.txt"

    async def test_empty_file_is_a_valid_version(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        response = await upload(client, tenant, b"", "empty.txt")
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["sizeBytes"] == 0
        assert body["sha256"] == hashlib.sha256(b"").hexdigest()
        download = await client.get(f"/v1/assets/{body['id']}/content", headers=tenant.headers)
        assert download.status_code == 200
        assert download.content == b""

    async def test_form_without_file_part_is_rejected(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        response = await client.post(
            "/v1/assets", data={"meta": "{}"}, files={"other": ("a", b"b")}, headers=tenant.headers
        )
        assert response.status_code == 400
        assert response.headers["content-type"] == "application/problem+json"
        assert "file" in response.json()["detail"]

    async def test_two_file_parts_are_rejected_and_nothing_is_kept(
        self, client: httpx.AsyncClient, tenant: TenantCredentials, storage: LocalBlobStorage
    ) -> None:
        response = await client.post(
            "/v1/assets",
            files=[("file", ("a.txt", b"one")), ("file", ("b.txt", b"two"))],
            headers=tenant.headers,
        )
        assert response.status_code == 400
        assert stored_files(storage) == []
        assert staged_files(storage) == []

    @pytest.mark.parametrize(
        ("content_type", "body"),
        [
            ("multipart/form-data", b"--x\r\n"),
            ("multipart/form-data; boundary=x", b"garbage without boundary"),
            (
                "multipart/form-data; boundary=x",
                b'--x\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\npartial',
            ),
        ],
    )
    async def test_malformed_multipart_is_a_clear_400(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCredentials,
        storage: LocalBlobStorage,
        content_type: str,
        body: bytes,
    ) -> None:
        response = await client.post(
            "/v1/assets", content=body, headers={**tenant.headers, "Content-Type": content_type}
        )
        assert response.status_code == 400, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert stored_files(storage) == []
        assert staged_files(storage) == []

    async def test_invalid_meta_json_is_rejected(
        self, client: httpx.AsyncClient, tenant: TenantCredentials, storage: LocalBlobStorage
    ) -> None:
        for meta in ("{not json", '{"access": "SECRET"}', '{"unknown": 1}', "[1]"):
            response = await upload(client, tenant, b"abc", "a.txt", meta=meta)
            assert response.status_code == 400, (meta, response.text)
        assert stored_files(storage) == []
        assert staged_files(storage) == []


class TestRawUpload:
    async def test_raw_body_upload_names_file_from_query(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        content = os.urandom(3 * 1024 * 1024 + 17)
        response = await client.post(
            "/v1/assets",
            params={"filename": "blob.bin"},
            content=content,
            headers={**tenant.headers, "Content-Type": "application/octet-stream"},
        )
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["filename"] == "blob.bin"
        assert body["sha256"] == hashlib.sha256(content).hexdigest()
        download = await client.get(f"/v1/assets/{body['id']}/content", headers=tenant.headers)
        assert download.content == content

    async def test_x_filename_header_is_percent_decoded(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        response = await client.post(
            "/v1/assets",
            content=b"abc",
            headers={
                **tenant.headers,
                "Content-Type": "application/octet-stream",
                "X-Filename": "na%C3%AFve.txt",
            },
        )
        assert response.json()["filename"] == "naïve.txt"


class TestLimits:
    async def test_file_over_tenant_limit_is_413_and_leaves_nothing(
        self, client: httpx.AsyncClient, db: Database, storage: LocalBlobStorage
    ) -> None:
        small = await make_tenant(db, "small", max_file_size_bytes=1000)
        response = await upload(client, small, b"x" * 1001, "big.txt")
        assert response.status_code == 413
        assert response.headers["content-type"] == "application/problem+json"
        assert "1000" in response.json()["detail"]
        listing = await client.get("/v1/assets", headers=small.headers)
        assert listing.json()["items"] == []
        assert stored_files(storage) == []
        assert staged_files(storage) == []
        # Exactly at the limit is fine.
        assert (await upload(client, small, b"x" * 1000, "ok.txt")).status_code == 201

    async def test_limit_is_enforced_while_streaming_without_content_length(
        self, client: httpx.AsyncClient, db: Database, storage: LocalBlobStorage
    ) -> None:
        small = await make_tenant(db, "stream", max_file_size_bytes=2 * 1024 * 1024)

        async def body():  # type: ignore[no-untyped-def]
            for _ in range(10):
                yield b"y" * 1024 * 1024

        response = await client.post(
            "/v1/assets",
            params={"filename": "big.bin"},
            content=body(),
            headers={**small.headers, "Content-Type": "application/octet-stream"},
        )
        assert response.status_code == 413
        assert stored_files(storage) == []
        assert staged_files(storage) == []

    async def test_quota_is_enforced_and_counts_distinct_bytes(
        self, client: httpx.AsyncClient, db: Database, storage: LocalBlobStorage
    ) -> None:
        tight = await make_tenant(db, "tight", quota_bytes=2500)
        one = os.urandom(1000)
        assert (await upload(client, tight, one, "one.bin")).status_code == 201
        # The same bytes again cost nothing: they are stored once.
        assert (await upload(client, tight, one, "again.bin")).status_code == 201
        assert (await upload(client, tight, os.urandom(1000), "two.bin")).status_code == 201
        response = await upload(client, tight, os.urandom(1000), "three.bin")
        assert response.status_code == 413
        assert "quota" in response.json()["detail"]
        assert len(stored_files(storage)) == 2
        assert staged_files(storage) == []
        tenant_info = (await client.get("/v1/tenant", headers=tight.headers)).json()
        assert tenant_info["usedBytes"] == 2000

    async def test_declared_content_length_over_limit_is_refused_up_front(
        self, client: httpx.AsyncClient, db: Database
    ) -> None:
        small = await make_tenant(db, "early", max_file_size_bytes=10)
        response = await client.post(
            "/v1/assets",
            content=b"z" * 100_000,
            headers={**small.headers, "Content-Type": "application/octet-stream"},
        )
        assert response.status_code == 413

    async def test_extension_policy_refuses_and_leaves_nothing(
        self, client: httpx.AsyncClient, db: Database, storage: LocalBlobStorage
    ) -> None:
        picky = await make_tenant(db, "picky", allowed_extensions=["jpg", "PNG"])
        response = await upload(client, picky, b"#!/bin/sh\necho hi\n", "run.sh")
        assert response.status_code == 422
        assert ".sh" in response.json()["detail"]
        # "PNG" in the policy matches a lower-case name: extensions compare case-insensitively.
        assert (await upload(client, picky, PNG_HEAD, "ok.png")).status_code == 201
        assert len(stored_files(storage)) == 1
        assert staged_files(storage) == []

    async def test_type_policy_uses_sniffed_content_not_the_name(
        self, client: httpx.AsyncClient, db: Database, storage: LocalBlobStorage
    ) -> None:
        images = await make_tenant(db, "images", allowed_types=["image"])
        response = await upload(client, images, b"%PDF-1.4\nnot an image", "fake.jpg")
        assert response.status_code == 422
        assert "application/pdf" in response.json()["detail"]
        assert stored_files(storage) == []


class TestDigests:
    async def test_matching_digest_header_is_accepted(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        content = b"checked bytes"
        digest = base64.b64encode(hashlib.sha256(content).digest()).decode()
        response = await client.post(
            "/v1/assets",
            params={"filename": "c.txt"},
            content=content,
            headers={
                **tenant.headers,
                "Content-Type": "application/octet-stream",
                "Content-Digest": f"sha-256=:{digest}:",
            },
        )
        assert response.status_code == 201, response.text

    @pytest.mark.parametrize(
        "header",
        [
            {"Content-Digest": "sha-256=:" + base64.b64encode(b"\0" * 32).decode() + ":"},
            {"Content-MD5": base64.b64encode(b"\0" * 16).decode()},
            {"X-Checksum-Sha256": "0" * 64},
        ],
    )
    async def test_digest_mismatch_is_400_and_leaves_nothing(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCredentials,
        storage: LocalBlobStorage,
        header: dict[str, str],
    ) -> None:
        response = await upload(client, tenant, b"some bytes", "d.txt", **header)
        assert response.status_code == 400, response.text
        assert "announced" in response.json()["detail"]
        assert stored_files(storage) == []
        assert staged_files(storage) == []
        assert (await client.get("/v1/assets", headers=tenant.headers)).json()["items"] == []

    async def test_malformed_digest_header_is_400(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        response = await upload(client, tenant, b"x", "d.txt", **{"Content-MD5": "!!!"})
        assert response.status_code == 400
        response = await upload(client, tenant, b"x", "d.txt", **{"X-Checksum-Sha256": "xyz"})
        assert response.status_code == 400


class TestDeduplication:
    async def test_identical_bytes_are_stored_once_and_released_after_last_purge(
        self, client: httpx.AsyncClient, tenant: TenantCredentials, storage: LocalBlobStorage
    ) -> None:
        content = os.urandom(5000)
        first = (await upload(client, tenant, content, "a.bin")).json()
        second = (await upload(client, tenant, content, "b.bin")).json()
        assert first["id"] != second["id"]
        assert len(stored_files(storage)) == 1
        await client.delete(f"/v1/assets/{first['id']}?purge=true", headers=tenant.headers)
        info = (await client.get("/v1/tenant", headers=tenant.headers)).json()
        assert info["usedBytes"] == 5000
        download = await client.get(f"/v1/assets/{second['id']}/content", headers=tenant.headers)
        assert download.content == content
        await client.delete(f"/v1/assets/{second['id']}?purge=true", headers=tenant.headers)
        info = (await client.get("/v1/tenant", headers=tenant.headers)).json()
        assert info["usedBytes"] == 0

    async def test_same_bytes_in_two_tenants_are_two_blobs(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCredentials,
        other_tenant: TenantCredentials,
        storage: LocalBlobStorage,
    ) -> None:
        content = os.urandom(100)
        await upload(client, tenant, content, "a.bin")
        await upload(client, other_tenant, content, "a.bin")
        keys = stored_files(storage)
        assert sorted(k.split("/")[0] for k in keys) == sorted([tenant.id, other_tenant.id])
