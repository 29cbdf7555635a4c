"""Seed 000 (add new asset for edge runners) through its adapter: objects already in an S3
bucket (moto) or a local provider folder, real APK/MSI files, every documented error code."""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from assetd.config import Settings
from assetd.db.session import Database
from tests.factories import TenantCredentials, add_key, bearer, make_tenant
from tests.fixtures.real_files import make_apk, make_msi

pytestmark = pytest.mark.anyio

EMAIL = re.compile(
    r"^(?!\.)(?!.*\.\.)([A-Za-z0-9_'+\-\.]*)[A-Za-z0-9_+-]@([A-Za-z0-9][A-Za-z0-9\-]*\.)+[A-Za-z]{2,}$"
)
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
HEX24 = re.compile(r"^[a-f0-9]{24}$")
DATA_KEYS = {
    "id",
    "organization",
    "type",
    "name",
    "description",
    "uploadedByInfo",
    "file",
    "size",
    "originalExtension",
    "storageProvider",
    "config",
    "version",
    "updatedAt",
    "createdAt",
}
TEXT = b"#!/bin/sh\necho hello edge\n"


def edge_url(organization: str, *, double_slash: bool = True) -> str:
    slashes = "//" if double_slash else "/"
    return f"/v1/organizations/{organization}/mdm/assets{slashes}edge/asset"


def file_body(provider_id: str, content: bytes, key: str, **overrides: Any) -> dict[str, Any]:
    name = key.rsplit("/", 1)[-1]
    file = {
        "mimetype": "application/octet-stream",
        "bucket": "edge",
        "key": key,
        "location": f"https://files.example.com/edge/{key}",
        "originalName": name,
        "size": len(content),
        "storageProviderId": provider_id,
        "checksum": hashlib.md5(content).hexdigest(),
    }
    file.update(overrides)
    return {"file": file}


def assert_error(response: httpx.Response, status: int, code: int, message: str | None = None):
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status"] is False
    assert body["error"]["code"] == code
    if message is not None:
        assert body["error"]["message"] == message


# -- providers ---------------------------------------------------------------------------------


@pytest.fixture
def provider_base(tmp_path: Path) -> Path:
    base = tmp_path / "providers"
    (base / "acme" / "edge").mkdir(parents=True)
    return base


@pytest.fixture
def settings(settings: Settings, provider_base: Path) -> Settings:
    return settings.model_copy(update={"provider_local_roots": [provider_base]})


@pytest.fixture
async def edge_key(db: Database, tenant: TenantCredentials) -> dict[str, str]:
    """A key with only the seed's permission."""
    return bearer(await add_key(db, tenant, "mdm.global.asset.create"))


@pytest.fixture
async def local_provider(
    client: httpx.AsyncClient, tenant: TenantCredentials, provider_base: Path
) -> dict[str, Any]:
    body = {
        "name": "edge disk",
        "kind": "local",
        "region": "on-prem",
        "root": str(provider_base / "acme"),
    }
    response = await client.post("/v1/storage-providers", json=body, headers=tenant.headers)
    assert response.status_code == 201, response.text
    return dict(response.json())


@pytest.fixture
def put_local(provider_base: Path) -> Callable[[str, bytes], None]:
    def put(key: str, content: bytes) -> None:
        path = provider_base / "acme" / "edge" / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)

    return put


