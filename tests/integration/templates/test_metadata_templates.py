"""Metadata templates: managing them, and assets whose metadata they validate."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from assetd.db.session import Database
from assetd.storage.local import LocalBlobStorage
from tests.factories import TenantCredentials, add_key, bearer, upload
from tests.integration.templates.conftest import (
    CATALOGUE_FIELDS,
    VALID_METADATA,
    json_asset,
    metadata_template,
)

pytestmark = pytest.mark.anyio


def error_fields(response: httpx.Response) -> dict[str, str]:
    """field path -> error type, from a 422 problem."""
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    return {e["field"]: e["type"] for e in response.json()["errors"]}


class TestManagingTemplates:
    async def test_create_read_list_update_delete(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        created = await client.post(
            "/v1/metadata-templates",
            json={"name": "catalogue", "description": "Shop", "fields": CATALOGUE_FIELDS},
            headers=tenant.headers,
        )
        assert created.status_code == 201, created.text
        body = created.json()
        assert created.headers["location"] == f"/v1/metadata-templates/{body['id']}"
        assert len(body["id"]) == 36
        assert body["fields"][1] == {
            "name": "color",
            "label": "",
            "type": "vocabulary",
            "required": False,
            "allowedValues": ["red", "green"],
            "columns": None,
        }
        assert body["fields"][5]["columns"][0]["allowedValues"] == ["EU", "US"]

        got = await client.get(f"/v1/metadata-templates/{body['id']}", headers=tenant.headers)
        assert got.json() == body
        # Ids are uuids: any case finds the template.
        upper = await client.get(
            f"/v1/metadata-templates/{body['id'].upper()}", headers=tenant.headers
        )
        assert upper.status_code == 200

        await metadata_template(client, tenant, "another", fields=[])
        listing = await client.get(
            "/v1/metadata-templates", params={"pageSize": 1}, headers=tenant.headers
        )
        assert listing.status_code == 200
        assert listing.headers["x-total-count"] == "2"
        page = listing.json()
        assert [t["name"] for t in page["items"]] == ["another"]
        assert page["total"] == 2
        second = await client.get(
            "/v1/metadata-templates",
            params={"pageSize": 1, "pageNumber": 2},
            headers=tenant.headers,
        )
        assert [t["name"] for t in second.json()["items"]] == ["catalogue"]

        patched = await client.patch(
            f"/v1/metadata-templates/{body['id']}",
            json={"name": "shop", "fields": [{"name": "sku", "type": "string"}]},
            headers=tenant.headers,
        )
        assert patched.status_code == 200, patched.text
        assert patched.json()["name"] == "shop"
        assert patched.json()["description"] == "Shop"
        assert [f["name"] for f in patched.json()["fields"]] == ["sku"]
        assert patched.json()["modifiedAt"] >= body["modifiedAt"]

        deleted = await client.delete(
            f"/v1/metadata-templates/{body['id']}", headers=tenant.headers
        )
        assert deleted.status_code == 204
        gone = await client.get(f"/v1/metadata-templates/{body['id']}", headers=tenant.headers)
        assert gone.status_code == 404
        assert gone.headers["content-type"] == "application/problem+json"

    async def test_names_are_unique_per_tenant(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCredentials,
        other_tenant: TenantCredentials,
    ) -> None:
        first = await metadata_template(client, tenant, "catalogue")
        again = await client.post(
            "/v1/metadata-templates", json={"name": "catalogue"}, headers=tenant.headers
        )
        assert again.status_code == 409
        other = await metadata_template(client, tenant, "other", fields=[])
        rename = await client.patch(
            f"/v1/metadata-templates/{other['id']}",
            json={"name": "catalogue"},
            headers=tenant.headers,
        )
        assert rename.status_code == 409
        # Renaming to its own name is no conflict; another tenant may use the name.
        same = await client.patch(
            f"/v1/metadata-templates/{first['id']}",
            json={"name": "catalogue"},
            headers=tenant.headers,
        )
        assert same.status_code == 200
        await metadata_template(client, other_tenant, "catalogue")

    async def test_managing_needs_admin_and_reading_needs_read(
        self, client: httpx.AsyncClient, db: Database, tenant: TenantCredentials
    ) -> None:
        template = await metadata_template(client, tenant)
        writer = bearer(await add_key(db, tenant, "assets:read", "assets:write"))
        url = f"/v1/metadata-templates/{template['id']}"
        assert (await client.get(url, headers=writer)).status_code == 200
        assert (await client.get("/v1/metadata-templates", headers=writer)).status_code == 200
        for method, path, body in (
            ("POST", "/v1/metadata-templates", {"name": "x"}),
            ("PATCH", url, {"name": "x"}),
            ("DELETE", url, None),
        ):
            response = await client.request(method, path, json=body, headers=writer)
            assert response.status_code == 403, (method, response.text)
        assert (await client.get(url)).status_code == 401
        nothing = bearer(await add_key(db, tenant, "assets:write"))
        assert (await client.get(url, headers=nothing)).status_code == 403

    @pytest.mark.parametrize(
        "fields",
        [
            [{"name": "c", "type": "vocabulary"}],
            [{"name": "c", "type": "vocabulary", "allowedValues": []}],
            [{"name": "c", "type": "vocabulary", "allowedValues": ["a", "a"]}],
            [{"name": "c", "type": "vocabulary", "allowedValues": [""]}],
            [{"name": "c", "type": "string", "allowedValues": ["a"]}],
            [{"name": "c", "type": "date", "allowedValues": ["a"]}],
            [{"name": "g", "type": "grid"}],
            [{"name": "g", "type": "grid", "columns": []}],
            [{"name": "s", "type": "string", "columns": [{"name": "a", "type": "string"}]}],
            [{"name": "g", "type": "grid", "columns": [{"name": "a", "type": "multi"}]}],
            [{"name": "g", "type": "grid", "columns": [{"name": "a", "type": "vocabulary"}]}],
            [
                {
                    "name": "g",
                    "type": "grid",
                    "columns": [{"name": "a", "type": "string"}, {"name": "a", "type": "date"}],
                }
            ],
            [{"name": "a", "type": "string"}, {"name": "a", "type": "date"}],
            [{"name": "has space", "type": "string"}],
            [{"name": "1st", "type": "string"}],
            [{"name": "a.b", "type": "string"}],
            [{"name": "x" * 65, "type": "string"}],
            [{"name": "a", "type": "number"}],
            [{"name": "a", "type": "string", "unknownOption": True}],
            [{"name": "a"}],
            [{"name": f"f{i}", "type": "string"} for i in range(101)],
            [{"name": "a", "type": "vocabulary", "allowedValues": ["v"] * 1001}],
            [{"name": "a", "type": "vocabulary", "allowedValues": ["x" * 501]}],
            "not a list",
        ],
    )
    async def test_malformed_definitions_are_422(
        self, client: httpx.AsyncClient, tenant: TenantCredentials, fields: Any
    ) -> None:
        response = await client.post(
            "/v1/metadata-templates", json={"name": "bad", "fields": fields}, headers=tenant.headers
        )
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == "application/problem+json"
        listing = await client.get("/v1/metadata-templates", headers=tenant.headers)
        assert listing.json()["items"] == []

    @pytest.mark.parametrize(
        "body",
        [
            {"name": ""},
            {"name": "   "},
            {"name": "x" * 201},
            {"name": "nul\u0000"},
            {"name": "a", "description": "x" * 2001},
            {"name": "a", "extra": 1},
            {"name": "a", "fields": [{"name": "a", "type": "string", "label": "\u0000"}]},
        ],
    )
    async def test_bad_names_and_bodies_are_422(
        self, client: httpx.AsyncClient, tenant: TenantCredentials, body: dict[str, Any]
    ) -> None:
        response = await client.post("/v1/metadata-templates", json=body, headers=tenant.headers)
        assert response.status_code == 422, response.text

    @pytest.mark.parametrize(
        "template_id",
        ["nope", "0" * 36, "ea6eb24d-adef-4080-bd02-f64f567c437f", "x" * 3000, "%00", "'--"],
    )
    async def test_unknown_or_malformed_ids_are_404(
        self, client: httpx.AsyncClient, tenant: TenantCredentials, template_id: str
    ) -> None:
        url = f"/v1/metadata-templates/{template_id}"
        for method, body in (("GET", None), ("PATCH", {"name": "x"}), ("DELETE", None)):
            response = await client.request(method, url, json=body, headers=tenant.headers)
            assert response.status_code == 404, (method, response.text)
            assert response.headers["content-type"] == "application/problem+json"

    async def test_page_parameters_are_checked(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        for params in ({"pageSize": 0}, {"pageSize": 1001}, {"pageNumber": 0}):
            response = await client.get(
                "/v1/metadata-templates", params=params, headers=tenant.headers
            )
            assert response.status_code == 422


class TestValidation:
    async def test_every_wrong_field_is_listed_at_once(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        template = await metadata_template(client, tenant)
        response = await json_asset(
            client,
            tenant.headers,
            metadataTemplateId=template["id"],
            metadata={
                "color": "blue",
                "shotOn": "2024-02-30",
                "keywords": "not a list",
                "channels": ["web", "tv", 3],
                "prices": [
                    {"market": "XX", "amount": "12", "extra": 1},
                    "not a row",
                    {"validFrom": "yesterday", "amount": True},
                ],
                "bogus": 1,
            },
        )
        assert error_fields(response) == {
            "metadata.bogus": "unknown_field",
            "metadata.title": "required",
            "metadata.color": "not_allowed",
            "metadata.shotOn": "date",
            "metadata.keywords": "type",
            "metadata.channels[1]": "not_allowed",
            "metadata.channels[2]": "type",
            "metadata.prices[0].extra": "unknown_column",
            "metadata.prices[0].market": "not_allowed",
            "metadata.prices[0].amount": "type",
            "metadata.prices[1]": "type",
            "metadata.prices[2].market": "required",
            "metadata.prices[2].amount": "type",
            "metadata.prices[2].validFrom": "date",
        }
        problem = response.json()
        assert problem["title"] == "Invalid metadata"
        assert "catalogue" in problem["detail"]
        assert problem["errors"][0]["loc"][0] == "metadata"
        assert all(e["msg"] for e in problem["errors"])
        # Nothing was created.
        listing = await client.get("/v1/assets", headers=tenant.headers)
        assert listing.json()["items"] == []

    async def test_valid_metadata_is_stored_as_sent(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        template = await metadata_template(client, tenant)
        response = await json_asset(
            client, tenant.headers, metadataTemplateId=template["id"], metadata=VALID_METADATA
        )
        assert response.status_code == 201, response.text
        assert response.json()["metadataTemplateId"] == template["id"]
        assert response.json()["metadata"] == VALID_METADATA
        fetched = await client.get(f"/v1/assets/{response.json()['id']}", headers=tenant.headers)
        assert fetched.json()["metadataTemplateId"] == template["id"]
        assert fetched.json()["metadata"] == VALID_METADATA

    @pytest.mark.parametrize(
        ("value", "ok"),
        [
            ("2024-05-31", True),
            ("2024-05-31T12:00", True),
            ("2024-05-31T12:00:00.123456789+02:00", True),
            ("2024-02-29", True),
            ("2023-02-29", False),
            ("2024-13-01", False),
            ("20240531", False),
            ("31.05.2024", False),
            ("2024-05-31T25:00:00Z", False),
            (20240531, False),
            ("2024-05-31 12:00", False),
        ],
    )
    async def test_dates_are_iso_8601(
        self, client: httpx.AsyncClient, tenant: TenantCredentials, value: Any, ok: bool
    ) -> None:
        template = await metadata_template(client, tenant, fields=[{"name": "on", "type": "date"}])
        response = await json_asset(
            client, tenant.headers, metadataTemplateId=template["id"], metadata={"on": value}
        )
        if ok:
            assert response.status_code == 201, response.text
        else:
            assert error_fields(response) == {"metadata.on": "date"}

    async def test_empty_values_count_as_missing(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        template = await metadata_template(
            client,
            tenant,
            fields=[
                {"name": "a", "type": "string", "required": True},
                {"name": "b", "type": "multi", "required": True},
                {
                    "name": "c",
                    "type": "grid",
                    "required": True,
                    "columns": [{"name": "x", "type": "string"}],
                },
                {"name": "d", "type": "vocabulary", "allowedValues": ["v"]},
            ],
        )
        response = await json_asset(
            client,
            tenant.headers,
            metadataTemplateId=template["id"],
            metadata={"a": "", "b": [], "c": None, "d": None},
        )
        assert error_fields(response) == {
            "metadata.a": "required",
            "metadata.b": "required",
            "metadata.c": "required",
        }
        # Optional fields may be left out or null.
        response = await json_asset(
            client,
            tenant.headers,
            metadataTemplateId=template["id"],
            metadata={"a": "x", "b": ["y"], "c": [{}], "d": None},
        )
        assert response.status_code == 201, response.text

    async def test_limits_on_values(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        template = await metadata_template(client, tenant)
        response = await json_asset(
            client,
            tenant.headers,
            metadataTemplateId=template["id"],
            metadata={
                **VALID_METADATA,
                "title": "x" * 4001,
                "keywords": ["k"] * 501,
                "prices": [{"market": "EU", "amount": 1}] * 1001,
            },
        )
        assert error_fields(response) == {
            "metadata.title": "too_long",
            "metadata.keywords": "too_many",
            "metadata.prices": "too_many",
        }

    async def test_a_flood_of_errors_is_capped(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        template = await metadata_template(client, tenant)
        response = await json_asset(
            client,
            tenant.headers,
            metadataTemplateId=template["id"],
            metadata={**VALID_METADATA, "prices": [{"market": "??", "amount": "?"}] * 1000},
        )
        assert response.status_code == 422
        assert len(response.json()["errors"]) == 100
        assert "more" in response.json()["detail"]

    async def test_upload_with_bad_metadata_stores_nothing(
        self, client: httpx.AsyncClient, tenant: TenantCredentials, storage: LocalBlobStorage
    ) -> None:
        template = await metadata_template(client, tenant)
        meta = json.dumps({"metadataTemplateId": template["id"], "metadata": {"color": "x"}})
        response = await upload(client, tenant, b"bytes", "a.txt", meta=meta)
        assert set(error_fields(response)) == {"metadata.title", "metadata.color"}
        assert list(storage.list("")) == []
        meta = json.dumps({"metadataTemplateId": template["id"], "metadata": VALID_METADATA})
        response = await upload(client, tenant, b"bytes", "a.txt", meta=meta)
        assert response.status_code == 201, response.text
        assert response.json()["metadataTemplateId"] == template["id"]

    async def test_without_a_template_metadata_stays_free_form(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        response = await json_asset(client, tenant.headers, metadata={"any": {"thing": [1]}})
        assert response.status_code == 201
        assert response.json()["metadataTemplateId"] is None
        assert response.json()["metadata"] == {"any": {"thing": [1]}}

    async def test_metadata_must_be_an_object(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        template = await metadata_template(client, tenant)
        response = await json_asset(
            client, tenant.headers, metadataTemplateId=template["id"], metadata=[1, 2]
        )
        assert response.status_code in (400, 422)


class TestAssetUpdates:
    async def test_patch_of_metadata_only_is_checked(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        template = await metadata_template(client, tenant)
        asset = (
            await json_asset(
                client, tenant.headers, metadataTemplateId=template["id"], metadata=VALID_METADATA
            )
        ).json()
        url = f"/v1/assets/{asset['id']}"
        bad = await client.patch(
            url, json={"metadata": {"title": 5, "color": "blue"}}, headers=tenant.headers
        )
        assert error_fields(bad) == {"metadata.title": "type", "metadata.color": "not_allowed"}
        unchanged = (await client.get(url, headers=tenant.headers)).json()
        assert unchanged["metadata"] == VALID_METADATA
        assert unchanged["revision"] == asset["revision"]
        good = await client.patch(
            url, json={"metadata": {"title": "Pears"}}, headers=tenant.headers
        )
        assert good.status_code == 200, good.text
        assert good.json()["metadata"] == {"title": "Pears"}
        cleared = await client.patch(url, json={"metadata": None}, headers=tenant.headers)
        assert error_fields(cleared) == {"metadata.title": "required"}

    async def test_patch_of_template_only_checks_the_stored_metadata(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        loose = await metadata_template(
            client, tenant, "loose", fields=[{"name": "title", "type": "string"}]
        )
        strict = await metadata_template(
            client,
            tenant,
            "strict",
            fields=[
                {"name": "title", "type": "string"},
                {"name": "sku", "type": "string", "required": True},
            ],
        )
        asset = (
            await json_asset(
                client, tenant.headers, metadataTemplateId=loose["id"], metadata={"title": "x"}
            )
        ).json()
        url = f"/v1/assets/{asset['id']}"
        switched = await client.patch(
            url, json={"metadataTemplateId": strict["id"]}, headers=tenant.headers
        )
        assert error_fields(switched) == {"metadata.sku": "required"}
        both = await client.patch(
            url,
            json={"metadataTemplateId": strict["id"], "metadata": {"title": "x", "sku": "1"}},
            headers=tenant.headers,
        )
        assert both.status_code == 200, both.text
        assert both.json()["metadataTemplateId"] == strict["id"]
        # Leaving the template makes the metadata free-form again.
        freed = await client.patch(
            url,
            json={"metadataTemplateId": None, "metadata": {"free": True}},
            headers=tenant.headers,
        )
        assert freed.status_code == 200
        assert freed.json()["metadataTemplateId"] is None
        assert freed.json()["metadata"] == {"free": True}
        # A template id given in another case is stored canonically.
        again = await client.patch(
            url,
            json={"metadataTemplateId": loose["id"].upper(), "metadata": {}},
            headers=tenant.headers,
        )
        assert again.json()["metadataTemplateId"] == loose["id"]

    async def test_a_changed_template_applies_when_the_metadata_next_changes(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        template = await metadata_template(client, tenant)
        asset = (
            await json_asset(
                client, tenant.headers, metadataTemplateId=template["id"], metadata=VALID_METADATA
            )
        ).json()
        await client.patch(
            f"/v1/metadata-templates/{template['id']}",
            json={"fields": [{"name": "title", "type": "string"}]},
            headers=tenant.headers,
        )
        url = f"/v1/assets/{asset['id']}"
        renamed = await client.patch(url, json={"name": "renamed"}, headers=tenant.headers)
        assert renamed.status_code == 200
        touched = await client.patch(url, json={"metadata": VALID_METADATA}, headers=tenant.headers)
        assert "metadata.color" in error_fields(touched)

    async def test_template_in_use_cannot_be_deleted(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        template = await metadata_template(client, tenant)
        asset = (
            await json_asset(
                client, tenant.headers, metadataTemplateId=template["id"], metadata=VALID_METADATA
            )
        ).json()
        url = f"/v1/metadata-templates/{template['id']}"
        await client.delete(f"/v1/assets/{asset['id']}", headers=tenant.headers)
        refused = await client.delete(url, headers=tenant.headers)
        assert refused.status_code == 409, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        await client.delete(f"/v1/assets/{asset['id']}?purge=true", headers=tenant.headers)
        assert (await client.delete(url, headers=tenant.headers)).status_code == 204

    async def test_query_by_template(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        template = await metadata_template(client, tenant)
        tagged = (
            await json_asset(
                client, tenant.headers, metadataTemplateId=template["id"], metadata=VALID_METADATA
            )
        ).json()
        await json_asset(client, tenant.headers)
        found = await client.get(
            "/v1/assets",
            params={"q": f"metadataTemplateId:{template['id']} metadata.color:red"},
            headers=tenant.headers,
        )
        assert [a["id"] for a in found.json()["items"]] == [tagged["id"]]
        none = await client.get(
            "/v1/assets", params={"q": "metadataTemplateId:null"}, headers=tenant.headers
        )
        assert len(none.json()["items"]) == 1


class TestTenantWalls:
    async def test_another_tenants_template_is_unknown(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCredentials,
        other_tenant: TenantCredentials,
    ) -> None:
        theirs = await metadata_template(client, other_tenant)
        url = f"/v1/metadata-templates/{theirs['id']}"
        for method, body in (("GET", None), ("PATCH", {"name": "x"}), ("DELETE", None)):
            response = await client.request(method, url, json=body, headers=tenant.headers)
            assert response.status_code == 404, (method, response.text)
        listing = await client.get("/v1/metadata-templates", headers=tenant.headers)
        assert listing.json()["items"] == []

        missing = "ea6eb24d-adef-4080-bd02-f64f567c437f"
        answers = []
        for template_id in (theirs["id"], missing, "not-a-uuid"):
            response = await json_asset(
                client, tenant.headers, metadataTemplateId=template_id, metadata=VALID_METADATA
            )
            assert response.status_code == 422, response.text
            answers.append(response.json()["detail"].replace(template_id, "X"))
            assert response.json()["errors"][0]["field"] == "metadataTemplateId"
        assert len(set(answers)) == 1
        mine = (await json_asset(client, tenant.headers)).json()
        patched = await client.patch(
            f"/v1/assets/{mine['id']}",
            json={"metadataTemplateId": theirs["id"]},
            headers=tenant.headers,
        )
        assert patched.status_code == 422
        # And theirs is untouched.
        assert (await client.get(url, headers=other_tenant.headers)).json()["name"] == "catalogue"
