"""Collections: managing them, their members, searching by membership, and who sees them."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from assetd.db.session import Database
from tests.factories import TenantCredentials, add_key, bearer
from tests.integration.templates.conftest import json_asset, security_template

pytestmark = pytest.mark.anyio

MISSING = "0" * 24
MEMBER_SCOPES = ("assets:read", "assets:write", "assets:delete")


async def new_collection(
    client: httpx.AsyncClient, headers: dict[str, str], name: str = "summer", **body: Any
) -> str:
    response = await client.post("/v1/collections", json={"name": name, **body}, headers=headers)
    assert response.status_code == 201, response.text
    collection_id: str = response.json()["id"]
    return collection_id


async def new_asset(
    client: httpx.AsyncClient, headers: dict[str, str], name: str, **body: Any
) -> str:
    response = await json_asset(client, headers, name=name, **body)
    assert response.status_code == 201, response.text
    asset_id: str = response.json()["id"]
    return asset_id


async def add(
    client: httpx.AsyncClient, headers: dict[str, str], collection_id: str, ids: list[str]
) -> httpx.Response:
    return await client.put(
        f"/v1/collections/{collection_id}/assets", json={"assetIds": ids}, headers=headers
    )


async def names(
    client: httpx.AsyncClient, headers: dict[str, str], path: str, **params: Any
) -> list[str]:
    response = await client.get(path, params=params, headers=headers)
    assert response.status_code == 200, response.text
    return [a["name"] for a in response.json()["items"]]


class TestManaging:
    async def test_create_read_list_update_delete(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        h = tenant.headers
        created = await client.post(
            "/v1/collections", json={"name": "summer", "description": "beach"}, headers=h
        )
        assert created.status_code == 201, created.text
        body = created.json()
        assert created.headers["location"] == f"/v1/collections/{body['id']}"
        assert len(body["id"]) == 24
        assert body["securityTemplateIds"] == []
        assert body["createdBy"] == body["modifiedBy"]
        got = await client.get(f"/v1/collections/{body['id']}", headers=h)
        assert got.json() == body

        await new_collection(client, h, "autumn")
        listing = await client.get("/v1/collections", headers=h)
        assert listing.headers["x-total-count"] == "2"
        assert [c["name"] for c in listing.json()["items"]] == ["autumn", "summer"]
        page = await client.get(
            "/v1/collections", params={"pageSize": 1, "pageNumber": 2}, headers=h
        )
        assert [c["name"] for c in page.json()["items"]] == ["summer"]

        patched = await client.patch(
            f"/v1/collections/{body['id']}", json={"name": "winter"}, headers=h
        )
        assert patched.status_code == 200, patched.text
        assert patched.json()["name"] == "winter"
        assert patched.json()["description"] == "beach"
        clash = await client.patch(
            f"/v1/collections/{body['id']}", json={"name": "autumn"}, headers=h
        )
        assert clash.status_code == 409

        deleted = await client.delete(f"/v1/collections/{body['id']}", headers=h)
        assert deleted.status_code == 204
        gone = await client.get(f"/v1/collections/{body['id']}", headers=h)
        assert gone.status_code == 404
        assert gone.headers["content-type"] == "application/problem+json"

    async def test_name_is_unique_per_tenant(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCredentials,
        other_tenant: TenantCredentials,
    ) -> None:
        await new_collection(client, tenant.headers, "same")
        again = await client.post("/v1/collections", json={"name": "same"}, headers=tenant.headers)
        assert again.status_code == 409
        await new_collection(client, other_tenant.headers, "same")

    async def test_scopes(
        self, client: httpx.AsyncClient, db: Database, tenant: TenantCredentials
    ) -> None:
        reader = bearer(await add_key(db, tenant, "assets:read"))
        collection_id = await new_collection(client, tenant.headers)
        assert (
            await client.get(f"/v1/collections/{collection_id}", headers=reader)
        ).status_code == 200
        refused = await client.post("/v1/collections", json={"name": "x"}, headers=reader)
        assert refused.status_code == 403
        refused = await client.delete(f"/v1/collections/{collection_id}", headers=reader)
        assert refused.status_code == 403
        assert (await client.get("/v1/collections")).status_code == 401


class TestMembers:
    async def test_add_is_idempotent_and_remove(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        h = tenant.headers
        collection_id = await new_collection(client, h)
        a = await new_asset(client, h, "a")
        b = await new_asset(client, h, "b")
        first = await add(client, h, collection_id, [a, b, a])
        assert first.status_code == 200, first.text
        assert first.json() == {"collectionId": collection_id, "added": 2}
        again = await add(client, h, collection_id, [b, a])
        assert again.json()["added"] == 0
        path = f"/v1/collections/{collection_id}/assets"
        assert sorted(await names(client, h, path)) == ["a", "b"]

        removed = await client.delete(f"{path}/{a}", headers=h)
        assert removed.status_code == 204
        assert await names(client, h, path) == ["b"]
        assert (await client.delete(f"{path}/{a}", headers=h)).status_code == 404
        assert (await client.delete(f"{path}/nothex", headers=h)).status_code == 404
        # The asset itself is still there.
        assert (await client.get(f"/v1/assets/{a}", headers=h)).status_code == 200

    async def test_add_refuses_unknown_ids_listing_them_and_adds_none(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        h = tenant.headers
        collection_id = await new_collection(client, h)
        a = await new_asset(client, h, "a")
        response = await add(client, h, collection_id, [a, MISSING, "not-an-id"])
        assert response.status_code == 422, response.text
        body = response.json()
        assert MISSING in body["detail"]
        assert "not-an-id" in body["detail"]
        assert {e["loc"][1] for e in body["errors"]} == {1, 2}
        assert await names(client, h, f"/v1/collections/{collection_id}/assets") == []

    async def test_purging_an_asset_removes_its_membership(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        h = tenant.headers
        collection_id = await new_collection(client, h)
        a = await new_asset(client, h, "a")
        b = await new_asset(client, h, "b")
        assert (await add(client, h, collection_id, [a, b])).status_code == 200
        path = f"/v1/collections/{collection_id}/assets"
        assert (await client.delete(f"/v1/assets/{a}", headers=h)).status_code == 204
        # Trashed: still a member, shown when trashed assets are asked for.
        assert await names(client, h, path) == ["b"]
        assert sorted(await names(client, h, path, trashed="include")) == ["a", "b"]
        purged = await client.delete(f"/v1/assets/{a}", params={"purge": "true"}, headers=h)
        assert purged.status_code == 204
        assert await names(client, h, path, trashed="include") == ["b"]
        # Re-adding b and deleting the collection leave b alone.
        assert (
            await client.delete(f"/v1/collections/{collection_id}", headers=h)
        ).status_code == 204
        assert (await client.get(f"/v1/assets/{b}", headers=h)).status_code == 200

    async def test_list_pages_with_cursor_sort_and_q(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        h = tenant.headers
        collection_id = await new_collection(client, h)
        ids = [
            await new_asset(client, h, f"n{i}", tags=["even" if i % 2 == 0 else "odd"])
            for i in range(7)
        ]
        await new_asset(client, h, "outsider", tags=["even"])
        assert (await add(client, h, collection_id, ids)).status_code == 200
        path = f"/v1/collections/{collection_id}/assets"
        seen: list[str] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"pageSize": 3, "sort": "name"}
            if cursor:
                params["cursor"] = cursor
            response = await client.get(path, params=params, headers={**h, "X-Total-Count": "true"})
            assert response.status_code == 200, response.text
            assert response.headers["x-total-count"] == "7"
            seen += [a["name"] for a in response.json()["items"]]
            cursor = response.json()["nextCursor"]
            if cursor is None:
                break
        assert seen == [f"n{i}" for i in range(7)]
        assert await names(client, h, path, q="tags:even", sort="name") == ["n0", "n2", "n4", "n6"]
        by_page = await names(client, h, path, sort="name:desc", pageSize=2, pageNumber=2)
        assert by_page == ["n4", "n3"]
        bad = await client.get(path, params={"q": "tags:("}, headers=h)
        assert bad.status_code == 400

    async def test_missing_collection_is_404(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        h = tenant.headers
        a = await new_asset(client, h, "a")
        for bad in (MISSING, "zz", "x" * 500):
            assert (await client.get(f"/v1/collections/{bad}/assets", headers=h)).status_code == 404
            assert (await add(client, h, bad, [a])).status_code == 404
            assert (
                await client.patch(f"/v1/collections/{bad}", json={}, headers=h)
            ).status_code == 404


class TestQuery:
    async def test_q_filters_by_collection_with_other_terms(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        h = tenant.headers
        summer = await new_collection(client, h, "summer")
        winter = await new_collection(client, h, "winter")
        beach = await new_asset(client, h, "beach", tags=["sun"])
        pool = await new_asset(client, h, "pool", tags=["water"])
        ski = await new_asset(client, h, "ski", tags=["snow"])
        await new_asset(client, h, "loose")
        assert (await add(client, h, summer, [beach, pool])).status_code == 200
        assert (await add(client, h, winter, [ski, pool])).status_code == 200

        def q(query: str) -> Any:
            return names(client, h, "/v1/assets", q=query, sort="name")

        assert await q(f"collection:{summer}") == ["beach", "pool"]
        assert await q(f"collections:{winter}") == ["pool", "ski"]
        assert await q(f"collection:{summer} tags:water") == ["pool"]
        assert await q(f"collection:{summer} collection:{winter}") == ["pool"]
        assert await q(f"collection:({summer},{winter})") == ["beach", "pool", "ski"]
        assert await q("collection:exists") == ["beach", "pool", "ski"]
        assert await q("collection:null") == ["loose"]
        assert await q(f"collection:{MISSING}") == []
        assert await q("collection:whatever") == []
        for bad in ("collection:>abc", "collection:~abc"):
            response = await client.get("/v1/assets", params={"q": bad}, headers=h)
            assert response.status_code == 400, response.text
        unsortable = await client.get("/v1/assets", params={"sort": "collection"}, headers=h)
        assert unsortable.status_code == 400


class TestTenants:
    async def test_another_tenants_collection_and_assets_are_missing(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCredentials,
        other_tenant: TenantCredentials,
    ) -> None:
        h, other = tenant.headers, other_tenant.headers
        mine = await new_collection(client, h)
        my_asset = await new_asset(client, h, "mine")
        assert (await add(client, h, mine, [my_asset])).status_code == 200
        theirs = await new_collection(client, other)
        their_asset = await new_asset(client, other, "theirs")
        assert (await add(client, other, theirs, [their_asset])).status_code == 200

        for method, path, body in (
            ("GET", f"/v1/collections/{mine}", None),
            ("PATCH", f"/v1/collections/{mine}", {"name": "x"}),
            ("DELETE", f"/v1/collections/{mine}", None),
            ("GET", f"/v1/collections/{mine}/assets", None),
            ("PUT", f"/v1/collections/{mine}/assets", {"assetIds": [their_asset]}),
            ("DELETE", f"/v1/collections/{mine}/assets/{my_asset}", None),
        ):
            response = await client.request(method, path, json=body, headers=other)
            assert response.status_code == 404, (method, path, response.text)
        # Their asset into my collection: not an asset of mine.
        response = await add(client, h, mine, [their_asset])
        assert response.status_code == 422
        assert their_asset in response.json()["detail"]
        assert await names(client, other, "/v1/assets", q=f"collection:{mine}") == []
        assert await names(client, h, "/v1/assets", q=f"collection:{theirs}") == []
        listing = await client.get("/v1/collections", headers=other)
        assert [c["id"] for c in listing.json()["items"]] == [theirs]


class TestSecurity:
    async def test_templates_hide_the_collection_and_guard_changes(
        self, client: httpx.AsyncClient, db: Database, tenant: TenantCredentials
    ) -> None:
        admin = tenant.headers
        editors = await security_template(
            client, tenant, "editors", {"editor": ["view", "edit"], "viewer": ["view"]}
        )
        secret_assets = await security_template(client, tenant, "vault", {"keeper": ["view"]})
        editor = bearer(await add_key(db, tenant, *MEMBER_SCOPES, roles=["editor"]))
        viewer = bearer(await add_key(db, tenant, *MEMBER_SCOPES, roles=["viewer"]))
        nobody = bearer(await add_key(db, tenant, *MEMBER_SCOPES))

        guarded = await new_collection(client, admin, "guarded", securityTemplateIds=[editors])
        await new_collection(client, admin, "open")
        visible = await new_asset(client, admin, "visible")
        hidden = await new_asset(client, admin, "hidden", securityTemplateIds=[secret_assets])
        assert (await add(client, admin, guarded, [visible, hidden])).status_code == 200

        path = f"/v1/collections/{guarded}"
        assert (await client.get(path, headers=nobody)).status_code == 404
        assert (await client.get(f"{path}/assets", headers=nobody)).status_code == 404
        assert (await add(client, nobody, guarded, [visible])).status_code == 404
        assert await names(client, nobody, "/v1/collections") == ["open"]
        listing = await client.get("/v1/collections", headers=nobody)
        assert listing.headers["x-total-count"] == "1"
        assert await names(client, admin, "/v1/collections") == ["guarded", "open"]

        # The viewer sees the collection, but not the assets it may not see, nor may it change it.
        assert (await client.get(path, headers=viewer)).status_code == 200
        assert await names(client, viewer, f"{path}/assets") == ["visible"]
        assert (await client.patch(path, json={"name": "x"}, headers=viewer)).status_code == 403
        assert (await client.delete(f"{path}/assets/{visible}", headers=viewer)).status_code == 403

        # The editor may change it, but only add assets it can see.
        patched = await client.patch(path, json={"description": "d"}, headers=editor)
        assert patched.status_code == 200, patched.text
        refused = await add(client, editor, guarded, [hidden])
        assert refused.status_code == 422
        assert (await client.delete(path, headers=editor)).status_code == 403

    async def test_a_query_by_collection_sees_only_collections_the_caller_may_see(
        self, client: httpx.AsyncClient, db: Database, tenant: TenantCredentials
    ) -> None:
        admin = tenant.headers
        editors = await security_template(client, tenant, "editors", {"viewer": ["view"]})
        viewer = bearer(await add_key(db, tenant, *MEMBER_SCOPES, roles=["viewer"]))
        nobody = bearer(await add_key(db, tenant, *MEMBER_SCOPES))
        guarded = await new_collection(client, admin, "guarded", securityTemplateIds=[editors])
        open_ = await new_collection(client, admin, "open")
        inside = await new_asset(client, admin, "inside")  # an asset anyone may see …
        both = await new_asset(client, admin, "both")
        await new_asset(client, admin, "loose")
        assert (await add(client, admin, guarded, [inside, both])).status_code == 200
        assert (await add(client, admin, open_, [both])).status_code == 200

        # … but that it sits in a collection hidden from the caller is not the caller's to learn.
        assert await names(client, nobody, "/v1/assets", q=f"collection:{guarded}") == []
        assert await names(client, nobody, "/v1/assets", q="collection:exists") == ["both"]
        hidden_from_nobody = await names(client, nobody, "/v1/assets", q="collection:null")
        assert sorted(hidden_from_nobody) == ["inside", "loose"]
        seen_by_viewer = await names(client, viewer, "/v1/assets", q=f"collection:{guarded}")
        assert sorted(seen_by_viewer) == ["both", "inside"]
        assert await names(client, admin, "/v1/assets", q="collection:null") == ["loose"]

    async def test_assigning_a_template_needs_its_grant(
        self, client: httpx.AsyncClient, db: Database, tenant: TenantCredentials
    ) -> None:
        editors = await security_template(client, tenant, "editors", {"editor": ["view", "edit"]})
        legal = await security_template(client, tenant, "legal", {"lawyer": ["view"]})
        editor = bearer(await add_key(db, tenant, *MEMBER_SCOPES, roles=["editor"]))
        ok = await client.post(
            "/v1/collections", json={"name": "a", "securityTemplateIds": [editors]}, headers=editor
        )
        assert ok.status_code == 201, ok.text
        assert ok.json()["securityTemplateIds"] == [editors]
        refused = await client.post(
            "/v1/collections", json={"name": "b", "securityTemplateIds": [legal]}, headers=editor
        )
        assert refused.status_code == 403
        unknown = await client.post(
            "/v1/collections",
            json={"name": "c", "securityTemplateIds": ["7d1a3b5c-0000-4000-8000-000000000000"]},
            headers=editor,
        )
        assert unknown.status_code == 422
        stripped = await client.patch(
            f"/v1/collections/{ok.json()['id']}", json={"securityTemplateIds": []}, headers=editor
        )
        assert stripped.status_code == 403
        # A template carried by a collection cannot be deleted.
        in_use = await client.delete(f"/v1/security-templates/{editors}", headers=tenant.headers)
        assert in_use.status_code == 409


class TestHostileInput:
    async def test_huge_bad_and_nul_inputs_get_clear_errors(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        h = tenant.headers
        collection_id = await new_collection(client, h)
        too_many = await add(client, h, collection_id, [MISSING] * 1001)
        assert too_many.status_code in (400, 422), too_many.text
        many_missing = await add(client, h, collection_id, [f"{i:024x}" for i in range(1000)])
        assert many_missing.status_code == 422
        assert len(many_missing.json()["errors"]) <= 100
        empty = await add(client, h, collection_id, [])
        assert empty.status_code in (400, 422)
        long_id = await add(client, h, collection_id, ["a" * 65])
        assert long_id.status_code in (400, 422)
        wrong_type = await client.put(
            f"/v1/collections/{collection_id}/assets", json={"assetIds": "abc"}, headers=h
        )
        assert wrong_type.status_code in (400, 422)
        not_json = await client.put(
            f"/v1/collections/{collection_id}/assets", content=b"\xff\x00", headers=h
        )
        assert not_json.status_code in (400, 422)
        for body in (
            {"name": "a\x00b"},
            {"name": ""},
            {"name": "x" * 201},
            {"name": "a", "bogus": 1},
        ):
            response = await client.post("/v1/collections", json=body, headers=h)
            assert response.status_code in (400, 422), (body, response.text)
        nul_id = await add(client, h, collection_id, ["00000000000000000000000\x00"])
        assert nul_id.status_code in (400, 422)
        nul_q = await client.get("/v1/assets", params={"q": "collection:\x00"}, headers=h)
        assert nul_q.status_code in (200, 400)
        nul_path = await client.get("/v1/collections/%00", headers=h)
        assert nul_path.status_code == 404
