"""Packages: upload → report → install (atomic, idempotent) → export → import elsewhere."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import httpx
import pytest

from tests.factories import TenantCredentials
from tests.integration.packages.conftest import PackageBuilder, install, jpeg, upload_package

pytestmark = pytest.mark.anyio

A1 = "0190aa00000000000000a001"
A2 = "0190aa00000000000000a002"
A3 = "0190aa00000000000000a003"
C1 = "0190aa00000000000000c001"


def sample(tmp_path: Path) -> PackageBuilder:
    builder = PackageBuilder(name="starter")
    builder.collection(C1, "starter kit", "all of it")
    builder.add(A1, jpeg(tmp_path), "logo.jpg", type="image", collections=[C1], tags=["brand"])
    builder.add(A2, b"echo hello\n", "setup.sh", type="script", dependsOn=[A1])
    builder.add(A3, None, type="other", kind="LINK", url="https://example.com/docs", dependsOn=[A2])
    return builder


class TestRoundTrip:
    async def test_report_install_reinstall_export_import(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCredentials,
        other_tenant: TenantCredentials,
        tmp_path: Path,
    ) -> None:
        h = tenant.headers
        uploaded = await upload_package(client, h, sample(tmp_path).zip())
        assert uploaded.status_code == 201, uploaded.text
        package = uploaded.json()
        report = package["report"]
        assert report["status"] == "READY", report
        assert {r["assetId"]: r["resultCode"] for r in report["records"]} == {
            A1: "CREATED",
            A2: "CREATED",
            A3: "CREATED",
        }
        assert report["collections"][0]["resultCode"] == "CREATED"
        assert sorted(report["dependencies"]) == ["image", "other", "script"]
        assert report["unresolvedDependencies"] == []
        # Nothing changed yet.
        assert (await client.get(f"/v1/assets/{A1}", headers=h)).status_code == 404

        installed = await install(client, h, package["id"])
        assert installed.status_code == 200, installed.text
        assert installed.json()["status"] == "INSTALLED"
        logo = (await client.get(f"/v1/assets/{A1}", headers=h)).json()
        assert logo["type"] == "image"
        assert logo["tags"] == ["brand"]
        link = (await client.get(f"/v1/assets/{A3}", headers=h)).json()
        assert link["url"] == "https://example.com/docs"
        deps = (await client.get(f"/v1/assets/{A2}/dependencies", headers=h)).json()
        assert deps == {"assetId": A2, "dependsOn": [A1], "requiredBy": [A3]}
        members = await client.get(f"/v1/collections/{C1}/assets", headers=h)
        assert [a["id"] for a in members.json()["items"]] == [A1]

        again = await install(client, h, package["id"])
        assert again.status_code == 200, again.text
        assert {r["resultCode"] for r in again.json()["report"]["records"]} == {"UNCHANGED"}
        second = await upload_package(client, h, sample(tmp_path).zip())
        codes = {r["resultCode"] for r in second.json()["report"]["records"]}
        assert codes == {"UNCHANGED"}, second.json()["report"]
        assert (await install(client, h, second.json()["id"])).status_code == 200
        events = await client.get("/v1/events", params={"q": "type:package.installed"}, headers=h)
        [event] = events.json()["items"]
        assert event["details"]["packageId"] == package["id"]
        assert event["details"]["created"] == 4  # three assets and a collection

        exported = await client.post(
            "/v1/packages/export", json={"assetIds": [A3], "name": "again"}, headers=h
        )
        assert exported.status_code == 200, exported.text
        with zipfile.ZipFile(io.BytesIO(exported.content)) as archive:
            names = sorted(archive.namelist())
        assert names[0].startswith("files/")
        assert "manifest.json" in names
        assert len([n for n in names if n.startswith("files/")]) == 2  # A1 and A2 by dependency

        elsewhere = await upload_package(client, other_tenant.headers, exported.content)
        assert elsewhere.status_code == 201, elsewhere.text
        records = elsewhere.json()["report"]["records"]
        assert {r["resultCode"] for r in records} == {"CREATED"}
        assert all(r["resolvedTo"] for r in records)  # the ids are taken by the first tenant
        done = await install(client, other_tenant.headers, elsewhere.json()["id"])
        assert done.status_code == 200, done.text
        again = await upload_package(client, other_tenant.headers, exported.content)
        assert {r["resultCode"] for r in again.json()["report"]["records"]} == {"UNCHANGED"}
