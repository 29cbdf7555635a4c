"""Seed 001 (media assets) through its adapter: the document's examples, its query language,
limits, scopes, tenants and error envelope, on real bytes and a real database."""

from __future__ import annotations

import json
import re
import struct
import zlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from assetd.assets.service import AssetService
from assetd.db.session import Database
from assetd.storage.local import LocalBlobStorage
from tests.factories import TenantCredentials, add_key, bearer, make_tenant, upload

pytestmark = pytest.mark.anyio

MiB = 1024 * 1024
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
ENVELOPE_KEYS = {"code", "status", "message", "details"}

# The seed's own example bodies.
LINK_EXAMPLE: dict[str, Any] = {
    "type": "LINK",
    "access": "PUBLIC",
    "url": "https://emporix.io/docs/index.html",
    "refIds": [{"id": "123e06ecf0452c2d6c0b81392", "type": "CATEGORY"}],
}
BLOB_EXAMPLE: dict[str, Any] = {
    "type": "BLOB",
    "access": "PUBLIC",
    "refIds": [{"id": "123e06ecf0452c2d6c0b81392", "type": "CATEGORY"}],
    "details": {"filename": "theBestImage", "mimeType": "image/jpg"},
}
PUT_EXAMPLE: dict[str, Any] = {**BLOB_EXAMPLE, "metadata": {"version": 1}}


def png(width: int = 1, height: int = 1) -> bytes:
    """A valid PNG, so that sniffing has real content to look at."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height)))
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def assets_url(tenant: TenantCredentials) -> str:
    return f"/media/{tenant.slug}/assets"


def asset_url(tenant: TenantCredentials, asset_id: str) -> str:
    return f"/media/{tenant.slug}/assets/{asset_id}"


async def create_blob(
    client: httpx.AsyncClient,
    tenant: TenantCredentials,
    content: bytes,
    filename: str = "file.txt",
    body: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """The seed's multipart POST: a `file` part and a `body` part holding JSON."""
    body = {"type": "BLOB", "access": "PRIVATE"} if body is None else body
    return await client.post(
        assets_url(tenant),
        files={
            "file": (filename, content, "application/octet-stream"),
            "body": (None, json.dumps(body), "application/json"),
        },
        headers=headers if headers is not None else tenant.headers,
    )


async def put_blob(
    client: httpx.AsyncClient,
    tenant: TenantCredentials,
    asset_id: str,
    body: dict[str, Any],
    content: bytes | None = None,
    filename: str = "new.txt",
) -> httpx.Response:
    files: dict[str, Any] = {"body": (None, json.dumps(body), "application/json")}
    if content is not None:
        files["file"] = (filename, content, "application/octet-stream")
    return await client.put(asset_url(tenant, asset_id), files=files, headers=tenant.headers)


async def create_link(
    client: httpx.AsyncClient, tenant: TenantCredentials, body: dict[str, Any] | None = None
) -> httpx.Response:
    return await client.post(
        assets_url(tenant), json=LINK_EXAMPLE if body is None else body, headers=tenant.headers
    )


