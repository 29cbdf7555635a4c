"""Versions, updates with optimistic concurrency, trash, restore, purge, links."""

from __future__ import annotations

import os

import httpx
import pytest

from assetd.storage.local import LocalBlobStorage
from tests.factories import TenantCredentials, upload

pytestmark = pytest.mark.anyio


async def new_version(
    client: httpx.AsyncClient, tenant: TenantCredentials, asset_id: str, content: bytes, name: str
) -> httpx.Response:
    return await client.post(
        f"/v1/assets/{asset_id}/versions", files={"file": (name, content)}, headers=tenant.headers
    )


class TestVersions:
    async def test_versions_are_kept_downloadable_and_promotable(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        asset = (await upload(client, tenant, b"version one", "v.txt")).json()
        second = await new_version(client, tenant, asset["id"], b"version two!", "v2.txt")
        assert second.status_code == 201, second.text
        assert second.json()["number"] == 2
        current = (await client.get(f"/v1/assets/{asset['id']}", headers=tenant.headers)).json()
        assert current["version"] == 2
        assert current["sizeBytes"] == len(b"version two!")
        assert current["revision"] == 2
        # The name given by the first upload stays; only content facts follow the version.
        assert current["name"] == "v.txt"
        assert current["filename"] == "v2.txt"

        versions = (
            await client.get(f"/v1/assets/{asset['id']}/versions", headers=tenant.headers)
        ).json()
        assert [(v["number"], v["isCurrent"]) for v in versions] == [(1, False), (2, True)]
        old = await client.get(
            f"/v1/assets/{asset['id']}/versions/1/content", headers=tenant.headers
        )
        assert old.content == b"version one"
        also_old = await client.get(
            f"/v1/assets/{asset['id']}/content", params={"version": 1}, headers=tenant.headers
        )
        assert also_old.content == b"version one"

        promoted = await client.post(
            f"/v1/assets/{asset['id']}/versions/1/promote", headers=tenant.headers
        )
        assert promoted.status_code == 200
        assert promoted.json()["version"] == 1
        latest = await client.get(f"/v1/assets/{asset['id']}/content", headers=tenant.headers)
        assert latest.content == b"version one"

    async def test_missing_version_is_404(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        asset = (await upload(client, tenant, b"x", "v.txt")).json()
        for path in ("versions/9/content", "versions/9/promote"):
            method = "POST" if path.endswith("promote") else "GET"
            response = await client.request(
                method, f"/v1/assets/{asset['id']}/{path}", headers=tenant.headers
            )
            assert response.status_code == 404

    async def test_metadata_only_asset_gets_content_later(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        created = await client.post(
            "/v1/assets", json={"name": "Manual", "type": "document"}, headers=tenant.headers
        )
        assert created.status_code == 201
        body = created.json()
        assert body["version"] is None
        assert body["contentUrl"] is None
        added = await new_version(client, tenant, body["id"], b"%PDF-1.4\n", "manual.pdf")
        assert added.status_code == 201
        after = (await client.get(f"/v1/assets/{body['id']}", headers=tenant.headers)).json()
        assert after["version"] == 1
        assert after["name"] == "Manual"
        assert after["mimeType"] == "application/pdf"

    async def test_link_asset_takes_no_versions(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        link = (
            await client.post(
                "/v1/assets",
                json={"kind": "LINK", "url": "https://example.com/x", "access": "PUBLIC"},
                headers=tenant.headers,
            )
        ).json()
        assert link["kind"] == "LINK"
        assert link["url"] == "https://example.com/x"
        response = await new_version(client, tenant, link["id"], b"x", "x.txt")
        assert response.status_code == 409

    @pytest.mark.parametrize(
        "body",
        [
            {"kind": "LINK"},
            {"kind": "LINK", "url": "not a url"},
            {"kind": "BLOB", "url": "https://example.com"},
            {"kind": "FOLDER"},
            {"name": "x" * 501},
            {"tags": ["x" * 101]},
            {"refIds": [{"id": "a"}]},
        ],
    )
    async def test_invalid_json_create_is_400(
        self, client: httpx.AsyncClient, tenant: TenantCredentials, body: dict[str, object]
    ) -> None:
        response = await client.post("/v1/assets", json=body, headers=tenant.headers)
        assert response.status_code == 400, response.text
        assert response.headers["content-type"] == "application/problem+json"

    async def test_broken_json_body_is_400(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        response = await client.post(
            "/v1/assets",
            content=b"{broken",
            headers={**tenant.headers, "Content-Type": "application/json"},
        )
        assert response.status_code == 400


class TestUpdate:
    async def test_patch_changes_fields_and_bumps_revision(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        asset = (await upload(client, tenant, b"x", "a.txt")).json()
        response = await client.patch(
            f"/v1/assets/{asset['id']}",
            json={
                "name": "Renamed",
                "tags": ["a", "b"],
                "metadata": {"k": [1, 2]},
                "access": "PUBLIC",
            },
            headers=tenant.headers,
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["name"], body["tags"], body["metadata"], body["access"]) == (
            "Renamed",
            ["a", "b"],
            {"k": [1, 2]},
            "PUBLIC",
        )
        assert body["revision"] == 2
        assert response.headers["etag"] == '"r2"'
        assert body["modifiedBy"].startswith("key:")

    async def test_stale_if_match_is_412_and_changes_nothing(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        asset = (await upload(client, tenant, b"x", "a.txt")).json()
        ok = await client.patch(
            f"/v1/assets/{asset['id']}",
            json={"name": "one"},
            headers={**tenant.headers, "If-Match": '"r1"'},
        )
        assert ok.status_code == 200
        stale = await client.patch(
            f"/v1/assets/{asset['id']}",
            json={"name": "two"},
            headers={**tenant.headers, "If-Match": '"r1"'},
        )
        assert stale.status_code == 412
        assert (await client.get(f"/v1/assets/{asset['id']}", headers=tenant.headers)).json()[
            "name"
        ] == "one"

    async def test_stale_revision_in_body_is_409(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        asset = (await upload(client, tenant, b"x", "a.txt")).json()
        await client.patch(
            f"/v1/assets/{asset['id']}", json={"name": "one"}, headers=tenant.headers
        )
        stale = await client.patch(
            f"/v1/assets/{asset['id']}", json={"name": "two", "revision": 1}, headers=tenant.headers
        )
        assert stale.status_code == 409

    @pytest.mark.parametrize(
        "body",
        [
            {"access": None},
            {"url": "https://x.example"},
            {"unknown": 1},
            {"revision": 0},
            {"type": "spaceship"},
        ],
    )
    async def test_invalid_patch_is_rejected(
        self, client: httpx.AsyncClient, tenant: TenantCredentials, body: dict[str, object]
    ) -> None:
        asset = (await upload(client, tenant, b"x", "a.txt")).json()
        response = await client.patch(
            f"/v1/assets/{asset['id']}", json=body, headers=tenant.headers
        )
        assert response.status_code in (400, 422), response.text
        assert response.headers["content-type"] == "application/problem+json"

    async def test_malformed_if_match_is_400(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        asset = (await upload(client, tenant, b"x", "a.txt")).json()
        response = await client.patch(
            f"/v1/assets/{asset['id']}", json={}, headers={**tenant.headers, "If-Match": "garbage"}
        )
        assert response.status_code == 400


class TestTrash:
    async def test_trash_hides_restore_shows_and_purge_deletes(
        self, client: httpx.AsyncClient, tenant: TenantCredentials, storage: LocalBlobStorage
    ) -> None:
        asset = (await upload(client, tenant, os.urandom(64), "t.bin")).json()
        assert (
            await client.delete(f"/v1/assets/{asset['id']}", headers=tenant.headers)
        ).status_code == 204

        listed = (await client.get("/v1/assets", headers=tenant.headers)).json()["items"]
        assert listed == []
        with_trash = (
            await client.get("/v1/assets", params={"trashed": "include"}, headers=tenant.headers)
        ).json()["items"]
        assert [a["id"] for a in with_trash] == [asset["id"]]
        assert with_trash[0]["state"] == "trashed"
        only = (
            await client.get("/v1/assets", params={"trashed": "only"}, headers=tenant.headers)
        ).json()
        assert [a["id"] for a in only["items"]] == [asset["id"]]
        # Trashed assets are still readable by id, so that they can be restored knowingly.
        got = await client.get(f"/v1/assets/{asset['id']}", headers=tenant.headers)
        assert got.json()["trashedAt"] is not None

        restored = await client.post(f"/v1/assets/{asset['id']}/restore", headers=tenant.headers)
        assert restored.status_code == 200
        assert restored.json()["state"] == "active"
        listed = (await client.get("/v1/assets", headers=tenant.headers)).json()["items"]
        assert [a["id"] for a in listed] == [asset["id"]]

        purge = await client.delete(f"/v1/assets/{asset['id']}?purge=true", headers=tenant.headers)
        assert purge.status_code == 204
        assert (
            await client.get(f"/v1/assets/{asset['id']}", headers=tenant.headers)
        ).status_code == 404
        # Bytes are released, and removed by gc after the grace period.
        from assetd.maintenance import collect_garbage

        context = client._transport.app.state.context  # type: ignore[attr-defined]
        report = await collect_garbage(context.db, storage, grace_seconds=0)
        assert report.released_blobs_deleted == 1
        assert list(storage.list()) == []

    async def test_trashed_asset_content_is_not_served_publicly(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        asset = (await upload(client, tenant, b"p", "p.txt", meta='{"access": "PUBLIC"}')).json()
        await client.delete(f"/v1/assets/{asset['id']}", headers=tenant.headers)
        assert (await client.get(f"/v1/files/{tenant.slug}/{asset['id']}")).status_code == 404

    async def test_cannot_add_version_to_trashed_asset(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        asset = (await upload(client, tenant, b"p", "p.txt")).json()
        await client.delete(f"/v1/assets/{asset['id']}", headers=tenant.headers)
        response = await new_version(client, tenant, asset["id"], b"new", "n.txt")
        assert response.status_code == 409