@pytest.fixture
def s3_bucket(s3_server: str, fake_aws_env: None) -> tuple[Any, str]:
    client = boto3.client(
        "s3",
        endpoint_url=s3_server,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    bucket = f"edge-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    return client, bucket


@pytest.fixture
async def s3_provider(
    client: httpx.AsyncClient, tenant: TenantCredentials, s3_server: str, s3_bucket: tuple[Any, str]
) -> dict[str, Any]:
    body = {
        "name": "edge s3",
        "kind": "s3",
        "region": "us-east-1",
        "bucket": s3_bucket[1],
        "endpointUrl": s3_server,
        "accessKeyId": "testing",
        "secretAccessKey": "testing",
        "prefix": "tenants/acme",
    }
    response = await client.post("/v1/storage-providers", json=body, headers=tenant.headers)
    assert response.status_code == 201, response.text
    return dict(response.json())


# -- happy paths -------------------------------------------------------------------------------


class TestRegister:
    async def test_apk_in_s3_gets_its_config_from_the_file(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCredentials,
        edge_key: dict[str, str],
        s3_provider: dict[str, Any],
        s3_bucket: tuple[Any, str],
        tmp_path: Path,
    ) -> None:
        content = make_apk(tmp_path).read_bytes()
        s3, bucket = s3_bucket
        s3.put_object(Bucket=bucket, Key="tenants/acme/apps/demo.apk", Body=content)
        body = file_body(s3_provider["id"], content, "apps/demo.apk", bucket=bucket)
        body["file"]["mimetype"] = "application/vnd.android.package-archive"
        body["segmentId"] = 7

        response = await client.post(edge_url(tenant.id), json=body, headers=edge_key)

        assert response.status_code == 200, response.text
        payload = response.json()
        assert payload["status"] is True
        data = payload["data"]
        assert DATA_KEYS | {"segmentId"} == set(data)
        assert HEX24.fullmatch(data["id"])
        assert data["organization"] == tenant.id
        assert data["type"] == "app"
        assert data["name"] == "demo.apk"
        assert data["description"] == ""
        assert data["size"] == len(content)
        assert data["originalExtension"] == "apk"
        assert data["file"] == "https://files.example.com/edge/apps/demo.apk"
        assert data["storageProvider"] == {
            "id": s3_provider["id"],
            "name": "edge s3",
            "region": "us-east-1",
        }
        assert data["config"] == {
            "apk": {
                "versionCode": "42",
                "versionName": "4.2.0",
                "packageName": "com.example.demo",
                "minSDKVersion": "21",
                "targetSdkVersion": "34",
                "productName": "Demo App",
            }
        }
        assert data["version"] == 1
        assert data["segmentId"] == 7
        assert TIMESTAMP.fullmatch(data["createdAt"])
        assert TIMESTAMP.fullmatch(data["updatedAt"])
        info = data["uploadedByInfo"]
        assert EMAIL.fullmatch(info["email"])
        assert len(info["email"]) <= 256
        assert {"email", "firstName", "lastName"} <= set(info)

        # The bytes were copied into assetd: the native API serves them.
        native = await client.get(f"/v1/assets/{data['id']}", headers=tenant.headers)
        assert native.json()["sha256"] == hashlib.sha256(content).hexdigest()
        assert native.json()["segmentId"] == "7"
        downloaded = await client.get(f"/v1/assets/{data['id']}/content", headers=tenant.headers)
        assert downloaded.content == content

    async def test_msi_in_a_local_provider_by_sha256_single_slash_and_slug(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCredentials,
        edge_key: dict[str, str],
        local_provider: dict[str, Any],
        put_local: Callable[[str, bytes], None],
        tmp_path: Path,
    ) -> None:
        content = make_msi(tmp_path).read_bytes()
        put_local("win/product.msi", content)
        body = file_body(
            local_provider["id"],
            content,
            "win/product.msi",
            checksum="sha256:" + hashlib.sha256(content).hexdigest(),
        )
        body.update(name="Demo installer", description="for the fleet")

        response = await client.post(
            edge_url(tenant.slug, double_slash=False), json=body, headers=edge_key
        )

        assert response.status_code == 200, response.text
        data = response.json()["data"]
        assert "segmentId" not in data
        assert (data["name"], data["description"], data["type"]) == (
            "Demo installer",
            "for the fleet",
            "app",
        )
        assert data["storageProvider"]["region"] == "on-prem"
        msi = data["config"]["msi"]
        assert msi["productName"] == "Demo Product"
        assert msi["productVersion"] == "1.2.3"
        assert msi["manufacturer"] == "Example Corp"
        assert "7410DF3C-E20B-43C2-8E66-43C8AACDEC91" in msi["productCode"].upper()
        assert "apk" not in data["config"]

    async def test_config_apk_given_in_the_request_is_kept(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCredentials,
        edge_key: dict[str, str],
        local_provider: dict[str, Any],
        put_local: Callable[[str, bytes], None],
        tmp_path: Path,
    ) -> None:
        content = make_apk(tmp_path).read_bytes()
        put_local("demo.apk", content)
        body = file_body(local_provider["id"], content, "demo.apk")
        body["config"] = {
            "apk": {"versionCode": "7", "versionName": "seven", "packageName": "com.given"}
        }
        response = await client.post(edge_url(tenant.id), json=body, headers=edge_key)
        assert response.status_code == 200, response.text
        assert response.json()["data"]["config"] == {
            "apk": {"versionCode": "7", "versionName": "seven", "packageName": "com.given"}
        }

    async def test_other_files_have_an_edge_type_and_no_config(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCredentials,
        edge_key: dict[str, str],
        local_provider: dict[str, Any],
        put_local: Callable[[str, bytes], None],
    ) -> None:
        put_local("notes.txt", TEXT)
        body = file_body(local_provider["id"], TEXT, "notes.txt")
        response = await client.post(edge_url(tenant.id), json=body, headers=edge_key)
        assert response.status_code == 200, response.text
        data = response.json()["data"]
        assert data["type"] in {"app", "book", "image", "script", "other", "certificate"}
        assert data["config"] == {}
        assert data["originalExtension"] == "txt"

    async def test_an_empty_object_can_be_registered(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCredentials,
        edge_key: dict[str, str],
        local_provider: dict[str, Any],
        put_local: Callable[[str, bytes], None],
    ) -> None:
        put_local("empty.txt", b"")
        body = file_body(local_provider["id"], b"", "empty.txt")
        response = await client.post(edge_url(tenant.id), json=body, headers=edge_key)
        assert response.status_code == 200, response.text
        assert response.json()["data"]["size"] == 0


# -- errors ------------------------------------------------------------------------------------


class TestCredentials:
    async def test_no_token_is_4002(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        response = await client.post(edge_url(tenant.id), json={})
        assert_error(response, 401, 4002, "No auth token")

    @pytest.mark.parametrize(
        "authorization", ["Bearer nope", "Basic dXNlcjpwYXNz", "Bearer", "Bearer a.b.c"]
    )
    async def test_invalid_token_is_4004(
        self, client: httpx.AsyncClient, tenant: TenantCredentials, authorization: str
    ) -> None:
        response = await client.post(
            edge_url(tenant.id), json={}, headers={"Authorization": authorization}
        )
        assert_error(response, 401, 4004, "Invalid Token")

    async def test_missing_permission_is_4004(
        self, client: httpx.AsyncClient, db: Database, tenant: TenantCredentials
    ) -> None:
        key = await add_key(db, tenant, "assets:read")
        response = await client.post(edge_url(tenant.id), json={}, headers=bearer(key))
        assert_error(response, 401, 4004, "Invalid Token")
        assert "mdm.global.asset.create" in response.json()["error"]["details"][0]

    @pytest.mark.parametrize("organization", ["{other}", "ab", "bad org!", "{upper}", "x" * 300])
    async def test_another_or_malformed_organization_is_3001(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCredentials,
        other_tenant: TenantCredentials,
        edge_key: dict[str, str],
        organization: str,
    ) -> None:
        name = organization.format(other=other_tenant.id, upper=other_tenant.slug.upper())
        response = await client.post(edge_url(name), json={}, headers=edge_key)
        assert_error(response, 404, 3001, "Entity not found")

    async def test_organization_id_is_case_insensitive(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCredentials,
        edge_key: dict[str, str],
        local_provider: dict[str, Any],
        put_local: Callable[[str, bytes], None],
    ) -> None:
        put_local("notes.txt", TEXT)
        body = file_body(local_provider["id"], TEXT, "notes.txt")
        response = await client.post(edge_url(tenant.id.upper()), json=body, headers=edge_key)
        assert response.status_code == 200, response.text


class TestObjectChecks:
    async def test_missing_object_is_5006(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCredentials,
        edge_key: dict[str, str],
        s3_provider: dict[str, Any],
        s3_bucket: tuple[Any, str],
    ) -> None:
        body = file_body(s3_provider["id"], TEXT, "missing.txt", bucket=s3_bucket[1])
        response = await client.post(edge_url(tenant.id), json=body, headers=edge_key)
        assert_error(response, 400, 5006, "No File Found in request")

    async def test_a_bucket_other_than_the_providers_is_5006(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCredentials,
        edge_key: dict[str, str],
        s3_provider: dict[str, Any],
        s3_bucket: tuple[Any, str],
    ) -> None:
        s3, bucket = s3_bucket
        s3.put_object(Bucket=bucket, Key="tenants/acme/notes.txt", Body=TEXT)
        body = file_body(s3_provider["id"], TEXT, "notes.txt", bucket="someone-elses")
        response = await client.post(edge_url(tenant.id), json=body, headers=edge_key)
        assert_error(response, 400, 5006, "No File Found in request")

    @pytest.mark.parametrize(
        "overrides",
        [
            {"size": len(TEXT) + 1},
            {"size": len(TEXT) - 1},
            {"checksum": hashlib.md5(b"other").hexdigest()},
            {"checksum": hashlib.sha256(b"other").hexdigest()},
            {"checksum": "not-a-checksum"},
            {"checksum": "md5:" + hashlib.sha256(TEXT).hexdigest()},
        ],
    )
    async def test_size_or_checksum_mismatch_is_5006_and_creates_nothing(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCredentials,
        edge_key: dict[str, str],
        s3_provider: dict[str, Any],
        s3_bucket: tuple[Any, str],
        overrides: dict[str, Any],
    ) -> None:
        s3, bucket = s3_bucket
        s3.put_object(Bucket=bucket, Key="tenants/acme/notes.txt", Body=TEXT)
        body = file_body(s3_provider["id"], TEXT, "notes.txt", bucket=bucket, **overrides)
        response = await client.post(edge_url(tenant.id), json=body, headers=edge_key)
        assert_error(response, 400, 5006)
        assets = await client.get("/v1/assets", headers=tenant.headers)
        assert assets.json()["items"] == []

    async def test_base64_checksums_are_accepted(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCredentials,
        edge_key: dict[str, str],
        s3_provider: dict[str, Any],
        s3_bucket: tuple[Any, str],
    ) -> None:
        import base64

        s3, bucket = s3_bucket
        s3.put_object(Bucket=bucket, Key="tenants/acme/notes.txt", Body=TEXT)
        checksum = base64.b64encode(hashlib.sha256(TEXT).digest()).decode()
        body = file_body(s3_provider["id"], TEXT, "notes.txt", bucket=bucket, checksum=checksum)
        response = await client.post(edge_url(tenant.id), json=body, headers=edge_key)
        assert response.status_code == 200, response.text

    @pytest.mark.parametrize(
        "key",
        ["../outside.txt", "a/../../outside.txt", "/etc/passwd", "a\\..\\b", "escape/outside.txt"],
    )
    async def test_keys_that_escape_the_provider_are_refused(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCredentials,
        edge_key: dict[str, str],
        local_provider: dict[str, Any],
        provider_base: Path,
        key: str,
    ) -> None:
        (provider_base / "acme" / "outside.txt").write_bytes(TEXT)
        (provider_base / "acme" / "edge" / "escape").symlink_to(provider_base / "acme")
        body = file_body(local_provider["id"], TEXT, key, originalName="outside.txt")
        response = await client.post(edge_url(tenant.id), json=body, headers=edge_key)
        assert_error(response, 400, 5006)
        assert (await client.get("/v1/assets", headers=tenant.headers)).json()["items"] == []

    @pytest.mark.parametrize("bucket", ["..", ".", "a/b", ""])
    async def test_buckets_that_escape_the_provider_are_refused(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCredentials,
        edge_key: dict[str, str],
        local_provider: dict[str, Any],
        bucket: str,
    ) -> None:
        body = file_body(local_provider["id"], TEXT, "outside.txt", bucket=bucket)
        response = await client.post(edge_url(tenant.id), json=body, headers=edge_key)
        assert_error(response, 400, 5006)

    async def test_unknown_or_foreign_provider_is_3001(
        self,
        client: httpx.AsyncClient,
        db: Database,
        tenant: TenantCredentials,
        edge_key: dict[str, str],
        provider_base: Path,
    ) -> None:
        other = await make_tenant(db, "initech")
        (provider_base / "initech").mkdir()
        created = await client.post(
            "/v1/storage-providers",
            json={"name": "theirs", "kind": "local", "root": str(provider_base / "initech")},
            headers=other.headers,
        )
        for provider_id in (created.json()["id"], "0" * 24):
            body = file_body(provider_id, TEXT, "notes.txt")
            response = await client.post(edge_url(tenant.id), json=body, headers=edge_key)
            assert_error(response, 404, 3001, "Entity not found")

    async def test_unreachable_provider_is_5006(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCredentials,
        edge_key: dict[str, str],
        fake_aws_env: None,
    ) -> None:
        created = await client.post(
            "/v1/storage-providers",
            json={
                "name": "down",
                "kind": "s3",
                "endpointUrl": "http://127.0.0.1:9",
                "accessKeyId": "k",
                "secretAccessKey": "s",
            },
            headers=tenant.headers,
        )
        body = file_body(created.json()["id"], TEXT, "notes.txt")
        response = await client.post(edge_url(tenant.id), json=body, headers=edge_key)
        assert_error(response, 400, 5006)


class TestPolicies:
    async def test_extension_not_allowed_is_5007(
        self,
        client: httpx.AsyncClient,
        db: Database,
        provider_base: Path,
    ) -> None:
        strict = await make_tenant(db, "strict", allowed_extensions=["png"])
        (provider_base / "strict" / "edge").mkdir(parents=True)
        (provider_base / "strict" / "edge" / "notes.txt").write_bytes(TEXT)
        created = await client.post(
            "/v1/storage-providers",
            json={"name": "disk", "kind": "local", "root": str(provider_base / "strict")},
            headers=strict.headers,
        )
        body = file_body(created.json()["id"], TEXT, "notes.txt")
        response = await client.post(edge_url(strict.id), json=body, headers=strict.headers)
        assert_error(response, 400, 5007, "File extension not allowed")

    async def test_content_that_is_not_what_the_name_says_is_5007(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCredentials,
        edge_key: dict[str, str],
        local_provider: dict[str, Any],
        put_local: Callable[[str, bytes], None],
        tmp_path: Path,
    ) -> None:
        content = make_apk(tmp_path).read_bytes()
        put_local("picture.png", content)
        body = file_body(local_provider["id"], content, "picture.png")
        response = await client.post(edge_url(tenant.id), json=body, headers=edge_key)
        assert_error(response, 400, 5007, "File extension not allowed")

    async def test_over_the_size_limit_is_5006(
        self,
        client: httpx.AsyncClient,
        db: Database,
        provider_base: Path,
    ) -> None:
        small = await make_tenant(db, "small", max_file_size_bytes=10)
        (provider_base / "small" / "edge").mkdir(parents=True)
        (provider_base / "small" / "edge" / "notes.txt").write_bytes(TEXT)
        created = await client.post(
            "/v1/storage-providers",
            json={"name": "disk", "kind": "local", "root": str(provider_base / "small")},
            headers=small.headers,
        )
        body = file_body(created.json()["id"], TEXT, "notes.txt")
        response = await client.post(edge_url(small.id), json=body, headers=small.headers)
        assert_error(response, 400, 5006)
        assert "limit" in response.json()["error"]["message"]


class TestHostileBodies:
    async def test_missing_file_is_5006(
        self, client: httpx.AsyncClient, tenant: TenantCredentials, edge_key: dict[str, str]
    ) -> None:
        response = await client.post(edge_url(tenant.id), json={"name": "x"}, headers=edge_key)
        assert_error(response, 400, 5006, "No File Found in request")

    @pytest.mark.parametrize(
        "content", [b"", b"not json", b"[]", b'"file"', b"{" * 10_000, b'{"file": null}']
    )
    async def test_unreadable_bodies_are_5006(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCredentials,
        edge_key: dict[str, str],
        content: bytes,
    ) -> None:
        headers = {**edge_key, "Content-Type": "application/json"}
        response = await client.post(edge_url(tenant.id), content=content, headers=headers)
        assert_error(response, 400, 5006)

    @pytest.mark.parametrize(
        ("where", "value"),
        [
            ("file.mimetype", "m" * 129),
            ("file.bucket", "b" * 129),
            ("file.key", "k" * 129),
            ("file.location", "l" * 257),
            ("file.originalName", "o" * 129),
            ("file.size", -1),
            ("file.size", 9007199254740992),
            ("file.size", "12"),
            ("file.size", 1.5),
            ("file.size", True),
            ("file.storageProviderId", "z" * 24),
            ("file.storageProviderId", "a" * 25),
            ("file.checksum", "c" * 257),
            ("file.checksum", 12),
            ("file.key", "a\x00b"),
            ("file.extra", "x"),
            ("name", "n" * 257),
            ("name", "a\x00b"),
            ("description", "d" * 257),
            ("segmentId", -1),
            ("segmentId", 9007199254740992),
            ("segmentId", "1"),
            ("config.apk", {"versionCode": "1"}),
            ("config.apk", {"versionCode": 1, "versionName": "1", "packageName": "p"}),
            ("config.apk", {"versionCode": "1", "versionName": "1", "packageName": "p" * 257}),
            ("config.msi", {"productCode": "x"}),
            ("unknown", 1),
            ("name", "x" * 1_000_000),
        ],
    )
    async def test_fields_outside_the_documented_limits_are_5006(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCredentials,
        edge_key: dict[str, str],
        where: str,
        value: Any,
    ) -> None:
        body: dict[str, Any] = file_body("a" * 24, TEXT, "notes.txt")
        body["config"] = {}
        target = body
        *parents, last = where.split(".")
        for part in parents:
            target = target.setdefault(part, {})
        target[last] = value
        response = await client.post(edge_url(tenant.id), json=body, headers=edge_key)
        assert_error(response, 400, 5006)
        assert response.json()["error"]["details"]

    async def test_limits_are_inclusive(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCredentials,
        edge_key: dict[str, str],
        local_provider: dict[str, Any],
        put_local: Callable[[str, bytes], None],
    ) -> None:
        key = "k" * 124 + ".txt"
        put_local(key, TEXT)
        body = file_body(
            local_provider["id"],
            TEXT,
            key,
            mimetype="m" * 128,
            location="l" * 256,
            originalName="o" * 124 + ".txt",
        )
        body.update(name="n" * 256, description="d" * 256, segmentId=9007199254740991)
        response = await client.post(edge_url(tenant.id), json=body, headers=edge_key)
        assert response.status_code == 200, response.text
        assert response.json()["data"]["segmentId"] == 9007199254740991
