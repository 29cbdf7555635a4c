"""Seed 004: package upload → packageUpload report → install (by the artifact object) →
artifact download, under /mobile/tools/1.0."""

from __future__ import annotations

import io
import json
import os
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from assetd.app import create_app
from assetd.auth.principal import INSTALL, READ, WRITE
from assetd.config import Settings
from assetd.db.session import Database
from tests.factories import TenantCredentials, add_key, bearer, make_tenant, upload
from tests.integration.packages.conftest import PackageBuilder, jpeg
from tests.server import run_server

pytestmark = pytest.mark.anyio

BASE = "/mobile/tools/1.0"
UPLOAD = f"{BASE}/import/package/upload"
INSTALL_PATH = f"{BASE}/import/package/install"
TYPO_INSTALL = "/moble/tools/1.0/import/package/install"

A1 = "0190bb00000000000000a001"
A2 = "0190bb00000000000000a002"
A3 = "0190bb00000000000000a003"
A4 = "0190bb00000000000000a004"
C1 = "0190bb00000000000000c001"

# The seed's example response, one item kept per non-empty list: every key and the type of
# every value the seed shows. A null in the example admits anything; a scalar admits null
# (assetd does not know an MCS entity's etag or createdOn); lists and objects must match.
EXAMPLE: dict[str, Any] = {
    "policies": None,
    "importResults": {
        "records": [
            {
                "assetId": "4c5cc3c5-c3e4-47f9-a87a-f7b88aa2e7c7",
                "assetType": "StorageCollection",
                "resultCode": "CREATED",
                "resolvedTo": None,
                "messages": [],
            }
        ],
        "dependencies": {
            "mobilebackends": [],
            "apis": [],
            "implementations": [],
            "connectors": [],
            "collections": [
                {
                    "id": "4c5cc3c5-c3e4-47f9-a87a-f7b88aa2e7c7",
                    "name": "images",
                    "version": "1.0",
                    "desc": "Customer and technician photos",
                    "links": [],
                    "published": False,
                    "inTrash": False,
                    "actionComment": None,
                    "etag": "0",
                    "createdOn": "2017-07-11T20:10:41.563Z",
                    "modifiedOn": "2017-07-11T20:37:49.911Z",
                    "modifiedBy": "jdoe",
                    "deletedOn": None,
                    "deletedBy": None,
                    "userIsolated": False,
                    "syncControl": True,
                    "guid": "OW2V7PVFUNAZDDQLLFFUVA24PQ",
                    "roles": [],
                }
            ],
            "unresolvedDependencies": [],
            "roles": [],
            "packages": [],
            "clients": [],
        },
    },
    "status": "SUCCESS",
    "policyValidationReport": None,
    "artifact": {
        "name": "package-salesPlusPackage.zip",
        "id": "5132ec5c-5fa2-4487-bcde-3854cffef086",
        "properties": {"is.package": "true"},
        "downloadLink": "/mobile/tools/1.0/artifacts/5132ec5c-5fa2-4487-bcde-3854cffef086",
    },
    "package": {
        "id": None,
        "name": "salesPlusPackage",
        "version": "1.0",
        "desc": None,
        "links": [],
        "published": None,
        "inTrash": None,
        "actionComment": None,
        "etag": None,
        "createdOn": None,
        "modifiedOn": None,
        "modifiedBy": None,
        "deletedOn": None,
        "deletedBy": None,
        "packageType": None,
        "documentation": "Using Export Package REST API",
        "systemVersion": "17.3.1.0.0.170711.0502",
        "formatVersion": 6,
    },
}
# An asset entry in dependencies: the entity fields of the seed's apis/implementations.
ENTITY_KEYS = set(EXAMPLE["importResults"]["dependencies"]["collections"][0]) - {
    "userIsolated",
    "syncControl",
    "guid",
}
ERROR_KEYS = {"type", "title", "status", "detail", "instance", "o:errorCode", "o:errorDetails"}