async def get_asset(
    client: httpx.AsyncClient, tenant: TenantCredentials, asset_id: str
) -> dict[str, Any]:
    response = await client.get(asset_url(tenant, asset_id), headers=tenant.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def assert_envelope(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    assert set(body) == ENVELOPE_KEYS
    assert body["code"] == status
    assert isinstance(body["status"], str)
    assert body["status"]
    assert isinstance(body["message"], str)
    assert body["message"]
    assert isinstance(body["details"], list)
    return body


def nothing_stored(storage: LocalBlobStorage) -> bool:
    return list(storage.list()) == [] and list(storage.list_staging()) == []


class TestSeedExamples:
    async def test_link_example_creates_and_reads_back_in_the_documented_shape(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        response = await create_link(client, tenant)
        assert response.status_code == 201, response.text
        assert set(response.json()) == {"id"}
        asset_id = response.json()["id"]
        assert response.headers["location"] == f"/media/acme/assets/{asset_id}"

        body = await get_asset(client, tenant, asset_id)
        metadata = body.pop("metadata")
        assert body == {
            "id": asset_id,
            "type": "LINK",
            "access": "PUBLIC",
            "url": "https://emporix.io/docs/index.html",
            "refIds": [{"id": "123e06ecf0452c2d6c0b81392", "type": "CATEGORY"}],
        }
        assert set(metadata) == {"createdAt", "modifiedAt", "version"}
        assert TIMESTAMP.match(metadata["createdAt"])
        assert metadata["createdAt"] == metadata["modifiedAt"]
        assert metadata["version"] == 1

    async def test_blob_example_creates_from_multipart_file_and_body(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        content = png(4, 4)
        response = await create_blob(client, tenant, content, "upload.png", BLOB_EXAMPLE)
        assert response.status_code == 201, response.text
        assert set(response.json()) == {"id"}
        asset_id = response.json()["id"]

        body = await get_asset(client, tenant, asset_id)
        assert body["id"] == asset_id
        assert body["type"] == "BLOB"
        assert body["access"] == "PUBLIC"
        assert body["refIds"] == BLOB_EXAMPLE["refIds"]
        # details.filename from the body wins over the part's name; the type is sniffed.
        assert body["details"] == {
            "filename": "theBestImage",
            "mimeType": "image/png",
            "bytes": len(content),
        }
        # PUBLIC: the native public URL, which needs no credentials.
        assert body["url"] == f"http://testserver/v1/files/acme/{asset_id}"
        assert body["metadata"]["version"] == 1
        assert TIMESTAMP.match(body["metadata"]["createdAt"])
        public = await client.get(body["url"])
        assert public.status_code == 200
        assert public.content == content

    async def test_part_filename_is_used_when_the_body_names_none(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        response = await create_blob(client, tenant, b"hello", "hello.txt")
        body = await get_asset(client, tenant, response.json()["id"])
        assert body["details"] == {"filename": "hello.txt", "mimeType": "text/plain", "bytes": 5}
        assert body["access"] == "PRIVATE"
        assert body["refIds"] == []
        assert body["url"] == f"http://testserver/media/acme/assets/{body['id']}/download"

    async def test_body_part_may_be_a_plain_text_field(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        response = await client.post(
            assets_url(tenant),
            files={"file": ("a.txt", b"abc")},
            data={"body": json.dumps({"type": "BLOB", "access": "PUBLIC"})},
            headers=tenant.headers,
        )
        assert response.status_code == 201, response.text
        assert (await get_asset(client, tenant, response.json()["id"]))["access"] == "PUBLIC"

    async def test_download_returns_the_bytes_with_their_type(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        # The seed's example answer "Ynl0ZXM=" is base64 for b"bytes".
        asset_id = (await create_blob(client, tenant, b"bytes", "bytes.txt")).json()["id"]
        response = await client.get(
            f"{asset_url(tenant, asset_id)}/download", headers=tenant.headers
        )
        assert response.status_code == 200
        assert response.content == b"bytes"
        assert response.headers["content-type"].startswith("text/plain")

        ranged = await client.get(
            f"{asset_url(tenant, asset_id)}/download",
            headers={**tenant.headers, "Range": "bytes=1-2"},
        )
        assert ranged.status_code == 206
        assert ranged.content == b"yt"
        head = await client.head(f"{asset_url(tenant, asset_id)}/download", headers=tenant.headers)
        assert head.status_code == 200
        assert head.headers["content-length"] == "5"

    async def test_download_of_a_link_is_404(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        asset_id = (await create_link(client, tenant)).json()["id"]
        response = await client.get(
            f"{asset_url(tenant, asset_id)}/download", headers=tenant.headers
        )
        assert_envelope(response, 404)

    async def test_unsatisfiable_range_is_416_in_the_envelope(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        asset_id = (await create_blob(client, tenant, b"bytes")).json()["id"]
        response = await client.get(
            f"{asset_url(tenant, asset_id)}/download",
            headers={**tenant.headers, "Range": "bytes=10-20"},
        )
        assert_envelope(response, 416)
        assert response.headers["content-range"] == "bytes */5"

    async def test_put_example_replaces_the_file_and_bumps_the_version_once(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        asset_id = (await create_blob(client, tenant, b"old", "old.txt", BLOB_EXAMPLE)).json()["id"]
        new = png(2, 2)
        response = await put_blob(client, tenant, asset_id, PUT_EXAMPLE, new, "upload.png")
        assert response.status_code == 204, response.text
        assert response.content == b""

        body = await get_asset(client, tenant, asset_id)
        assert body["metadata"]["version"] == 2
        assert body["details"] == {
            "filename": "theBestImage",
            "mimeType": "image/png",
            "bytes": len(new),
        }
        download = await client.get(
            f"{asset_url(tenant, asset_id)}/download", headers=tenant.headers
        )
        assert download.content == new
        # The old content is kept as version 1 natively.
        versions = await client.get(f"/v1/assets/{asset_id}/versions", headers=tenant.headers)
        assert [v["number"] for v in versions.json()] == [1, 2]

    async def test_list_example_returns_both_shapes_in_a_plain_array(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        blob_id = (
            await create_blob(
                client,
                tenant,
                b"text",
                "public.txt",
                {**BLOB_EXAMPLE, "details": {"filename": "public.txt"}},
            )
        ).json()["id"]
        link_id = (await create_link(client, tenant)).json()["id"]
        response = await client.get(assets_url(tenant), headers=tenant.headers)
        assert response.status_code == 200
        assert "x-total-count" not in response.headers
        items = {item["id"]: item for item in response.json()}
        assert set(items) == {blob_id, link_id}
        assert set(items[blob_id]) == {
            "id",
            "type",
            "access",
            "url",
            "details",
            "refIds",
            "metadata",
        }
        assert items[blob_id]["details"] == {
            "filename": "public.txt",
            "mimeType": "text/plain",
            "bytes": 4,
        }
        assert set(items[link_id]) == {"id", "type", "access", "url", "refIds", "metadata"}

    async def test_delete_answers_204_and_the_asset_is_gone(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        asset_id = (await create_blob(client, tenant, b"x")).json()["id"]
        response = await client.delete(asset_url(tenant, asset_id), headers=tenant.headers)
        assert response.status_code == 204
        assert response.content == b""
        assert_envelope(await client.get(asset_url(tenant, asset_id), headers=tenant.headers), 404)
        assert_envelope(
            await client.get(f"{asset_url(tenant, asset_id)}/download", headers=tenant.headers), 404
        )
        assert_envelope(
            await client.delete(asset_url(tenant, asset_id), headers=tenant.headers), 404
        )
        assert_envelope(await put_blob(client, tenant, asset_id, {"type": "BLOB"}), 404)
        assert (await client.get(assets_url(tenant), headers=tenant.headers)).json() == []

    async def test_deleted_asset_is_in_the_native_trash_and_can_come_back(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        asset_id = (await create_blob(client, tenant, b"x")).json()["id"]
        await client.delete(asset_url(tenant, asset_id), headers=tenant.headers)
        native = await client.get(f"/v1/assets/{asset_id}", headers=tenant.headers)
        assert native.json()["state"] == "trashed"
        restored = await client.post(f"/v1/assets/{asset_id}/restore", headers=tenant.headers)
        assert restored.status_code == 200
        assert (await get_asset(client, tenant, asset_id))["id"] == asset_id


@pytest.fixture
async def catalogue(client: httpx.AsyncClient, tenant: TenantCredentials) -> dict[str, str]:
    """Three assets to query: two BLOBs of known sizes and a LINK."""
    small = await create_blob(
        client,
        tenant,
        b"s" * 150,
        "small text.txt",
        {"type": "BLOB", "access": "PUBLIC", "refIds": [{"id": "c1", "type": "CATEGORY"}]},
    )
    big = await create_blob(client, tenant, b"\x00\x01" * 150, "big.bin")
    link = await create_link(
        client,
        tenant,
        {
            "type": "LINK",
            "access": "PUBLIC",
            "url": "https://example.com/x",
            "refIds": [{"id": "p1", "type": "PRODUCT"}],
        },
    )
    return {"small": small.json()["id"], "big": big.json()["id"], "link": link.json()["id"]}


async def found(
    client: httpx.AsyncClient, tenant: TenantCredentials, catalogue: dict[str, str], **params: str
) -> set[str]:
    response = await client.get(assets_url(tenant), params=params, headers=tenant.headers)
    assert response.status_code == 200, response.text
    names = {asset_id: name for name, asset_id in catalogue.items()}
    return {names[item["id"]] for item in response.json()}


class TestQueryLanguage:
    @pytest.mark.parametrize(
        ("q", "expected"),
        [
            ("access:PUBLIC", {"small", "link"}),
            ("type:LINK", {"link"}),
            ("type:blob", {"small", "big"}),
            ("details.bytes:150", {"small"}),
            ("details.bytes:>200", {"big"}),
            ("details.bytes:<200", {"small"}),
            ("details.bytes:>=150", {"small", "big"}),
            ("details.bytes:<=150", {"small"}),
            ("details.bytes:(>=100 AND <=200)", {"small"}),
            ("details.filename:null", {"link"}),
            ("details.filename:exists", {"small", "big"}),
            ("details:exists", {"small", "big"}),
            ("details:null", {"link"}),
            ("details.mimeType:text/plain", {"small"}),
            ("details.filename:(~l t)", {"small"}),
            ("details.filename:~^big", {"big"}),
            ("refIds:exists", {"small", "link"}),
            ("refIds:null", {"big"}),
            ("refIds.type:CATEGORY", {"small"}),
            ("url:https://example.com/x", {"link"}),
            ("metadata.version:1", {"small", "big", "link"}),
            ("access:PUBLIC type:BLOB", {"small"}),
        ],
    )
    async def test_seed_query_forms(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCredentials,
        catalogue: dict[str, str],
        q: str,
        expected: set[str],
    ) -> None:
        assert await found(client, tenant, catalogue, q=q) == expected

    async def test_id_in_a_list_and_with_another_field(
        self, client: httpx.AsyncClient, tenant: TenantCredentials, catalogue: dict[str, str]
    ) -> None:
        small, big, link = catalogue["small"], catalogue["big"], catalogue["link"]
        assert await found(client, tenant, catalogue, q=f"id:({small},{big})") == {"small", "big"}
        assert await found(client, tenant, catalogue, q=f"id:{link} access:PUBLIC") == {"link"}
        assert await found(client, tenant, catalogue, q=f"id:{big} access:PUBLIC") == set()

    async def test_id_by_regex(
        self, client: httpx.AsyncClient, tenant: TenantCredentials, catalogue: dict[str, str]
    ) -> None:
        small = catalogue["small"]
        assert await found(client, tenant, catalogue, q=f"id:~^{small}$") == {"small"}
        assert await found(client, tenant, catalogue, q=f"id:(~{small[-6:]}$)") == {"small"}

    async def test_date_range_on_created_at(
        self, client: httpx.AsyncClient, tenant: TenantCredentials, catalogue: dict[str, str]
    ) -> None:
        created = (await get_asset(client, tenant, catalogue["small"]))["metadata"]["createdAt"]
        moment = datetime.fromisoformat(created.replace("Z", "+00:00"))

        def seed_date(value: datetime) -> str:
            return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + "000Z"

        start, end = (
            seed_date(moment - timedelta(minutes=5)),
            seed_date(moment + timedelta(hours=1)),
        )
        q = f'metadata.createdAt:(>="{start}" AND <"{end}")'
        assert await found(client, tenant, catalogue, q=q) == {"small", "big", "link"}
        q = 'metadata.createdAt:(>="2021-05-18T07:27:27.455Z" AND <"2021-05-20T07:27:27.455Z")'
        assert await found(client, tenant, catalogue, q=q) == set()
        q = f'metadata.modifiedAt:>"{end}"'
        assert await found(client, tenant, catalogue, q=q) == set()

    async def test_custom_metadata_paths_stay_queryable(
        self, client: httpx.AsyncClient, tenant: TenantCredentials, catalogue: dict[str, str]
    ) -> None:
        response = await upload(
            client, tenant, b"n", "native.txt", meta=json.dumps({"metadata": {"color": "red"}})
        )
        response = await client.get(
            assets_url(tenant), params={"q": "metadata.color:red"}, headers=tenant.headers
        )
        assert [item["details"]["filename"] for item in response.json()] == ["native.txt"]

    @pytest.mark.parametrize(
        ("q", "fragment"),
        [
            ("type:FOO", "BLOB, LINK"),
            ("details:foo", "'details' is an object"),
            ("details.bytes:abc", "expected a number"),
            ("nosuch:1", "unknown field"),
            ("id:(a", "unbalanced"),
            ("details.filename:~(a+)+", "nested quantifier"),
        ],
    )
    async def test_bad_queries_are_400_in_the_envelope(
        self, client: httpx.AsyncClient, tenant: TenantCredentials, q: str, fragment: str
    ) -> None:
        response = await client.get(assets_url(tenant), params={"q": q}, headers=tenant.headers)
        assert fragment in assert_envelope(response, 400)["message"]


class TestSortingAndPaging:
    async def test_seed_sort_example(
        self, client: httpx.AsyncClient, tenant: TenantCredentials, catalogue: dict[str, str]
    ) -> None:
        response = await client.get(
            assets_url(tenant),
            params={"sort": "name,metadata.createdAt:desc"},
            headers=tenant.headers,
        )
        names = {asset_id: name for name, asset_id in catalogue.items()}
        # A LINK has no name (""), then the files by name.
        assert [names[item["id"]] for item in response.json()] == ["link", "big", "small"]

    async def test_sort_by_seed_aliases(
        self, client: httpx.AsyncClient, tenant: TenantCredentials, catalogue: dict[str, str]
    ) -> None:
        names = {asset_id: name for name, asset_id in catalogue.items()}
        response = await client.get(
            assets_url(tenant), params={"sort": "details.bytes:DESC"}, headers=tenant.headers
        )
        assert [names[item["id"]] for item in response.json()] == ["big", "small", "link"]
        # Only "desc"/"DESC" is descending; anything else is ascending.
        response = await client.get(
            assets_url(tenant), params={"sort": "details.bytes:Desc"}, headers=tenant.headers
        )
        assert [names[item["id"]] for item in response.json()] == ["small", "big", "link"]

    async def test_pages(
        self, client: httpx.AsyncClient, tenant: TenantCredentials, catalogue: dict[str, str]
    ) -> None:
        pages = []
        for number in (1, 2, 3):
            response = await client.get(
                assets_url(tenant),
                params={"sort": "id", "pageSize": "2", "pageNumber": str(number)},
                headers=tenant.headers,
            )
            pages.append([item["id"] for item in response.json()])
        assert pages == [sorted(catalogue.values())[:2], sorted(catalogue.values())[2:], []]

    async def test_total_count_only_on_demand(
        self, client: httpx.AsyncClient, tenant: TenantCredentials, catalogue: dict[str, str]
    ) -> None:
        response = await client.get(
            assets_url(tenant),
            params={"pageSize": "1", "q": "type:BLOB"},
            headers={**tenant.headers, "X-Total-Count": "true"},
        )
        assert response.headers["x-total-count"] == "2"
        assert isinstance(response.json(), list)
        assert len(response.json()) == 1
        response = await client.get(
            assets_url(tenant), headers={**tenant.headers, "X-Total-Count": "false"}
        )
        assert "x-total-count" not in response.headers
        assert len(response.json()) == 3

    @pytest.mark.parametrize(
        "params",
        [
            {"pageSize": "0"},
            {"pageSize": "1001"},
            {"pageNumber": "0"},
            {"pageNumber": "x"},
            {"sort": "nosuch"},
        ],
    )
    async def test_bad_paging_is_400_in_the_envelope(
        self, client: httpx.AsyncClient, tenant: TenantCredentials, params: dict[str, str]
    ) -> None:
        response = await client.get(assets_url(tenant), params=params, headers=tenant.headers)
        assert_envelope(response, 400)

    async def test_largest_page_size_is_accepted(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        response = await client.get(
            assets_url(tenant), params={"pageSize": "1000"}, headers=tenant.headers
        )
        assert response.status_code == 200


class TestUpdate:
    async def test_type_is_immutable(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        link_id = (await create_link(client, tenant)).json()["id"]
        response = await client.put(
            asset_url(tenant, link_id),
            json={**LINK_EXAMPLE, "type": "BLOB"},
            headers=tenant.headers,
        )
        assert "type cannot be changed" in assert_envelope(response, 400)["message"]
        blob_id = (await create_blob(client, tenant, b"x")).json()["id"]
        response = await put_blob(client, tenant, blob_id, {"type": "LINK"}, b"y")
        assert_envelope(response, 400)
        assert (await get_asset(client, tenant, blob_id))["metadata"]["version"] == 1

    async def test_access_is_immutable(
        self, client: httpx.AsyncClient, tenant: TenantCredentials, storage: LocalBlobStorage
    ) -> None:
        asset_id = (await create_blob(client, tenant, b"x", body=BLOB_EXAMPLE)).json()["id"]
        response = await put_blob(
            client, tenant, asset_id, {**PUT_EXAMPLE, "access": "PRIVATE"}, b"other bytes"
        )
        assert "access cannot be changed" in assert_envelope(response, 400)["message"]
        body = await get_asset(client, tenant, asset_id)
        assert body["access"] == "PUBLIC"
        assert body["metadata"]["version"] == 1
        assert len(list(storage.list())) == 1
        assert list(storage.list_staging()) == []
        # The same access is no change at all.
        response = await put_blob(client, tenant, asset_id, PUT_EXAMPLE)
        assert response.status_code == 204, response.text

    async def test_stale_version_is_409_and_changes_nothing(
        self, client: httpx.AsyncClient, tenant: TenantCredentials, storage: LocalBlobStorage
    ) -> None:
        asset_id = (await create_blob(client, tenant, b"x", body=BLOB_EXAMPLE)).json()["id"]
        assert (await put_blob(client, tenant, asset_id, PUT_EXAMPLE)).status_code == 204
        stale = {**PUT_EXAMPLE, "refIds": [], "metadata": {"version": 1}}
        assert_envelope(await put_blob(client, tenant, asset_id, stale, b"new bytes"), 409)
        assert_envelope(await put_blob(client, tenant, asset_id, stale), 409)
        body = await get_asset(client, tenant, asset_id)
        assert body["metadata"]["version"] == 2
        assert body["refIds"] == PUT_EXAMPLE["refIds"]
        assert body["details"]["bytes"] == 1
        assert list(storage.list_staging()) == []
        assert len(list(storage.list())) == 1

    async def test_link_json_put_with_current_version(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        link_id = (await create_link(client, tenant)).json()["id"]
        new = {
            **LINK_EXAMPLE,
            "url": "https://emporix.io/other",
            "refIds": [{"id": "p9", "type": "PRODUCT"}],
            "metadata": {"version": 1},
        }
        response = await client.put(asset_url(tenant, link_id), json=new, headers=tenant.headers)
        assert response.status_code == 204, response.text
        body = await get_asset(client, tenant, link_id)
        assert body["url"] == "https://emporix.io/other"
        assert body["refIds"] == [{"id": "p9", "type": "PRODUCT"}]
        assert body["metadata"]["version"] == 2
        assert body["metadata"]["modifiedAt"] >= body["metadata"]["createdAt"]

    async def test_ref_ids_are_replaced_not_merged(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        asset_id = (await create_blob(client, tenant, b"x", body=BLOB_EXAMPLE)).json()["id"]
        new_refs = [{"id": "a", "type": "PRODUCT"}, {"id": "b", "type": "PRODUCT"}]
        response = await put_blob(client, tenant, asset_id, {"type": "BLOB", "refIds": new_refs})
        assert response.status_code == 204, response.text
        body = await get_asset(client, tenant, asset_id)
        assert body["refIds"] == new_refs
        assert body["details"]["filename"] == "theBestImage"

    async def test_a_get_body_can_be_sent_back_as_the_put_body(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        asset_id = (await create_blob(client, tenant, b"x", body=BLOB_EXAMPLE)).json()["id"]
        body = await get_asset(client, tenant, asset_id)
        body["refIds"] = []
        response = await put_blob(client, tenant, asset_id, body)
        assert response.status_code == 204, response.text
        assert (await get_asset(client, tenant, asset_id))["refIds"] == []

    async def test_renaming_needs_new_content(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        asset_id = (await create_blob(client, tenant, b"x", "a.txt")).json()["id"]
        response = await put_blob(
            client, tenant, asset_id, {"type": "BLOB", "details": {"filename": "b.txt"}}
        )
        assert "send the file" in assert_envelope(response, 400)["message"]
        response = await put_blob(
            client, tenant, asset_id, {"type": "BLOB", "details": {"filename": "b.txt"}}, b"y"
        )
        assert response.status_code == 204
        assert (await get_asset(client, tenant, asset_id))["details"]["filename"] == "b.txt"

    async def test_a_link_takes_no_file(
        self, client: httpx.AsyncClient, tenant: TenantCredentials, storage: LocalBlobStorage
    ) -> None:
        link_id = (await create_link(client, tenant)).json()["id"]
        response = await put_blob(client, tenant, link_id, {"type": "LINK"}, b"bytes")
        assert_envelope(response, 400)
        assert nothing_stored(storage)

    async def test_failed_content_rolls_the_field_changes_back(
        self, client: httpx.AsyncClient, db: Database
    ) -> None:
        # The refIds change is applied before the content is refused: the unit of work
        # must still roll it back, even though the error is rendered by the adapter.
        strict = await make_tenant(db, "strict", allowed_types=["text/plain"])
        asset_id = (await create_blob(client, strict, b"text", body=BLOB_EXAMPLE)).json()["id"]
        response = await put_blob(
            client, strict, asset_id, {"type": "BLOB", "refIds": []}, png(), "x.png"
        )
        assert_envelope(response, 422)
        body = await get_asset(client, strict, asset_id)
        assert body["refIds"] == BLOB_EXAMPLE["refIds"]
        assert body["metadata"]["version"] == 1


class TestLimits:
    async def test_exactly_ten_mebibytes_is_accepted(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        response = await create_blob(client, tenant, b"a" * (10 * MiB), "big.txt")
        assert response.status_code == 201, response.text
        body = await get_asset(client, tenant, response.json()["id"])
        assert body["details"]["bytes"] == 10 * MiB

    async def test_one_byte_more_is_413_and_leaves_nothing(
        self, client: httpx.AsyncClient, tenant: TenantCredentials, storage: LocalBlobStorage
    ) -> None:
        response = await create_blob(client, tenant, b"a" * (10 * MiB + 1), "big.txt")
        assert_envelope(response, 413)
        assert nothing_stored(storage)
        assert (await client.get(assets_url(tenant), headers=tenant.headers)).json() == []

    async def test_update_with_too_large_file_is_413_and_changes_nothing(
        self, client: httpx.AsyncClient, tenant: TenantCredentials, storage: LocalBlobStorage
    ) -> None:
        asset_id = (await create_blob(client, tenant, b"x")).json()["id"]
        response = await put_blob(client, tenant, asset_id, {"type": "BLOB"}, b"a" * (10 * MiB + 1))
        assert_envelope(response, 413)
        assert (await get_asset(client, tenant, asset_id))["metadata"]["version"] == 1
        assert list(storage.list_staging()) == []
        assert len(list(storage.list())) == 1

    async def test_oversized_link_json_is_413(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        body = json.dumps({**LINK_EXAMPLE, "refIds": [{"id": "x" * 200, "type": "T"}] * 6000})

        async def chunks() -> AsyncIterator[bytes]:
            # Streamed, without a Content-Length: the cap applies while reading.
            for start in range(0, len(body), 65536):
                yield body[start : start + 65536].encode()

        response = await client.post(
            assets_url(tenant),
            content=chunks(),
            headers={**tenant.headers, "Content-Type": "application/json"},
        )
        assert_envelope(response, 413)

    async def test_declared_oversized_link_json_is_413_in_the_envelope(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        body = {**LINK_EXAMPLE, "refIds": [{"id": "x" * 200, "type": "T"}] * 6000}
        response = await client.post(assets_url(tenant), json=body, headers=tenant.headers)
        assert_envelope(response, 413)


class TestScopesAndTenants:
    async def test_missing_credentials_is_401_in_the_envelope(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        for response in (
            await client.get(assets_url(tenant)),
            await client.post(assets_url(tenant), json=LINK_EXAMPLE),
            await client.get("/media/NOT-A-TENANT/assets"),
        ):
            assert_envelope(response, 401)
            assert response.headers["www-authenticate"].startswith("Bearer")

    async def test_read_only_key_reads_but_cannot_change(
        self, client: httpx.AsyncClient, db: Database, tenant: TenantCredentials
    ) -> None:
        asset_id = (await create_blob(client, tenant, b"x")).json()["id"]
        for scope in ("assets:read", "media.asset_read"):
            reader = bearer(await add_key(db, tenant, scope))
            assert (await client.get(assets_url(tenant), headers=reader)).status_code == 200
            assert (
                await client.get(asset_url(tenant, asset_id), headers=reader)
            ).status_code == 200
            download = await client.get(f"{asset_url(tenant, asset_id)}/download", headers=reader)
            assert download.status_code == 200
            response = await create_blob(client, tenant, b"y", headers=reader)
            assert "media.asset_manage" in assert_envelope(response, 403)["message"]
            response = await client.put(
                asset_url(tenant, asset_id), json={"type": "BLOB"}, headers=reader
            )
            assert_envelope(response, 403)
            assert_envelope(await client.delete(asset_url(tenant, asset_id), headers=reader), 403)

    async def test_manage_scope_can_do_everything(
        self, client: httpx.AsyncClient, db: Database, tenant: TenantCredentials
    ) -> None:
        manager = bearer(await add_key(db, tenant, "media.asset_manage"))
        response = await create_blob(client, tenant, b"x", headers=manager)
        assert response.status_code == 201
        asset_id = response.json()["id"]
        assert (await client.get(asset_url(tenant, asset_id), headers=manager)).status_code == 200
        response = await client.put(
            asset_url(tenant, asset_id), json={"type": "BLOB", "refIds": []}, headers=manager
        )
        assert response.status_code == 204
        assert (
            await client.delete(asset_url(tenant, asset_id), headers=manager)
        ).status_code == 204

    async def test_key_without_media_scopes_is_403(
        self, client: httpx.AsyncClient, db: Database, tenant: TenantCredentials
    ) -> None:
        other = bearer(await add_key(db, tenant, "assets:delete"))
        assert (
            "media.asset_read"
            in assert_envelope(await client.get(assets_url(tenant), headers=other), 403)["message"]
        )

    @pytest.mark.parametrize(
        "slug", ["Acme", "ab", "1acme", "ac-me", "a" * 17, "acme_", "%C3%A9cme"]
    )
    async def test_malformed_tenant_is_400(
        self, client: httpx.AsyncClient, tenant: TenantCredentials, slug: str
    ) -> None:
        response = await client.get(f"/media/{slug}/assets", headers=tenant.headers)
        assert "tenant" in " ".join(assert_envelope(response, 400)["details"])

    @pytest.mark.parametrize("slug", ["globex", "nosuchtenant"])
    async def test_another_tenant_in_the_path_is_403(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCredentials,
        other_tenant: TenantCredentials,
        slug: str,
    ) -> None:
        for response in (
            await client.get(f"/media/{slug}/assets", headers=tenant.headers),
            await client.post(f"/media/{slug}/assets", json=LINK_EXAMPLE, headers=tenant.headers),
            await client.get(f"/media/{slug}/assets/anything", headers=tenant.headers),
        ):
            assert_envelope(response, 403)

    async def test_another_tenants_asset_is_404_everywhere(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCredentials,
        other_tenant: TenantCredentials,
        storage: LocalBlobStorage,
    ) -> None:
        theirs = (await create_blob(client, other_tenant, b"secret", body=BLOB_EXAMPLE)).json()[
            "id"
        ]
        mine = asset_url(tenant, theirs)
        assert_envelope(await client.get(mine, headers=tenant.headers), 404)
        assert_envelope(await client.get(f"{mine}/download", headers=tenant.headers), 404)
        assert_envelope(await put_blob(client, tenant, theirs, PUT_EXAMPLE, b"overwrite"), 404)
        assert_envelope(
            await client.put(mine, json={**LINK_EXAMPLE, "type": "BLOB"}, headers=tenant.headers),
            404,
        )
        assert_envelope(await client.delete(mine, headers=tenant.headers), 404)
        assert await found(client, tenant, {}, q=f"id:{theirs}") == set()
        body = await get_asset(client, other_tenant, theirs)
        assert body["metadata"]["version"] == 1
        assert list(storage.list_staging()) == []


class TestErrors:
    async def test_missing_file_is_400(
        self, client: httpx.AsyncClient, tenant: TenantCredentials, storage: LocalBlobStorage
    ) -> None:
        response = await client.post(
            assets_url(tenant),
            files={"body": (None, json.dumps(BLOB_EXAMPLE), "application/json")},
            headers=tenant.headers,
        )
        assert "'file'" in assert_envelope(response, 400)["message"]

    async def test_missing_body_is_400_and_drops_the_bytes(
        self, client: httpx.AsyncClient, tenant: TenantCredentials, storage: LocalBlobStorage
    ) -> None:
        response = await client.post(
            assets_url(tenant), files={"file": ("a.txt", b"abc")}, headers=tenant.headers
        )
        assert "'body' part is missing" in assert_envelope(response, 400)["message"]
        assert nothing_stored(storage)

    @pytest.mark.parametrize(
        ("body", "fragment"),
        [
            ("{not json", "json"),
            ("[]", "object"),
            (json.dumps({"type": "BLOB", "access": "SECRET"}), "access"),
            (json.dumps({"type": "BLOB", "unknown": 1}), "unknown"),
            (json.dumps({"type": "BLOB", "refIds": [{"id": "x"}]}), "refIds.0.type"),
            (json.dumps({"type": "BLOB", "metadata": {"version": 0}}), "metadata.version"),
        ],
    )
    async def test_malformed_body_json_is_400_and_drops_the_bytes(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCredentials,
        storage: LocalBlobStorage,
        body: str,
        fragment: str,
    ) -> None:
        response = await client.post(
            assets_url(tenant),
            files={"file": ("a.txt", b"abc"), "body": (None, body, "application/json")},
            headers=tenant.headers,
        )
        envelope = assert_envelope(response, 400)
        assert fragment.lower() in " ".join(envelope["details"]).lower()
        assert nothing_stored(storage)

    async def test_body_type_must_match_the_content_type(
        self, client: httpx.AsyncClient, tenant: TenantCredentials, storage: LocalBlobStorage
    ) -> None:
        assert_envelope(await create_blob(client, tenant, b"x", body=LINK_EXAMPLE), 400)
        assert_envelope(await create_blob(client, tenant, b"x", body={"access": "PUBLIC"}), 400)
        assert_envelope(await create_link(client, tenant, {**LINK_EXAMPLE, "type": "BLOB"}), 400)
        assert_envelope(await create_link(client, tenant, {"type": "LINK"}), 400)
        assert_envelope(await create_link(client, tenant, {**LINK_EXAMPLE, "url": "no url"}), 400)
        assert nothing_stored(storage)

    async def test_malformed_multipart_is_400(
        self, client: httpx.AsyncClient, tenant: TenantCredentials, storage: LocalBlobStorage
    ) -> None:
        for content_type, content in (
            ("multipart/form-data; boundary=xyz", b"--xyz\r\nnot a header line\r\n\r\nbody"),
            ("multipart/form-data", b"no boundary at all"),
            ("multipart/form-data; boundary=xyz", b"--xyz\r\nContent-Disposition: form-data;"),
        ):
            response = await client.post(
                assets_url(tenant),
                content=content,
                headers={**tenant.headers, "Content-Type": content_type},
            )
            assert_envelope(response, 400)
        assert nothing_stored(storage)

    async def test_malformed_link_json_is_400(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        response = await client.post(
            assets_url(tenant),
            content=b'{"type": "LINK",',
            headers={**tenant.headers, "Content-Type": "application/json"},
        )
        assert_envelope(response, 400)
        response = await client.post(
            assets_url(tenant),
            content=b"",
            headers={**tenant.headers, "Content-Type": "application/json"},
        )
        assert_envelope(response, 400)

    async def test_other_content_types_are_415(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        response = await client.post(
            assets_url(tenant),
            content=b"raw",
            headers={**tenant.headers, "Content-Type": "application/octet-stream"},
        )
        assert_envelope(response, 415)

    async def test_unknown_paths_and_methods_answer_in_the_envelope(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        assert_envelope(await client.get("/media/acme/other", headers=tenant.headers), 404)
        response = await client.patch("/media/acme/assets/x", headers=tenant.headers)
        assert_envelope(response, 405)
        assert response.headers["allow"] == "DELETE, GET, PUT"

    async def test_native_errors_stay_problem_json(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        response = await client.get("/v1/assets/nope", headers=tenant.headers)
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"
        response = await client.get("/v1/assets", params={"pageSize": "0"}, headers=tenant.headers)
        assert response.headers["content-type"] == "application/problem+json"

    async def test_unexpected_failure_is_500_in_the_envelope(
        self, client: httpx.AsyncClient, tenant: TenantCredentials, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        async def broken(*args: object, **kwargs: object) -> None:
            raise RuntimeError("boom")

        monkeypatch.setattr(AssetService, "get", broken)
        response = await client.get(asset_url(tenant, "x"), headers=tenant.headers)
        body = assert_envelope(response, 500)
        assert "boom" not in body["message"]


class TestNativeInterop:
    async def test_native_upload_is_visible_through_the_adapter(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        meta = json.dumps({"access": "PUBLIC", "refIds": [{"id": "c", "type": "CATEGORY"}]})
        native = (await upload(client, tenant, b"%PDF-1.4\n", "doc.pdf", meta=meta)).json()
        body = await get_asset(client, tenant, native["id"])
        assert body["type"] == "BLOB"
        assert body["access"] == "PUBLIC"
        assert body["details"] == {"filename": "doc.pdf", "mimeType": "application/pdf", "bytes": 9}
        assert body["refIds"] == [{"id": "c", "type": "CATEGORY"}]
        assert body["metadata"]["version"] == native["revision"]

    async def test_native_metadata_only_blob_has_no_details_or_url(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        native = await client.post("/v1/assets", json={"kind": "BLOB"}, headers=tenant.headers)
        body = await get_asset(client, tenant, native.json()["id"])
        assert set(body) == {"id", "type", "access", "refIds", "metadata"}
        download = await client.get(
            f"{asset_url(tenant, body['id'])}/download", headers=tenant.headers
        )
        assert_envelope(download, 404)

    async def test_adapter_assets_are_visible_natively(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        blob_id = (await create_blob(client, tenant, b"hi", "a.txt", BLOB_EXAMPLE)).json()["id"]
        link_id = (await create_link(client, tenant)).json()["id"]
        blob = (await client.get(f"/v1/assets/{blob_id}", headers=tenant.headers)).json()
        assert blob["kind"] == "BLOB"
        assert blob["access"] == "PUBLIC"
        assert blob["filename"] == "theBestImage"
        assert blob["refIds"] == BLOB_EXAMPLE["refIds"]
        link = (await client.get(f"/v1/assets/{link_id}", headers=tenant.headers)).json()
        assert link["kind"] == "LINK"
        assert link["url"] == LINK_EXAMPLE["url"]
        content = await client.get(f"/v1/assets/{blob_id}/content", headers=tenant.headers)
        assert content.content == b"hi"

    async def test_native_change_makes_a_held_version_stale(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        asset_id = (await create_link(client, tenant)).json()["id"]
        patched = await client.patch(
            f"/v1/assets/{asset_id}", json={"name": "renamed"}, headers=tenant.headers
        )
        assert patched.status_code == 200
        response = await client.put(
            asset_url(tenant, asset_id),
            json={**LINK_EXAMPLE, "metadata": {"version": 1}},
            headers=tenant.headers,
        )
        assert_envelope(response, 409)


class TestOpenApi:
    # The native GET+HEAD routes repeat an operation id; that warning is not this adapter's.
    async def test_routes_are_documented_with_their_bodies(self, client: httpx.AsyncClient) -> None:
        spec = (await client.get("/openapi.json")).json()
        paths = spec["paths"]
        operations = {
            (path, method): operation
            for path, methods in paths.items()
            if path.startswith("/media/")
            for method, operation in methods.items()
        }
        assert set(operations) == {
            ("/media/{tenant}/assets", "get"),
            ("/media/{tenant}/assets", "post"),
            ("/media/{tenant}/assets/{assetId}", "get"),
            ("/media/{tenant}/assets/{assetId}", "put"),
            ("/media/{tenant}/assets/{assetId}", "delete"),
            ("/media/{tenant}/assets/{assetId}/download", "get"),
        }
        for operation in operations.values():
            assert operation["tags"] == ["compat: media"]
            assert "422" not in operation["responses"]
            assert operation["responses"]["4XX"]["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/MediaError"
            }
        for key in (
            ("/media/{tenant}/assets", "post"),
            ("/media/{tenant}/assets/{assetId}", "put"),
        ):
            content = operations[key]["requestBody"]["content"]
            assert set(content) == {"multipart/form-data", "application/json"}
            form = content["multipart/form-data"]["schema"]["properties"]
            assert form["file"]["format"] == "binary"
            assert "refIds" in form["body"]["properties"]
        tenant_param = operations[("/media/{tenant}/assets", "get")]["parameters"][0]
        assert tenant_param["schema"]["pattern"] == "^[a-z][a-z0-9]+$"
