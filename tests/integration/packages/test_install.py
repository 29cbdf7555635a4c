"""Install: conflicts and how to resolve them, dependencies, tenant policies, atomicity,
scopes and tenant walls."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path
from typing import Any

import httpx
import pytest

from assetd.assets.service import AssetService
from assetd.db.session import Database
from assetd.errors import Conflict
from tests.factories import TenantCredentials, add_key, bearer, make_tenant
from tests.integration.packages.conftest import PackageBuilder, install, jpeg, upload_package

pytestmark = pytest.mark.anyio

A1 = "0190aa00000000000000d001"
A2 = "0190aa00000000000000d002"
C1 = "0190aa00000000000000e001"
MISSING = "0" * 24


def two_assets(description: str = "first") -> PackageBuilder:
    builder = PackageBuilder(name="pair")
    builder.collection(C1, "pair")
    builder.add(A1, b"one\n", "one.txt", description=description, collections=[C1])
    builder.add(A2, b"two\n", "two.txt", dependsOn=[A1], collections=[C1])
    return builder


async def uploaded(
    client: httpx.AsyncClient, headers: dict[str, str], builder: PackageBuilder
) -> dict[str, Any]:
    response = await upload_package(client, headers, builder.zip())
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def codes(package: dict[str, Any]) -> dict[str, str]:
    return {r["assetId"]: r["resultCode"] for r in package["report"]["records"]}


async def installed(
    client: httpx.AsyncClient, headers: dict[str, str], builder: PackageBuilder, **body: Any
) -> dict[str, Any]:
    package = await uploaded(client, headers, builder)
    response = await install(client, headers, package["id"], **body)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


class TestConflicts:
    async def test_trashed_asset_is_a_conflict_until_resolved(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        h = tenant.headers
        await installed(client, h, two_assets())
        assert (await client.delete(f"/v1/assets/{A1}", headers=h)).status_code in (200, 204)
        package = await uploaded(client, h, two_assets("second"))
        assert codes(package)[A1] == "CONFLICT"
        assert package["report"]["records"][0]["reason"] == "trashed"
        assert package["report"]["status"] == "BLOCKED"

        refused = await install(client, h, package["id"])
        assert refused.status_code == 409
        assert refused.json()["report"]["records"][0]["resultCode"] == "CONFLICT"
        assert (await client.get(f"/v1/assets/{A1}", headers=h)).json()["state"] == "trashed"

        skipped = await install(client, h, package["id"], onConflict="skip")
        assert skipped.status_code == 200, skipped.text
        assert (await client.get(f"/v1/assets/{A1}", headers=h)).json()["state"] == "trashed"

        again = await uploaded(client, h, two_assets("second"))
        done = await install(client, h, again["id"], resolutions={A1: "overwrite"})
        assert done.status_code == 200, done.text
        restored = (await client.get(f"/v1/assets/{A1}", headers=h)).json()
        assert (restored["state"], restored["description"]) == ("active", "second")

    async def test_local_changes_since_install_are_a_conflict(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        h = tenant.headers
        await installed(client, h, two_assets())
        changed = await client.patch(f"/v1/assets/{A1}", json={"name": "mine"}, headers=h)
        assert changed.status_code == 200, changed.text
        package = await uploaded(client, h, two_assets("second"))
        assert codes(package) == {A1: "CONFLICT", A2: "UNCHANGED"}
        assert "changed in this tenant" in package["report"]["records"][0]["messages"][0]

        done = await install(client, h, package["id"], onConflict="overwrite")
        assert done.status_code == 200, done.text
        asset = (await client.get(f"/v1/assets/{A1}", headers=h)).json()
        assert (asset["name"], asset["description"]) == ("one.txt", "second")

    async def test_kind_mismatch_is_an_error_no_resolution_fixes(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        h = tenant.headers
        await installed(client, h, two_assets())
        builder = PackageBuilder()
        builder.add(A1, None, kind="LINK", url="https://example.com/", type="other")
        package = await uploaded(client, h, builder)
        assert codes(package) == {A1: "ERROR"}
        refused = await install(client, h, package["id"], onConflict="overwrite")
        assert refused.status_code == 409

    async def test_new_content_adds_a_version(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        h = tenant.headers
        await installed(client, h, two_assets())
        builder = two_assets()
        builder.files[f"files/{A1}/one.txt"] = b"one, revised\n"
        builder.entries[0]["file"]["sha256"] = hashlib.sha256(b"one, revised\n").hexdigest()
        builder.entries[0]["file"]["size"] = len(b"one, revised\n")
        result = await installed(client, h, builder)
        assert codes(result) == {A1: "UPDATED", A2: "UNCHANGED"}
        versions = (await client.get(f"/v1/assets/{A1}/versions", headers=h)).json()
        assert len(versions["items"] if isinstance(versions, dict) else versions) == 2
        content = await client.get(f"/v1/assets/{A1}/content", headers=h)
        assert content.content == b"one, revised\n"


class TestDependencies:
    async def test_unresolved_dependencies_block_unless_ignored(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        h = tenant.headers
        builder = PackageBuilder()
        builder.add(A1, b"x", "x.txt", dependsOn=[MISSING, "com.example:lib"])
        package = await uploaded(client, h, builder)
        report = package["report"]
        assert report["status"] == "BLOCKED"
        assert report["unresolvedDependencies"] == [
            {"id": MISSING, "requiredBy": [A1]},
            {"id": "com.example:lib", "requiredBy": [A1]},
        ]
        assert (await install(client, h, package["id"])).status_code == 409
        done = await install(client, h, package["id"], ignoreUnresolved=True)
        assert done.status_code == 200, done.text
        deps = (await client.get(f"/v1/assets/{A1}/dependencies", headers=h)).json()
        assert deps["dependsOn"] == sorted([MISSING, "com.example:lib"])

    async def test_a_dependency_already_in_the_tenant_resolves(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        h = tenant.headers
        existing = await client.post("/v1/assets", json={"name": "base", "type": "app"}, headers=h)
        base = existing.json()["id"]
        builder = PackageBuilder()
        builder.add(A1, b"x", "x.txt", dependsOn=[base])
        package = await uploaded(client, h, builder)
        assert package["report"]["status"] == "READY"
        node = package["report"]["dependencies"]["app"][0]
        assert (node["id"], node["qualifier"], node["requiredBy"]) == (base, "tenant", [A1])

    async def test_put_dependencies(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCredentials,
        other_tenant: TenantCredentials,
    ) -> None:
        h = tenant.headers
        await installed(client, h, two_assets())
        put = await client.put(
            f"/v1/assets/{A1}/dependencies", json={"dependsOn": [MISSING]}, headers=h
        )
        assert put.status_code == 200, put.text
        assert put.json()["dependsOn"] == [MISSING]
        itself = await client.put(
            f"/v1/assets/{A1}/dependencies", json={"dependsOn": [A1]}, headers=h
        )
        assert itself.status_code == 400
        other = other_tenant.headers
        assert (await client.get(f"/v1/assets/{A1}/dependencies", headers=other)).status_code == 404
        assert (
            await client.put(f"/v1/assets/{A1}/dependencies", json={"dependsOn": []}, headers=other)
        ).status_code == 404


class TestPolicies:
    async def test_each_policy_is_a_finding_and_blocks(
        self, client: httpx.AsyncClient, db: Database, tmp_path: Path
    ) -> None:
        strict = await make_tenant(
            db,
            "strict",
            allowed_extensions=["jpg", "txt"],
            allowed_types=["image", "document"],
            max_file_size_bytes=2000,
            quota_bytes=3000,
        )
        builder = PackageBuilder()
        builder.add(A1, b"#!/bin/sh\necho hi\n", "run.sh", type="script")
        builder.add(A2, b"not a jpeg at all", "fake.jpg", type="image")
        builder.add("0190aa00000000000000d003", b"x" * 2500, "big.txt")
        package = await uploaded(client, strict.headers, builder)
        report = package["report"]
        assert report["status"] == "BLOCKED"
        policies = {(f["assetId"], f["policy"]) for f in report["policyFindings"]}
        assert (A1, "extension") in policies
        assert (A2, "extension") in policies  # named .jpg, is text
        assert ("0190aa00000000000000d003", "size") in policies
        assert set(codes(package).values()) == {"ERROR"}
        assert (await install(client, strict.headers, package["id"])).status_code == 409

    async def test_quota_counts_new_bytes_only(
        self, client: httpx.AsyncClient, db: Database, tmp_path: Path
    ) -> None:
        builder = PackageBuilder()
        builder.add(A1, jpeg(tmp_path, 300, 200), "a.jpg", type="image")
        builder.add(A2, jpeg(tmp_path, 301, 200), "b.jpg", type="image")
        data = builder.zip()
        # Room for the zip itself (an artifact is stored bytes too) but not for its contents.
        small = await make_tenant(db, "small", quota_bytes=len(data) + 1000)
        response = await upload_package(client, small.headers, data)
        assert response.status_code == 201, response.text
        report = response.json()["report"]
        assert [f["policy"] for f in report["policyFindings"]] == ["quota"]
        assert report["policyFindings"][0]["assetId"] is None
        assert report["status"] == "BLOCKED"
        refused = await install(client, small.headers, response.json()["id"])
        assert refused.status_code == 409


class TestAtomicity:
    async def test_a_failure_mid_install_leaves_nothing(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCredentials,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        h = tenant.headers
        package = await uploaded(client, h, two_assets())
        real = AssetService.create_from_upload
        calls = 0

        async def second_fails(self: AssetService, *args: Any, **kwargs: Any) -> Any:
            nonlocal calls
            calls += 1
            if calls == 2:
                raise Conflict("injected failure")
            return await real(self, *args, **kwargs)

        monkeypatch.setattr(AssetService, "create_from_upload", second_fails)
        failed = await install(client, h, package["id"])
        assert failed.status_code == 409
        assert "injected" in failed.json()["detail"]
        monkeypatch.undo()
        assert (await client.get(f"/v1/assets/{A1}", headers=h)).status_code == 404
        assert (await client.get(f"/v1/collections/{C1}", headers=h)).status_code == 404
        assert (await client.get(f"/v1/packages/{package['id']}", headers=h)).json()[
            "status"
        ] == "REPORTED"
        assert (await install(client, h, package["id"])).status_code == 200


class TestAccess:
    async def test_tenant_walls_and_scopes(
        self,
        client: httpx.AsyncClient,
        db: Database,
        tenant: TenantCredentials,
        other_tenant: TenantCredentials,
    ) -> None:
        h = tenant.headers
        data = two_assets().zip()
        package = (await upload_package(client, h, data)).json()
        pid = package["id"]
        other = other_tenant.headers
        for method, path in (
            ("GET", f"/v1/packages/{pid}"),
            ("GET", f"/v1/packages/{pid}/artifact"),
            ("POST", f"/v1/packages/{pid}/install"),
            ("DELETE", f"/v1/packages/{pid}"),
            ("GET", "/v1/packages/not-an-id"),
        ):
            response = await client.request(method, path, headers=other)
            assert response.status_code == 404, (method, path, response.text)
        assert (await client.get("/v1/packages", headers=other)).json()["total"] == 0

        writer = bearer(await add_key(db, tenant, "assets:read", "assets:write"))
        assert (await install(client, writer, pid)).status_code == 403
        reader = bearer(await add_key(db, tenant, "assets:read"))
        assert (await upload_package(client, reader, data)).status_code == 403
        assert (await client.get("/v1/packages")).status_code == 401

        artifact = await client.get(f"/v1/packages/{pid}/artifact", headers=h)
        assert artifact.status_code == 200
        assert artifact.content == data
        assert artifact.headers["content-type"] == "application/zip"
        assert (await client.delete(f"/v1/packages/{pid}", headers=h)).status_code == 204
        assert (await client.get(f"/v1/packages/{pid}", headers=h)).status_code == 404

    async def test_bad_install_and_export_bodies(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        h = tenant.headers
        pid = (await uploaded(client, h, two_assets()))["id"]
        for body in ({"onConflict": "maybe"}, {"resolutions": {A1: "later"}}, {"nope": 1}):
            response = await client.post(f"/v1/packages/{pid}/install", json=body, headers=h)
            assert response.status_code in (400, 422), body
        for body in (
            {},
            {"assetIds": [A1], "q": "type:image"},
            {"assetIds": ["x" * 65]},
            {"q": "type:("},
        ):
            response = await client.post("/v1/packages/export", json=body, headers=h)
            assert response.status_code in (400, 422), (body, response.text)
        hidden = await client.post("/v1/packages/export", json={"assetIds": [MISSING]}, headers=h)
        assert hidden.status_code == 422


class TestExport:
    async def test_by_collection_and_by_query(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        h = tenant.headers
        await installed(client, h, two_assets())
        for body in ({"collectionId": C1}, {"q": "name:two.txt", "includeDependencies": True}):
            response = await client.post("/v1/packages/export", json=body, headers=h)
            assert response.status_code == 200, response.text
            with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
                files = [n for n in archive.namelist() if n.startswith("files/")]
            assert len(files) == 2, (body, files)
        alone = await client.post(
            "/v1/packages/export",
            json={"assetIds": [A2], "includeDependencies": False},
            headers=h,
        )
        assert alone.headers["x-asset-count"] == "1"