def assert_shaped_like(example: Any, actual: Any, where: str = "$") -> None:
    if example is None:
        return
    if isinstance(example, dict):
        assert isinstance(actual, dict), (where, actual)
        missing = set(example) - set(actual)
        assert not missing, (where, missing)
        for key, value in example.items():
            assert_shaped_like(value, actual[key], f"{where}.{key}")
    elif isinstance(example, list):
        assert isinstance(actual, list), (where, actual)
        if example and actual:
            for item in actual:
                assert_shaped_like(example[0], item, f"{where}[]")
    elif actual is not None:
        # bool before int: True is an int to isinstance.
        assert type(actual) is type(example), (where, example, actual)


def sample(tmp_path: Path, needs: str | None = None) -> PackageBuilder:
    """A photo in a collection, a script that needs it, a link that needs the script, and a
    zip shipped as a `package` asset; optionally something the tenant must already have."""
    builder = PackageBuilder(name="salesPlusPackage", version="1.0")
    builder.collection(C1, "images", "Customer and technician photos")
    builder.add(A1, jpeg(tmp_path), "photo.jpg", type="image", collections=[C1])
    builder.add(
        A2,
        b"#!/bin/sh\necho hello\n",
        "setup.sh",
        type="script",
        dependsOn=[A1, *([needs] if needs else [])],
    )
    builder.add(A3, None, type="other", kind="LINK", url="https://example.com/docs", dependsOn=[A2])
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as archive:
        archive.writestr("readme.txt", "inner package")
    builder.add(A4, inner.getvalue(), "inner.zip", type="package")
    return builder


async def tools_upload(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    data: bytes,
    filename: str = "package-salesPlusPackage.zip",
) -> httpx.Response:
    return await client.post(
        UPLOAD, files={"file": (filename, data, "application/zip")}, headers=headers
    )


async def tools_install(
    client: httpx.AsyncClient, headers: dict[str, str], artifact: Any, path: str = INSTALL_PATH
) -> httpx.Response:
    return await client.post(path, json=artifact, headers=headers)


