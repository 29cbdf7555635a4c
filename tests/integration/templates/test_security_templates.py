"""Security templates: managing them, assigning them, and who then sees and does what."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from assetd.app import create_app
from assetd.config import Settings
from assetd.db.session import Database
from tests.factories import TenantCredentials, add_key, bearer, upload
from tests.integration.templates.conftest import json_asset, security_template

pytestmark = pytest.mark.anyio

MEMBER_SCOPES = ("assets:read", "assets:write", "assets:delete")
ALL_ACTIONS = ["view", "download", "edit", "delete"]
MISSING_ASSET = "0" * 24


async def key_with_roles(db: Database, tenant: TenantCredentials, *roles: str) -> dict[str, str]:
    return bearer(await add_key(db, tenant, *MEMBER_SCOPES, roles=list(roles)))


@dataclass
class Library:
    """Assets under every combination of two templates, and keys holding various roles."""

    editors: str  # editor: everything; viewer: view only
    legal: str  # lawyer: view and download
    open: str  # no template: anybody in the tenant
    team: str  # editors
    contract: str  # legal
    shared: str  # editors and legal
    admin: dict[str, str]
    editor: dict[str, str]
    viewer: dict[str, str]
    lawyer: dict[str, str]
    nobody: dict[str, str]


@pytest.fixture
async def library(client: httpx.AsyncClient, db: Database, tenant: TenantCredentials) -> Library:
    editors = await security_template(
        client, tenant, "editors", {"editor": ALL_ACTIONS, "viewer": ["view"]}
    )
    legal = await security_template(client, tenant, "legal", {"lawyer": ["view", "download"]})

    async def blob(name: str, templates: list[str]) -> str:
        meta = json.dumps({"name": name, "securityTemplateIds": templates})
        response = await upload(client, tenant, name.encode(), f"{name}.txt", meta=meta)
        assert response.status_code == 201, response.text
        asset_id: str = response.json()["id"]
        return asset_id

    return Library(
        editors=editors,
        legal=legal,
        open=await blob("open", []),
        team=await blob("team", [editors]),
        contract=await blob("contract", [legal]),
        shared=await blob("shared", [editors, legal]),
        admin=tenant.headers,
        editor=await key_with_roles(db, tenant, "editor"),
        viewer=await key_with_roles(db, tenant, "viewer"),
        lawyer=await key_with_roles(db, tenant, "lawyer"),
        nobody=await key_with_roles(db, tenant),
    )


async def listed(
    client: httpx.AsyncClient, headers: dict[str, str], **params: Any
) -> tuple[set[str], int]:
    response = await client.get(
        "/v1/assets", params=params, headers={**headers, "X-Total-Count": "true"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["total"] == int(response.headers["x-total-count"])
    return {a["name"] for a in body["items"]}, body["total"]


class TestManaging:
    async def test_create_read_list_update_delete(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        created = await client.post(
            "/v1/security-templates",
            json={
                "name": "editors",
                "description": "The editorial team",
                "grants": [
                    {"role": "editor", "actions": ["edit", "view"]},
                    {"role": "editor", "actions": ["view", "download"]},
                    {"role": "Team Lead (EU)", "actions": ALL_ACTIONS},
                ],
            },
            headers=tenant.headers,
        )
        assert created.status_code == 201, created.text
        body = created.json()
        assert created.headers["location"] == f"/v1/security-templates/{body['id']}"
        # One entry per role, actions in a fixed order.
        assert body["grants"] == [
            {"role": "Team Lead (EU)", "actions": ALL_ACTIONS},
            {"role": "editor", "actions": ["view", "download", "edit"]},
        ]
        got = await client.get(f"/v1/security-templates/{body['id']}", headers=tenant.headers)
        assert got.json() == body
        await security_template(client, tenant, "archive", {})
        listing = await client.get("/v1/security-templates", headers=tenant.headers)
        assert listing.headers["x-total-count"] == "2"
        assert [t["name"] for t in listing.json()["items"]] == ["archive", "editors"]
        assert listing.json()["items"][1]["grants"] == body["grants"]

        patched = await client.patch(
            f"/v1/security-templates/{body['id']}",
            json={"grants": [{"role": "viewer", "actions": ["view"]}]},
            headers=tenant.headers,
        )
        assert patched.status_code == 200, patched.text
        assert patched.json()["grants"] == [{"role": "viewer", "actions": ["view"]}]
        assert patched.json()["name"] == "editors"
        renamed = await client.patch(
            f"/v1/security-templates/{body['id']}",
            json={"name": "staff"},
            headers=tenant.headers,
        )
        assert renamed.json()["grants"] == [{"role": "viewer", "actions": ["view"]}]
        conflict = await client.patch(
            f"/v1/security-templates/{body['id']}",
            json={"name": "archive"},
            headers=tenant.headers,
        )
        assert conflict.status_code == 409
        duplicate = await client.post(
            "/v1/security-templates", json={"name": "archive"}, headers=tenant.headers
        )
        assert duplicate.status_code == 409

        deleted = await client.delete(
            f"/v1/security-templates/{body['id']}", headers=tenant.headers
        )
        assert deleted.status_code == 204
        gone = await client.get(f"/v1/security-templates/{body['id']}", headers=tenant.headers)
        assert gone.status_code == 404

    async def test_managing_needs_admin_and_reading_needs_read(
        self, client: httpx.AsyncClient, db: Database, tenant: TenantCredentials
    ) -> None:
        template_id = await security_template(client, tenant, "t", {"r": ["view"]})
        member = await key_with_roles(db, tenant, "r")
        url = f"/v1/security-templates/{template_id}"
        assert (await client.get(url, headers=member)).status_code == 200
        assert (await client.get("/v1/security-templates", headers=member)).status_code == 200
        for method, path, body in (
            ("POST", "/v1/security-templates", {"name": "x"}),
            ("PATCH", url, {"name": "x"}),
            ("DELETE", url, None),
        ):
            response = await client.request(method, path, json=body, headers=member)
            assert response.status_code == 403, (method, response.text)
        assert (await client.get("/v1/security-templates")).status_code == 401

    @pytest.mark.parametrize(
        "body",
        [
            {"name": "x", "grants": [{"role": "r", "actions": []}]},
            {"name": "x", "grants": [{"role": "r", "actions": ["fly"]}]},
            {"name": "x", "grants": [{"role": "", "actions": ["view"]}]},
            {"name": "x", "grants": [{"role": "r" * 101, "actions": ["view"]}]},
            {"name": "x", "grants": [{"role": "a\nb", "actions": ["view"]}]},
            {"name": "x", "grants": [{"role": "a\u0000", "actions": ["view"]}]},
            {"name": "x", "grants": [{"role": "r", "actions": ["view"] * 5}]},
            {"name": "x", "grants": [{"role": f"r{i}", "actions": ["view"]} for i in range(101)]},
            {"name": "x", "grants": [{"role": "r", "actions": ["view"], "extra": 1}]},
            {"name": "x", "grants": "all"},
            {"name": ""},
            {"name": "x" * 201},
        ],
    )
    async def test_malformed_templates_are_422(
        self, client: httpx.AsyncClient, tenant: TenantCredentials, body: dict[str, Any]
    ) -> None:
        response = await client.post("/v1/security-templates", json=body, headers=tenant.headers)
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == "application/problem+json"

    @pytest.mark.parametrize("template_id", ["nope", "0" * 36, "x" * 3000, "%00"])
    async def test_unknown_or_malformed_ids_are_404(
        self, client: httpx.AsyncClient, tenant: TenantCredentials, template_id: str
    ) -> None:
        url = f"/v1/security-templates/{template_id}"
        for method, body in (("GET", None), ("PATCH", {"name": "x"}), ("DELETE", None)):
            response = await client.request(method, url, json=body, headers=tenant.headers)
            assert response.status_code == 404, (method, response.text)

    async def test_template_carried_by_assets_cannot_be_deleted(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        template_id = await security_template(client, tenant, "t", {"r": ["view"]})
        asset = (await json_asset(client, tenant.headers, securityTemplateIds=[template_id])).json()
        url = f"/v1/security-templates/{template_id}"
        refused = await client.delete(url, headers=tenant.headers)
        assert refused.status_code == 409
        await client.delete(f"/v1/assets/{asset['id']}?purge=true", headers=tenant.headers)
        assert (await client.delete(url, headers=tenant.headers)).status_code == 204


class TestVisibility:
    async def test_lists_show_what_each_role_may_view_with_matching_totals(
        self, client: httpx.AsyncClient, library: Library
    ) -> None:
        everything = {"open", "team", "contract", "shared"}
        assert await listed(client, library.admin) == (everything, 4)
        assert await listed(client, library.editor) == ({"open", "team", "shared"}, 3)
        assert await listed(client, library.viewer) == ({"open", "team", "shared"}, 3)
        assert await listed(client, library.lawyer) == ({"open", "contract", "shared"}, 3)
        assert await listed(client, library.nobody) == ({"open"}, 1)
        # With a query, with the trash, and page by page.
        assert await listed(client, library.lawyer, q="name:~^(contract|team)") == (
            {"contract"},
            1,
        )
        assert await listed(client, library.viewer, trashed="only") == (set(), 0)
        seen: list[str] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"pageSize": 1, **({"cursor": cursor} if cursor else {})}
            page = (await client.get("/v1/assets", params=params, headers=library.viewer)).json()
            seen.extend(a["name"] for a in page["items"])
            cursor = page["nextCursor"]
            if cursor is None:
                break
        assert sorted(seen) == ["open", "shared", "team"]

    async def test_assets_show_their_templates(
        self, client: httpx.AsyncClient, library: Library
    ) -> None:
        shared = await client.get(f"/v1/assets/{library.shared}", headers=library.admin)
        assert sorted(shared.json()["securityTemplateIds"]) == sorted(
            [library.editors, library.legal]
        )
        opened = await client.get(f"/v1/assets/{library.open}", headers=library.nobody)
        assert opened.json()["securityTemplateIds"] == []

    async def test_an_invisible_asset_answers_like_a_missing_one(
        self, client: httpx.AsyncClient, library: Library
    ) -> None:
        for path, method, body in (
            ("", "GET", None),
            ("", "PATCH", {"name": "x"}),
            ("", "DELETE", None),
            ("?purge=true", "DELETE", None),
            ("/restore", "POST", None),
            ("/versions", "GET", None),
            ("/versions/1/promote", "POST", None),
            ("/content", "GET", None),
            ("/versions/1/content", "GET", None),
            ("/signed-url", "POST", None),
        ):
            hidden = await client.request(
                method, f"/v1/assets/{library.contract}{path}", json=body, headers=library.viewer
            )
            missing = await client.request(
                method, f"/v1/assets/{MISSING_ASSET}{path}", json=body, headers=library.viewer
            )
            assert hidden.status_code == missing.status_code == 404, (path, hidden.text)
            assert hidden.json()["detail"].replace(library.contract, "X") == missing.json()[
                "detail"
            ].replace(MISSING_ASSET, "X")
        new_version = await client.post(
            f"/v1/assets/{library.contract}/versions",
            files={"file": ("x.txt", b"x")},
            headers=library.viewer,
        )
        assert new_version.status_code == 404
        for headers in (library.nobody, library.editor):
            response = await client.get(f"/v1/assets/{library.contract}", headers=headers)
            assert response.status_code == 404
        # Still there, untouched, for those who may see it.
        kept = await client.get(f"/v1/assets/{library.contract}", headers=library.lawyer)
        assert kept.json()["state"] == "active"
        assert kept.json()["revision"] == 1

    async def test_visible_but_not_granted_is_403(
        self, client: httpx.AsyncClient, library: Library
    ) -> None:
        team = f"/v1/assets/{library.team}"
        assert (await client.get(team, headers=library.viewer)).status_code == 200
        assert (await client.get(f"{team}/versions", headers=library.viewer)).status_code == 200
        for method, path, body in (
            ("GET", "/content", None),
            ("HEAD", "/content", None),
            ("GET", "/versions/1/content", None),
            ("POST", "/signed-url", None),
            ("PATCH", "", {"name": "x"}),
            ("POST", "/versions/1/promote", None),
            ("DELETE", "", None),
            ("DELETE", "?purge=true", None),
            ("POST", "/restore", None),
        ):
            response = await client.request(
                method, f"{team}{path}", json=body, headers=library.viewer
            )
            assert response.status_code == 403, (method, path, response.text)
        new_version = await client.post(
            f"{team}/versions", files={"file": ("x.txt", b"x")}, headers=library.viewer
        )
        assert new_version.status_code == 403
        # The lawyer may download the contract but not change or delete it.
        contract = f"/v1/assets/{library.contract}"
        download = await client.get(f"{contract}/content", headers=library.lawyer)
        assert download.status_code == 200
        assert download.content == b"contract"
        assert (
            await client.patch(contract, json={"name": "x"}, headers=library.lawyer)
        ).status_code == 403
        assert (await client.delete(contract, headers=library.lawyer)).status_code == 403

    async def test_one_granting_template_is_enough(
        self, client: httpx.AsyncClient, library: Library
    ) -> None:
        shared = f"/v1/assets/{library.shared}"
        assert (await client.get(f"{shared}/content", headers=library.lawyer)).status_code == 200
        edited = await client.patch(shared, json={"name": "shared2"}, headers=library.editor)
        assert edited.status_code == 200
        trashed = await client.delete(shared, headers=library.editor)
        assert trashed.status_code == 204
        restored = await client.post(f"{shared}/restore", headers=library.editor)
        assert restored.status_code == 200

    async def test_assets_without_templates_are_open_to_the_tenant(
        self, client: httpx.AsyncClient, library: Library
    ) -> None:
        opened = f"/v1/assets/{library.open}"
        assert (await client.get(f"{opened}/content", headers=library.nobody)).status_code == 200
        patched = await client.patch(opened, json={"name": "o"}, headers=library.nobody)
        assert patched.status_code == 200

    async def test_changed_grants_apply_at_once(
        self, client: httpx.AsyncClient, library: Library
    ) -> None:
        team = f"/v1/assets/{library.team}/content"
        assert (await client.get(team, headers=library.viewer)).status_code == 403
        await client.patch(
            f"/v1/security-templates/{library.editors}",
            json={"grants": [{"role": "viewer", "actions": ["view", "download"]}]},
            headers=library.admin,
        )
        assert (await client.get(team, headers=library.viewer)).status_code == 200
        assert await listed(client, library.editor) == ({"open"}, 1)

    async def test_signed_urls_and_public_delivery(
        self, client: httpx.AsyncClient, tenant: TenantCredentials, library: Library
    ) -> None:
        signed = await client.post(f"/v1/assets/{library.team}/signed-url", headers=library.editor)
        assert signed.status_code == 200, signed.text
        # The URL is the grant: it serves without credentials.
        served = await client.get(signed.json()["url"])
        assert served.status_code == 200
        assert served.content == b"team"
        # Credentials on /v1/files are held to the asset's templates.
        files = f"/v1/files/{tenant.slug}/{library.team}"
        assert (await client.get(files, headers=library.viewer)).status_code == 403
        assert (await client.get(files, headers=library.editor)).status_code == 200
        hidden = await client.get(
            f"/v1/files/{tenant.slug}/{library.contract}", headers=library.viewer
        )
        assert hidden.status_code == 404
        # PUBLIC content is public whatever its templates.
        await client.patch(
            f"/v1/assets/{library.contract}", json={"access": "PUBLIC"}, headers=library.admin
        )
        public = await client.get(f"/v1/files/{tenant.slug}/{library.contract}")
        assert public.status_code == 200

    async def test_seed_media_adapter_applies_the_same_rule(
        self, client: httpx.AsyncClient, tenant: TenantCredentials, library: Library
    ) -> None:
        base = f"/media/{tenant.slug}/assets"
        listing = await client.get(base, headers={**library.viewer, "X-Total-Count": "true"})
        assert listing.status_code == 200
        assert listing.headers["x-total-count"] == "3"
        assert {a["id"] for a in listing.json()} == {library.open, library.team, library.shared}
        hidden = await client.get(f"{base}/{library.contract}", headers=library.viewer)
        assert hidden.status_code == 404
        assert hidden.json()["code"] == 404
        refused = await client.get(f"{base}/{library.team}/download", headers=library.viewer)
        assert refused.status_code == 403
        assert refused.json()["code"] == 403
        allowed = await client.get(f"{base}/{library.contract}/download", headers=library.lawyer)
        assert allowed.status_code == 200
        deleted = await client.delete(f"{base}/{library.contract}", headers=library.lawyer)
        assert deleted.status_code == 403


class TestAssigning:
    async def test_members_assign_only_templates_granted_to_them(
        self, client: httpx.AsyncClient, library: Library
    ) -> None:
        refused = await json_asset(client, library.editor, securityTemplateIds=[library.legal])
        assert refused.status_code == 403, refused.text
        assert library.legal in refused.json()["detail"]
        # Granted by any action, even one that isn't view.
        created = await json_asset(
            client, library.viewer, securityTemplateIds=[library.editors, library.editors]
        )
        assert created.status_code == 201, created.text
        assert created.json()["securityTemplateIds"] == [library.editors]
        # Adding another's template to an asset is refused too; keeping one is fine.
        shared = f"/v1/assets/{library.shared}"
        kept = await client.patch(
            shared,
            json={"securityTemplateIds": [library.legal, library.editors], "name": "s"},
            headers=library.editor,
        )
        assert kept.status_code == 200, kept.text
        team = f"/v1/assets/{library.team}"
        added = await client.patch(
            team,
            json={"securityTemplateIds": [library.editors, library.legal]},
            headers=library.editor,
        )
        assert added.status_code == 403
        assert (await client.get(team, headers=library.lawyer)).status_code == 404
        # Removing every template would open the asset to the whole tenant: admins only.
        cleared = await client.patch(team, json={"securityTemplateIds": []}, headers=library.editor)
        assert cleared.status_code == 403
        narrowed = await client.patch(
            shared, json={"securityTemplateIds": [library.legal]}, headers=library.editor
        )
        assert narrowed.status_code == 200
        # ...after which the editor no longer sees it.
        assert (await client.get(shared, headers=library.editor)).status_code == 404
        by_admin = await client.patch(
            team, json={"securityTemplateIds": None}, headers=library.admin
        )
        assert by_admin.status_code == 200
        assert by_admin.json()["securityTemplateIds"] == []
        assert (await client.get(team, headers=library.lawyer)).status_code == 200

    async def test_admins_assign_any_template(
        self, client: httpx.AsyncClient, library: Library
    ) -> None:
        created = await json_asset(
            client, library.admin, securityTemplateIds=[library.legal.upper()]
        )
        assert created.status_code == 201
        assert created.json()["securityTemplateIds"] == [library.legal]

    async def test_unknown_foreign_and_malformed_ids_are_422(
        self,
        client: httpx.AsyncClient,
        library: Library,
        other_tenant: TenantCredentials,
    ) -> None:
        theirs = await security_template(client, other_tenant, "theirs", {"editor": ALL_ACTIONS})
        for ids in (
            [theirs],
            ["ea6eb24d-adef-4080-bd02-f64f567c437f"],
            ["not-a-uuid"],
            [library.editors, theirs],
        ):
            for headers in (library.admin, library.editor):
                response = await json_asset(client, headers, securityTemplateIds=ids)
                assert response.status_code == 422, (ids, response.text)
                assert response.json()["errors"][0]["field"] == "securityTemplateIds"
            patched = await client.patch(
                f"/v1/assets/{library.team}",
                json={"securityTemplateIds": ids},
                headers=library.admin,
            )
            assert patched.status_code == 422
        assert await listed(client, library.admin) == (
            {"open", "team", "contract", "shared"},
            4,
        )
        # Nothing of theirs became usable or visible.
        theirs_read = await client.get(f"/v1/security-templates/{theirs}", headers=library.admin)
        assert theirs_read.status_code == 404

    async def test_oversized_lists_are_refused(
        self, client: httpx.AsyncClient, library: Library
    ) -> None:
        response = await json_asset(
            client, library.admin, securityTemplateIds=[library.editors] * 51
        )
        assert response.status_code in (400, 422)
        response = await json_asset(client, library.admin, securityTemplateIds=["x" * 65])
        assert response.status_code in (400, 422)
        response = await client.patch(
            f"/v1/assets/{library.team}",
            json={"securityTemplateIds": ["a\u0000"]},
            headers=library.admin,
        )
        assert response.status_code == 422


class TestKeyRoles:
    async def test_keys_carry_roles_from_the_api(
        self, client: httpx.AsyncClient, tenant: TenantCredentials, library: Library
    ) -> None:
        created = await client.post(
            "/v1/keys",
            json={"scopes": ["assets:read"], "roles": ["lawyer", "lawyer"]},
            headers=tenant.headers,
        )
        assert created.status_code == 201, created.text
        assert created.json()["roles"] == ["lawyer"]
        headers = bearer(created.json()["key"])
        assert await listed(client, headers) == ({"open", "contract", "shared"}, 3)

    @pytest.mark.parametrize(
        "roles", [[""], ["x" * 101], ["a\u0000"], ["a\tb"], [f"r{i}" for i in range(51)]]
    )
    async def test_bad_roles_are_refused(
        self, client: httpx.AsyncClient, tenant: TenantCredentials, roles: list[str]
    ) -> None:
        response = await client.post("/v1/keys", json={"roles": roles}, headers=tenant.headers)
        assert response.status_code == 422


@pytest.fixture
async def jwt_client(db: Database, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    configured = settings.model_copy(
        update={"jwt_hs256_secret": SecretStr("jwt-secret-jwt-secret-jwt-secret")}
    )
    app: FastAPI = create_app(configured)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            yield client


def token(roles: Any, scope: str = "assets:read assets:write assets:delete") -> dict[str, str]:
    claims = {
        "sub": "u1",
        "tenant": "acme",
        "scope": scope,
        "roles": roles,
        "exp": int(time.time()) + 60,
    }
    return bearer(jwt.encode(claims, "jwt-secret-jwt-secret-jwt-secret", algorithm="HS256"))


class TestJwtRoles:
    async def test_jwt_roles_decide_like_key_roles(
        self, jwt_client: httpx.AsyncClient, library: Library
    ) -> None:
        assert await listed(jwt_client, token(["lawyer"])) == ({"open", "contract", "shared"}, 3)
        assert await listed(jwt_client, token(["lawyer", "editor"])) == (
            {"open", "team", "contract", "shared"},
            4,
        )
        assert await listed(jwt_client, token("lawyer")) == ({"open"}, 1)  # not a list
        assert await listed(jwt_client, token([])) == ({"open"}, 1)
        assert await listed(jwt_client, token(["viewer"], scope="admin")) == (
            {"open", "team", "contract", "shared"},
            4,
        )
        viewer = token(["viewer"])
        team = f"/v1/assets/{library.team}"
        assert (await jwt_client.get(team, headers=viewer)).status_code == 200
        assert (await jwt_client.get(f"{team}/content", headers=viewer)).status_code == 403
        hidden = await jwt_client.get(f"/v1/assets/{library.contract}", headers=viewer)
        assert hidden.status_code == 404
        created = await json_asset(jwt_client, viewer, securityTemplateIds=[library.editors])
        assert created.status_code == 201
        assert created.json()["createdBy"] == "user:u1"
