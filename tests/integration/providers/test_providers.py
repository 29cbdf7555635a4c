"""Storage providers through the native API: admin CRUD, write-only secrets, tenant walls."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from assetd.config import Settings
from assetd.db.session import Database
from assetd.providers.readers import InvalidObjectName, LocalObjectReader, ObjectNotFound
from tests.factories import TenantCredentials, add_key, bearer

pytestmark = pytest.mark.anyio

SECRET = "s3cr3t-never-shown-Zq9"
S3_PROVIDER: dict[str, Any] = {
    "name": "edge bucket",
    "kind": "s3",
    "region": "eu-west-1",
    "bucket": "edge-files",
    "endpointUrl": "http://127.0.0.1:9",
    "accessKeyId": "AKIAEXAMPLE",
    "secretAccessKey": SECRET,
    "prefix": "uploads/",
}


@pytest.fixture
def provider_base(tmp_path: Path) -> Path:
    base = tmp_path / "providers"
    base.mkdir()
    return base


@pytest.fixture
def settings(settings: Settings, provider_base: Path) -> Settings:
    return settings.model_copy(update={"provider_local_roots": [provider_base]})


class TestStorageProviderCrud:
    async def test_create_get_list_update_delete_s3(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        created = await client.post(
            "/v1/storage-providers", json=S3_PROVIDER, headers=tenant.headers
        )
        assert created.status_code == 201, created.text
        body = created.json()
        assert len(body["id"]) == 24
        assert body["hasSecret"] is True
        assert body["bucket"] == "edge-files"
        assert created.headers["Location"] == f"/v1/storage-providers/{body['id']}"
        url = f"/v1/storage-providers/{body['id']}"

        fetched = await client.get(url, headers=tenant.headers)
        listed = await client.get("/v1/storage-providers", headers=tenant.headers)
        assert fetched.json() == body
        assert listed.headers["X-Total-Count"] == "1"
        assert [p["id"] for p in listed.json()["items"]] == [body["id"]]

        patched = await client.patch(
            url, json={"name": "renamed", "region": "us-east-2"}, headers=tenant.headers
        )
        assert patched.status_code == 200, patched.text
        assert patched.json()["name"] == "renamed"
        assert patched.json()["hasSecret"] is True
        assert patched.json()["accessKeyId"] == "AKIAEXAMPLE"

        for response in (created, fetched, listed, patched):
            assert SECRET not in response.text
            assert "secretAccessKey" not in response.text

        deleted = await client.delete(url, headers=tenant.headers)
        assert deleted.status_code == 204
        assert (await client.get(url, headers=tenant.headers)).status_code == 404

    async def test_s3_provider_needs_its_own_credentials(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        body = {k: v for k, v in S3_PROVIDER.items() if k != "secretAccessKey"}
        response = await client.post("/v1/storage-providers", json=body, headers=tenant.headers)
        assert response.status_code == 400
        assert "secretAccessKey" in response.json()["detail"]

    async def test_name_is_unique_per_tenant(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCredentials,
        other_tenant: TenantCredentials,
    ) -> None:
        first = await client.post("/v1/storage-providers", json=S3_PROVIDER, headers=tenant.headers)
        again = await client.post("/v1/storage-providers", json=S3_PROVIDER, headers=tenant.headers)
        elsewhere = await client.post(
            "/v1/storage-providers", json=S3_PROVIDER, headers=other_tenant.headers
        )
        assert (first.status_code, again.status_code, elsewhere.status_code) == (201, 409, 201)

    async def test_another_tenants_provider_is_missing(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCredentials,
        other_tenant: TenantCredentials,
    ) -> None:
        created = await client.post(
            "/v1/storage-providers", json=S3_PROVIDER, headers=tenant.headers
        )
        url = f"/v1/storage-providers/{created.json()['id']}"
        headers = other_tenant.headers
        assert (await client.get(url, headers=headers)).status_code == 404
        assert (await client.patch(url, json={"name": "x"}, headers=headers)).status_code == 404
        assert (await client.delete(url, headers=headers)).status_code == 404
        listed = await client.get("/v1/storage-providers", headers=headers)
        assert listed.json()["items"] == []
        assert (await client.get(url, headers=tenant.headers)).json()["name"] == "edge bucket"

    async def test_managing_needs_the_admin_scope(
        self, client: httpx.AsyncClient, db: Database, tenant: TenantCredentials
    ) -> None:
        key = await add_key(db, tenant, "assets:read", "assets:write")
        response = await client.post("/v1/storage-providers", json=S3_PROVIDER, headers=bearer(key))
        assert response.status_code == 403
        assert (await client.get("/v1/storage-providers", headers=bearer(key))).status_code == 403

    @pytest.mark.parametrize(
        "extra",
        [
            {"name": "a\x00b"},
            {"name": "x" * 257},
            {"bucket": "../up"},
            {"endpointUrl": "file:///etc/passwd"},
            {"kind": "ftp"},
            {"unknown": 1},
        ],
    )
    async def test_hostile_fields_are_refused(
        self, client: httpx.AsyncClient, tenant: TenantCredentials, extra: dict[str, Any]
    ) -> None:
        body = {**S3_PROVIDER, **extra}
        response = await client.post("/v1/storage-providers", json=body, headers=tenant.headers)
        assert response.status_code == 422, response.text


class TestLocalProviders:
    async def test_local_root_inside_the_allowed_base(
        self, client: httpx.AsyncClient, tenant: TenantCredentials, provider_base: Path
    ) -> None:
        root = provider_base / "acme"
        root.mkdir()
        body = {"name": "disk", "kind": "local", "root": str(root)}
        response = await client.post("/v1/storage-providers", json=body, headers=tenant.headers)
        assert response.status_code == 201, response.text
        assert response.json()["root"] == str(root.resolve())
        assert response.json()["hasSecret"] is False

    @pytest.mark.parametrize("root", ["/etc", "relative/dir", "{base}/../elsewhere", "{link}"])
    async def test_local_root_outside_the_allowed_base_is_refused(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCredentials,
        provider_base: Path,
        tmp_path: Path,
        root: str,
    ) -> None:
        link = provider_base / "escape"
        link.symlink_to(tmp_path)
        body = {"name": "disk", "kind": "local", "root": root.format(base=provider_base, link=link)}
        response = await client.post("/v1/storage-providers", json=body, headers=tenant.headers)
        assert response.status_code == 400, response.text

    async def test_local_providers_are_off_without_allowed_roots(
        self, client: httpx.AsyncClient, tenant: TenantCredentials, app: Any, tmp_path: Path
    ) -> None:
        app.state.context.settings.provider_local_roots = []
        body = {"name": "disk", "kind": "local", "root": str(tmp_path)}
        response = await client.post("/v1/storage-providers", json=body, headers=tenant.headers)
        assert response.status_code == 400
        assert "disabled" in response.json()["detail"]

    async def test_local_provider_takes_no_s3_settings(
        self, client: httpx.AsyncClient, tenant: TenantCredentials, provider_base: Path
    ) -> None:
        body = {"name": "disk", "kind": "local", "root": str(provider_base), "bucket": "b"}
        response = await client.post("/v1/storage-providers", json=body, headers=tenant.headers)
        assert response.status_code == 400


class TestLocalObjectReader:
    def test_reads_a_file_in_a_bucket(self, tmp_path: Path) -> None:
        (tmp_path / "bucket" / "dir").mkdir(parents=True)
        (tmp_path / "bucket" / "dir" / "f.bin").write_bytes(b"abc")
        reader = LocalObjectReader(tmp_path)
        assert reader.stat("bucket", "dir/f.bin").size_bytes == 3
        assert b"".join(reader.read("bucket", "dir/f.bin")) == b"abc"

    @pytest.mark.parametrize(
        ("bucket", "key"),
        [
            ("bucket", "../secret.txt"),
            ("bucket", "dir/../../secret.txt"),
            ("bucket", "/etc/passwd"),
            ("bucket", "dir\\..\\x"),
            ("bucket", "a//b"),
            ("bucket", "."),
            ("..", "secret.txt"),
            ("bucket", "escape/secret.txt"),
            ("bucket", "x\x00y"),
        ],
    )
    def test_refuses_names_that_escape(self, tmp_path: Path, bucket: str, key: str) -> None:
        (tmp_path / "root" / "bucket").mkdir(parents=True)
        (tmp_path / "secret.txt").write_text("secret")
        (tmp_path / "root" / "bucket" / "escape").symlink_to(tmp_path)
        reader = LocalObjectReader(tmp_path / "root")
        with pytest.raises(InvalidObjectName):
            reader.stat(bucket, key)
        with pytest.raises(InvalidObjectName):
            reader.read(bucket, key)

    def test_missing_file_and_folders_are_not_objects(self, tmp_path: Path) -> None:
        (tmp_path / "bucket" / "dir").mkdir(parents=True)
        reader = LocalObjectReader(tmp_path)
        for key in ("nope.bin", "dir"):
            with pytest.raises(ObjectNotFound):
                reader.stat("bucket", key)