async def uploaded(
    client: httpx.AsyncClient, headers: dict[str, str], data: bytes
) -> dict[str, Any]:
    response = await tools_upload(client, headers, data)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def codes(body: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {
        r["assetId"]: (r["assetType"], r["resultCode"]) for r in body["importResults"]["records"]
    }


async def asset_states(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> list[tuple[str, int, str]]:
    items = (await client.get("/v1/assets", headers=headers)).json()["items"]
    return sorted((a["id"], a["revision"], a["modifiedAt"]) for a in items)


def assert_error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    assert set(body) == ERROR_KEYS, body
    assert body["status"] == status
    assert body["type"].endswith(f"#status.{status}")
    assert body["o:errorCode"].startswith("urn:assetd:error:")
    assert body["detail"]
    return body


class TestSeedExample:
    async def test_upload_answers_the_seed_example_shape(
        self, client: httpx.AsyncClient, tenant: TenantCredentials, tmp_path: Path
    ) -> None:
        readme = await upload(client, tenant, b"# Read me\n\nplain text\n", "readme.txt")
        assert readme.status_code == 201, readme.text
        tenant_asset = readme.json()
        data = sample(tmp_path, needs=tenant_asset["id"]).zip()

        response = await tools_upload(client, tenant.headers, data)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/json"
        body = response.json()
        assert list(body) == list(EXAMPLE)
        assert_shaped_like(EXAMPLE, body)

        assert body["policies"] is None
        assert body["status"] == "SUCCESS"
        assert body["policyValidationReport"] is None
        assert set(body["importResults"]) == {"records", "dependencies"}
        for record in body["importResults"]["records"]:
            assert set(record) == {"assetId", "assetType", "resultCode", "resolvedTo", "messages"}
            assert record["resolvedTo"] is None  # the ids are free here: kept
        assert codes(body) == {
            C1: ("StorageCollection", "CREATED"),
            A1: ("Image", "CREATED"),
            A2: ("Script", "CREATED"),
            A3: ("Other", "CREATED"),
            A4: ("Package", "CREATED"),
        }

        deps = body["importResults"]["dependencies"]
        assert list(deps)[:9] == list(EXAMPLE["importResults"]["dependencies"])
        for key in ("mobilebackends", "apis", "implementations", "connectors", "roles", "clients"):
            assert deps[key] == [], key
        assert deps["unresolvedDependencies"] == []
        (collection,) = deps["collections"]
        assert (collection["id"], collection["name"], collection["version"]) == (
            C1,
            "images",
            "1.0",
        )
        assert (collection["qualifier"], collection["resolvedTo"], collection["roles"]) == (
            "self",
            None,
            [],
        )

        (photo,) = deps["images"]
        (script,) = deps["scripts"]
        (link,) = deps["others"]
        (inner,) = deps["packages"]
        for entity in (photo, script, link, inner):
            assert ENTITY_KEYS <= set(entity), entity
            assert (entity["qualifier"], entity["version"]) == ("self", "1.0")
        assert (photo["id"], photo["assetType"]) == (A1, "Image")
        assert [u["id"] for u in photo["usedBy"]] == [A2]
        assert (inner["id"], inner["assetType"]) == (A4, "Package")
        assert {u["id"]: u["type"] for u in script["uses"]} == {
            A1: "Image",
            tenant_asset["id"]: tenant_asset["type"].capitalize(),
        }
        assert [u["id"] for u in link["uses"]] == [A2]
        # What the package needs from the tenant is listed under its own type, as "tenant".
        needed = [
            entity
            for group in deps.values()
            for entity in group
            if isinstance(entity, dict) and entity.get("qualifier") == "tenant"
        ]
        assert [(e["id"], e["name"], e["version"]) for e in needed] == [
            (tenant_asset["id"], "readme.txt", None)
        ]
        assert needed[0] in deps[f"{tenant_asset['type']}s"]

        artifact = body["artifact"]
        assert set(artifact) == {"name", "id", "properties", "downloadLink"}
        assert artifact["name"] == "package-salesPlusPackage.zip"
        assert artifact["properties"] == {"is.package": "true"}
        assert artifact["downloadLink"] == f"{BASE}/artifacts/{artifact['id']}"

        package = body["package"]
        assert list(package) == list(EXAMPLE["package"])
        assert package["id"] is None
        assert (package["name"], package["version"], package["formatVersion"]) == (
            "salesPlusPackage",
            "1.0",
            1,
        )
        # Nothing is installed by an upload.
        assert (await client.get(f"/v1/assets/{A1}", headers=tenant.headers)).status_code == 404

    async def test_artifact_round_trip_install_and_idempotent_reinstall(
        self, client: httpx.AsyncClient, tenant: TenantCredentials, tmp_path: Path
    ) -> None:
        h = tenant.headers
        data = sample(tmp_path).zip()
        body = await uploaded(client, h, data)
        artifact = body["artifact"]

        download = await client.get(artifact["downloadLink"], headers=h)
        assert download.status_code == 200, download.text
        assert download.content == data
        assert download.headers["content-type"] == "application/zip"
        assert "package-salesPlusPackage.zip" in download.headers["content-disposition"]

        # The artifact object goes back exactly as the upload returned it.
        installed = await tools_install(client, h, artifact)
        assert installed.status_code == 200, installed.text
        done = installed.json()
        assert_shaped_like(EXAMPLE, done)
        assert done["status"] == "SUCCESS"
        assert done["artifact"] == artifact
        assert {code for _, code in codes(done).values()} == {"CREATED"}
        photo = (await client.get(f"/v1/assets/{A1}", headers=h)).json()
        assert photo["type"] == "image"
        members = (await client.get(f"/v1/collections/{C1}/assets", headers=h)).json()
        assert [a["id"] for a in members["items"]] == [A1]
        deps = (await client.get(f"/v1/assets/{A2}/dependencies", headers=h)).json()
        assert deps == {"assetId": A2, "dependsOn": [A1], "requiredBy": [A3]}
        before = await asset_states(client, h)

        # Again, only the id this time, and through the seed's misspelt path: nothing changes.
        again = await tools_install(client, h, {"id": artifact["id"]}, TYPO_INSTALL)
        assert again.status_code == 200, again.text
        assert again.json()["status"] == "SUCCESS"
        assert {code for _, code in codes(again.json()).values()} == {"UNCHANGED"}
        assert (await client.get(f"/v1/assets/{A1}", headers=h)).json()["revision"] == photo[
            "revision"
        ]
        assert await asset_states(client, h) == before

        # A fresh upload of the same zip now reports everything as already there.
        report = await uploaded(client, h, data)
        assert {code for _, code in codes(report).values()} == {"UNCHANGED"}
        assert report["status"] == "SUCCESS"

    async def test_typo_path_is_hidden_from_the_schema(self, client: httpx.AsyncClient) -> None:
        paths = (await client.get("/openapi.json")).json()["paths"]
        assert {INSTALL_PATH, UPLOAD, f"{BASE}/artifacts/{{artifact_id}}"} <= set(paths)
        assert not [p for p in paths if p.startswith("/moble/")]


class TestRefusalsAndResolutions:
    async def test_unresolved_dependency_fails_then_installs_when_ignored(
        self, client: httpx.AsyncClient, tenant: TenantCredentials, tmp_path: Path
    ) -> None:
        h = tenant.headers
        body = await uploaded(client, h, sample(tmp_path, needs="crm-connector-7").zip())
        assert body["status"] == "FAILURE"
        deps = body["importResults"]["dependencies"]
        assert deps["unresolvedDependencies"] == [{"id": "crm-connector-7", "requiredBy": [A2]}]
        uses = {u["id"]: u for u in deps["scripts"][0]["uses"]}
        assert uses["crm-connector-7"] == {
            "id": "crm-connector-7",
            "name": None,
            "version": None,
            "type": None,
        }

        refused = await tools_install(client, h, body["artifact"])
        assert refused.status_code == 409, refused.text
        failed = refused.json()
        assert_shaped_like(EXAMPLE, failed)
        assert failed["status"] == "FAILURE"
        assert failed["artifact"] == body["artifact"]
        assert failed["importResults"]["dependencies"]["unresolvedDependencies"] == [
            {"id": "crm-connector-7", "requiredBy": [A2]}
        ]
        assert (await client.get(f"/v1/assets/{A1}", headers=h)).status_code == 404

        artifact = {
            **body["artifact"],
            "properties": {"is.package": "true", "ignore.unresolved": True},
        }
        installed = await tools_install(client, h, artifact)
        assert installed.status_code == 200, installed.text
        assert installed.json()["status"] == "SUCCESS"
        assert (await client.get(f"/v1/assets/{A1}", headers=h)).status_code == 200

    async def test_conflict_resolved_by_properties(
        self, client: httpx.AsyncClient, tenant: TenantCredentials, tmp_path: Path
    ) -> None:
        h = tenant.headers
        first = await uploaded(client, h, sample(tmp_path).zip())
        assert (await tools_install(client, h, first["artifact"])).status_code == 200
        assert (await client.delete(f"/v1/assets/{A1}", headers=h)).status_code == 204

        report = await uploaded(client, h, sample(tmp_path).zip())
        assert report["status"] == "FAILURE"
        assert codes(report)[A1] == ("Image", "CONFLICT")
        (record,) = [r for r in report["importResults"]["records"] if r["assetId"] == A1]
        assert record["messages"] == [{"message": "the asset is in the trash", "params": []}]
        artifact = report["artifact"]
        refused = await tools_install(client, h, artifact)
        assert refused.status_code == 409
        assert codes(refused.json())[A1] == ("Image", "CONFLICT")

        wrong = await tools_install(client, h, {**artifact, "properties": {"on.conflict": "maybe"}})
        assert_error(wrong, 400)

        # Per asset: skip keeps the trashed photo where it is.
        skip = {**artifact, "properties": {f"on.conflict.{A1}": "skip"}}
        skipped = await tools_install(client, h, skip)
        assert skipped.status_code == 200, skipped.text
        assert codes(skipped.json())[A1] == ("Image", "UNCHANGED")
        assert (await client.get(f"/v1/assets/{A1}", headers=h)).json()["state"] == "trashed"

        overwrite = {**artifact, "properties": {"on.conflict": "OVERWRITE"}}
        restored = await tools_install(client, h, overwrite)
        assert restored.status_code == 200, restored.text
        assert codes(restored.json())[A1] == ("Image", "UPDATED")
        assert (await client.get(f"/v1/assets/{A1}", headers=h)).json()["state"] == "active"

    async def test_policy_findings_fill_the_policy_validation_report(
        self, client: httpx.AsyncClient, db: Database, tmp_path: Path
    ) -> None:
        strict = await make_tenant(db, "strict", allowed_extensions=["jpg", "zip"])
        body = await uploaded(client, strict.headers, sample(tmp_path).zip())
        assert body["status"] == "FAILURE"
        assert codes(body)[A2] == ("Script", "ERROR")
        report = body["policyValidationReport"]
        assert report["valid"] is False
        assert [(f["assetId"], f["policy"]) for f in report["validationResults"]] == [
            (A2, "extension")
        ]
        assert "sh" in report["validationResults"][0]["message"]


class TestIsolation:
    async def test_other_tenants_artifacts_answer_like_missing_ones(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCredentials,
        other_tenant: TenantCredentials,
        tmp_path: Path,
    ) -> None:
        readme = (await upload(client, tenant, b"tenant only\n", "readme.txt")).json()
        data = sample(tmp_path, needs=readme["id"]).zip()
        mine = await uploaded(client, tenant.headers, data)
        assert mine["status"] == "SUCCESS"
        artifact = mine["artifact"]
        missing = "0190bb0000000000000000ff"

        theirs = await client.get(artifact["downloadLink"], headers=other_tenant.headers)
        absent = await client.get(f"{BASE}/artifacts/{missing}", headers=other_tenant.headers)
        a, b = assert_error(theirs, 404), assert_error(absent, 404)
        assert (a["title"], a["o:errorCode"]) == (b["title"], b["o:errorCode"])
        assert a["detail"].replace(artifact["id"], missing) == b["detail"]

        for path in (INSTALL_PATH, TYPO_INSTALL):
            stolen = await tools_install(client, other_tenant.headers, artifact, path)
            nothing = await tools_install(client, other_tenant.headers, {"id": missing}, path)
            a, b = assert_error(stolen, 404), assert_error(nothing, 404)
            assert a["detail"].replace(artifact["id"], missing) == b["detail"]

        # The same zip uploaded by the other tenant sees none of the first tenant's things:
        # the tenant asset it needs is unresolved there, and the ids taken get new ones.
        assert (await tools_install(client, tenant.headers, artifact)).status_code == 200
        other = await uploaded(client, other_tenant.headers, data)
        assert other["artifact"]["id"] != artifact["id"]
        assert other["status"] == "FAILURE"
        deps = other["importResults"]["dependencies"]
        assert deps["unresolvedDependencies"] == [{"id": readme["id"], "requiredBy": [A2]}]
        records = other["importResults"]["records"]
        assert {r["resultCode"] for r in records} == {"CREATED"}
        assert all(r["resolvedTo"] not in (None, r["assetId"]) for r in records)
        # And the first tenant's artifact is still its own, unchanged.
        again = await client.get(artifact["downloadLink"], headers=tenant.headers)
        assert again.content == data


class TestCredentials:
    async def test_no_credentials_is_401_for_every_endpoint(
        self, client: httpx.AsyncClient, tenant: TenantCredentials, tmp_path: Path
    ) -> None:
        artifact = (await uploaded(client, tenant.headers, sample(tmp_path).zip()))["artifact"]
        for response in (
            await tools_upload(client, {}, sample(tmp_path).zip()),
            await tools_install(client, {}, artifact),
            await tools_install(client, {}, artifact, TYPO_INSTALL),
            await client.get(artifact["downloadLink"]),
            await tools_upload(client, bearer("assetd_not-a-key"), b"zip"),
        ):
            assert_error(response, 401)
            assert response.headers["www-authenticate"].startswith("Bearer")

    async def test_each_endpoint_needs_its_scope(
        self, client: httpx.AsyncClient, db: Database, tenant: TenantCredentials, tmp_path: Path
    ) -> None:
        artifact = (await uploaded(client, tenant.headers, sample(tmp_path).zip()))["artifact"]
        reader = bearer(await add_key(db, tenant, READ))
        writer = bearer(await add_key(db, tenant, WRITE))
        installer = bearer(await add_key(db, tenant, INSTALL))

        assert_error(await tools_upload(client, reader, sample(tmp_path).zip()), 403)
        assert_error(await tools_upload(client, installer, sample(tmp_path).zip()), 403)
        assert (await tools_upload(client, writer, sample(tmp_path).zip())).status_code == 200

        # Installing is its own privilege: writing assets is not enough.
        body = assert_error(await tools_install(client, writer, artifact), 403)
        assert INSTALL in body["detail"]
        assert_error(await tools_install(client, reader, artifact), 403)
        assert (await client.get(f"/v1/assets/{A1}", headers=tenant.headers)).status_code == 404

        assert_error(await client.get(artifact["downloadLink"], headers=installer), 403)
        assert (await client.get(artifact["downloadLink"], headers=reader)).status_code == 200
        assert (await tools_install(client, installer, artifact)).status_code == 200


class TestHostileInput:
    async def test_install_bodies(
        self, client: httpx.AsyncClient, tenant: TenantCredentials, tmp_path: Path
    ) -> None:
        h = tenant.headers
        malformed = await client.post(
            INSTALL_PATH, content=b'{"id": ', headers={**h, "content-type": "application/json"}
        )
        assert_error(malformed, 400)
        assert_error(await client.post(INSTALL_PATH, headers=h), 400)
        no_id = assert_error(await tools_install(client, h, {"name": "x.zip"}), 400)
        assert no_id["o:errorDetails"][0]["o:errorPath"] == "body.id"
        assert_error(await tools_install(client, h, {"id": 42}), 400)
        assert_error(await tools_install(client, h, ["not", "an", "object"]), 400)
        assert_error(await tools_install(client, h, {"id": "a\x00b"}), 400)
        for wrong in ("../../etc/passwd", "5132ec5c-5fa2-4487-bcde-3854cffef086", "x" * 200):
            assert_error(await tools_install(client, h, {"id": wrong}), 404)
        assert_error(await client.get(f"{BASE}/artifacts/..%20not-an-id", headers=h), 404)
        too_many = {
            "id": "0190bb0000000000000000ff",
            "properties": {str(i): "x" for i in range(1001)},
        }
        assert_error(await tools_install(client, h, too_many), 400)
        bad_flag = {"id": "0190bb0000000000000000ff", "properties": {"ignore.unresolved": "yes"}}
        assert_error(await tools_install(client, h, bad_flag), 400)

    async def test_uploads_that_are_not_a_package_file(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        h = tenant.headers
        no_file = await client.post(
            UPLOAD, data={"name": "x"}, files={"other": ("a", b"b")}, headers=h
        )
        assert "'file'" in assert_error(no_file, 400)["detail"]
        raw = await client.post(
            UPLOAD, content=b"PK\x03\x04", headers={**h, "content-type": "application/zip"}
        )
        assert_error(raw, 400)
        broken = await client.post(
            UPLOAD,
            content=b'--nope\r\nContent-Disposition: form-data; name="file"\r\n\r\nxx',
            headers={**h, "content-type": "multipart/form-data; boundary=other"},
        )
        assert "multipart" in assert_error(broken, 400)["detail"]
        native = await client.get("/v1/packages", headers=h)
        assert native.headers["x-total-count"] == "0"

    async def test_hostile_zips_are_refused_with_their_problems(
        self, client: httpx.AsyncClient, tenant: TenantCredentials, tmp_path: Path
    ) -> None:
        h = tenant.headers
        cases = {
            "not_a_zip": b"this is not a zip at all",
            "unsafe_path": sample(tmp_path).zip(extra={"../../evil.sh": b"rm -rf /"}),
            "manifest_invalid": PackageBuilder().zip(manifest=b"{not json"),
        }
        for code, data in cases.items():
            body = assert_error(await tools_upload(client, h, data), 422)
            assert body["title"] == "Package refused"
            assert code in [d["o:errorCode"] for d in body["o:errorDetails"]], body
        traversal = assert_error(await tools_upload(client, h, cases["unsafe_path"]), 422)
        assert "../../evil.sh" in [d["o:errorPath"] for d in traversal["o:errorDetails"]]
        # Nothing of a refused package is kept.
        assert (await client.get("/v1/packages", headers=h)).headers["x-total-count"] == "0"

    async def test_oversized_packages_are_413(
        self, db: Database, settings: Settings, tmp_path: Path
    ) -> None:
        small = settings.model_copy(update={"package_max_bytes": 1024})
        app: FastAPI = create_app(small)
        tenant = await make_tenant(db, "acme")
        tight = await make_tenant(db, "tight", quota_bytes=1024)
        data = sample(tmp_path).zip()
        assert len(data) > 1024
        async with app.router.lifespan_context(app):
            async with tiny_client(app) as http:
                too_big = assert_error(await tools_upload(http, tenant.headers, data), 413)
                assert "1024" in too_big["detail"]
                assert_error(await tools_upload(http, tight.headers, data), 413)
                left = await http.get("/v1/packages", headers=tenant.headers)
                assert left.headers["x-total-count"] == "0"


def tiny_client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


@pytest.mark.slow
def test_seed_curl_example_against_assetd_serve(
    tmp_path: Path, server_database: str | None
) -> None:
    """The seed's curl line, unchanged, against a real `assetd serve`."""
    (tmp_path / "package.zip").write_bytes(sample(tmp_path).zip())
    with run_server(tmp_path / "data", database_url=server_database) as server:
        assert server.key is not None
        env = {**os.environ, "TOKEN": server.key, "BASE_URL": server.url}
        command = (
            'curl -i -X POST --form file=@package.zip -H "Authorization: Bearer $TOKEN" '
            '"$BASE_URL/mobile/tools/1.0/import/package/upload"'
        )
        done = subprocess.run(
            command, shell=True, cwd=tmp_path, env=env, capture_output=True, check=True, timeout=60
        )
        head, _, payload = done.stdout.decode().partition("\r\n\r\n")
        assert head.startswith("HTTP/1.1 200"), done.stdout
        assert "content-type: application/json" in head.lower()
        body = json.loads(payload)
        assert_shaped_like(EXAMPLE, body)
        assert body["status"] == "SUCCESS"
        assert body["artifact"]["name"] == "package.zip"
        with httpx.Client(base_url=server.url, headers=server.headers) as http:
            installed = http.post(INSTALL_PATH, json=body["artifact"])
            assert installed.status_code == 200, installed.text
            assert http.get(f"/v1/assets/{A1}").json()["type"] == "image"
