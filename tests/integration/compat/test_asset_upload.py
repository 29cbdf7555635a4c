"""Seed 002: POST /asset (new asset, new version, metadata-only) and POST /asset/complete."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from assetd.app import create_app
from assetd.config import Settings
from assetd.db.session import Database
from tests.factories import TenantCredentials, add_key, make_tenant

pytestmark = pytest.mark.anyio

SECRET = "jwt-secret-jwt-secret-jwt-secret"
MiB = 1024 * 1024


@pytest.fixture
async def seed_client(db: Database, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    configured = settings.model_copy(update={"jwt_hs256_secret": SecretStr(SECRET)})
    app: FastAPI = create_app(configured)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


def user_token(tenant: str = "acme", roles: list[str] | None = None, **claims: Any) -> str:
    payload = {
        "sub": "u1",
        "tenant": tenant,
        "scope": "assets:read assets:write",
        "roles": roles if roles is not None else ["editor"],
        "email": "ann@example.com",
        "exp": int(time.time()) + 60,
        **claims,
    }
    return jwt.encode(payload, SECRET, algorithm="HS256")


def seed_headers(tenant: TenantCredentials, token: str | None = None) -> dict[str, str]:
    token = token or user_token(tenant.slug)
    return {"X-API-Key": tenant.key, "Authorization": token, "AccessToken": token}


@pytest.fixture
async def templates(seed_client: httpx.AsyncClient, tenant: TenantCredentials) -> dict[str, str]:
    metadata = await seed_client.post(
        "/v1/metadata-templates",
        json={
            "name": "Product shot",
            "fields": [
                {"name": "title", "type": "string", "required": True},
                {"name": "season", "type": "vocabulary", "allowedValues": ["spring", "fall"]},
                {"name": "shotOn", "type": "date"},
                {"name": "colors", "type": "multi"},
                {
                    "name": "sizes",
                    "type": "grid",
                    "columns": [
                        {"name": "size", "type": "string", "required": True},
                        {"name": "stock", "type": "number"},
                    ],
                },
            ],
        },
        headers=tenant.headers,
    )
    assert metadata.status_code == 201, metadata.text
    granted = await seed_client.post(
        "/v1/security-templates",
        json={"name": "Editors", "grants": [{"role": "editor", "actions": ["view", "edit"]}]},
        headers=tenant.headers,
    )
    other = await seed_client.post(
        "/v1/security-templates",
        json={"name": "Legal", "grants": [{"role": "legal", "actions": ["view"]}]},
        headers=tenant.headers,
    )
    assert granted.status_code == 201, granted.text
    assert other.status_code == 201, granted.text
    return {
        "metadata": metadata.json()["id"],
        "granted": granted.json()["id"],
        "other": other.json()["id"],
    }


def body(templates: dict[str, str], **changes: Any) -> dict[str, Any]:
    return {
        "metadataTemplateId": templates["metadata"],
        "metadata": [
            {"fieldId": "title", "type": "string", "value": "Apples"},
            {"fieldId": "season", "type": "restrictedVocabulary", "value": "fall"},
            {"fieldId": "shotOn", "type": "date", "value": "2026-10-01"},
            {"fieldId": "colors", "type": "multiValue", "values": ["red", "green"]},
            {"fieldId": "sizes", "type": "grid", "rows": [{"size": "L", "stock": 3}]},
        ],
        "securityTemplateIds": [templates["granted"]],
        "filename": "apples.txt",
        **changes,
    }


async def test_create_upload_and_read_back(
    seed_client: httpx.AsyncClient, tenant: TenantCredentials, templates: dict[str, str]
) -> None:
    data = b"a fine apple\n"
    created = await seed_client.post(
        "/asset", json=body(templates, filesize=len(data)), headers=seed_headers(tenant)
    )
    assert created.status_code == 200, created.text
    result = created.json()
    assert result["multipart"] is False
    assert len(result["uploadUrls"]) == 1
    assert result["objectId"].count("-") == 4
    assert result["objectId"].endswith("00000000")
    asset_id = result["assetId"]
    assert result["objectId"].replace("-", "").startswith(asset_id)

    # Metadata-only until the bytes arrive.
    before = await seed_client.get(f"/v1/assets/{asset_id}", headers=tenant.headers)
    assert before.json()["version"] is None
    assert before.json()["metadata"] == {
        "title": "Apples",
        "season": "fall",
        "shotOn": "2026-10-01",
        "colors": ["red", "green"],
        "sizes": [{"size": "L", "stock": 3}],
    }
    assert before.json()["securityTemplateIds"] == [templates["granted"]]

    put = await seed_client.put(result["uploadUrl"], content=data)
    assert put.status_code == 200, put.text
    # A single-URL upload through assetd completes by itself.
    content = await seed_client.get(f"/v1/assets/{asset_id}/content", headers=tenant.headers)
    assert content.status_code == 200
    assert content.content == data
    after = await seed_client.get(f"/v1/assets/{asset_id}", headers=tenant.headers)
    assert after.json()["createdBy"] == "ann@example.com"
    # Completing explicitly afterwards finds nothing left to complete.
    done = await seed_client.post(
        "/asset/complete", json={"objectId": result["objectId"]}, headers=seed_headers(tenant)
    )
    assert done.status_code == 404


async def test_multipart_in_100_mib_chunks_then_complete(
    seed_client: httpx.AsyncClient, tenant: TenantCredentials, templates: dict[str, str]
) -> None:
    data = os.urandom(100 * MiB + 4096)
    created = await seed_client.post(
        "/asset",
        json=body(templates, filesize=len(data), filename="big.bin"),
        headers=seed_headers(tenant),
    )
    assert created.status_code == 200, created.text
    result = created.json()
    assert result["multipart"] is True
    assert result["chunkSize"] == 100 * MiB
    assert [p["size"] for p in result["parts"]] == [100 * MiB, 4096]
    parts = []
    for part in result["parts"]:
        start = (part["partNumber"] - 1) * 100 * MiB
        put = await seed_client.put(part["url"], content=data[start : start + part["size"]])
        assert put.status_code == 200
        parts.append({"partNumber": part["partNumber"], "eTag": put.headers["etag"]})
    not_yet = await seed_client.get(
        f"/v1/assets/{result['assetId']}/content", headers=tenant.headers
    )
    assert not_yet.status_code == 404
    done = await seed_client.post(
        "/asset/complete",
        json={"objectId": result["objectId"], "uploadId": result["uploadId"], "parts": parts},
        headers=seed_headers(tenant),
    )
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "COMPLETED"
    assert done.json()["sha256"] == hashlib.sha256(data).hexdigest()
    twice = await seed_client.post(
        "/asset/complete", json={"uploadId": result["uploadId"]}, headers=seed_headers(tenant)
    )
    assert twice.status_code == 409
    assert set(twice.json()) == {"code", "error", "message", "details"}
    cancel = await seed_client.post(
        "/asset/complete",
        json={"uploadId": result["uploadId"], "action": "cancel"},
        headers=seed_headers(tenant),
    )
    assert cancel.status_code == 409


async def test_new_version_by_original_file_id(
    seed_client: httpx.AsyncClient, tenant: TenantCredentials, templates: dict[str, str]
) -> None:
    first = await seed_client.post(
        "/asset", json=body(templates, filesize=3), headers=seed_headers(tenant)
    )
    await seed_client.put(first.json()["uploadUrl"], content=b"one")
    for original in (first.json()["objectId"], first.json()["assetId"]):
        again = await seed_client.post(
            "/asset",
            json=body(templates, filesize=3, originalFileId=original),
            headers=seed_headers(tenant),
        )
        assert again.status_code == 200, again.text
        assert again.json()["assetId"] == first.json()["assetId"]
        assert again.json()["versionOf"] == first.json()["objectId"]
        await seed_client.put(again.json()["uploadUrl"], content=b"two")
    versions = await seed_client.get(
        f"/v1/assets/{first.json()['assetId']}/versions", headers=tenant.headers
    )
    assert [v["number"] for v in versions.json()] == [1, 2, 3]
    missing = await seed_client.post(
        "/asset",
        json=body(templates, filesize=3, originalFileId="0" * 24),
        headers=seed_headers(tenant),
    )
    assert missing.status_code == 404


async def test_metadata_only_asset_stays_when_the_upload_is_cancelled(
    seed_client: httpx.AsyncClient, tenant: TenantCredentials, templates: dict[str, str]
) -> None:
    created = await seed_client.post(
        "/asset", json=body(templates, filesize=250 * MiB), headers=seed_headers(tenant)
    )
    assert len(created.json()["uploadUrls"]) == 3
    cancel = await seed_client.post(
        "/asset/complete",
        json={"objectId": created.json()["objectId"], "action": "cancel"},
        headers=seed_headers(tenant),
    )
    assert cancel.status_code == 200
    assert cancel.json()["status"] == "CANCELLED"
    asset = await seed_client.get(f"/v1/assets/{created.json()['assetId']}", headers=tenant.headers)
    assert asset.status_code == 200
    assert asset.json()["version"] is None


async def test_unauthorized_without_all_three_credentials(
    seed_client: httpx.AsyncClient,
    tenant: TenantCredentials,
    other_tenant: TenantCredentials,
    templates: dict[str, str],
) -> None:
    good = seed_headers(tenant)
    cases = [
        {k: v for k, v in good.items() if k != "X-API-Key"},
        {k: v for k, v in good.items() if k != "Authorization"},
        {k: v for k, v in good.items() if k != "AccessToken"},
        {**good, "AccessToken": user_token(exp=int(time.time()) - 5)},
        {**good, "Authorization": "Bearer nonsense"},
        {**good, "X-API-Key": other_tenant.key},
        {**good, "AccessToken": user_token("globex")},
    ]
    for headers in cases:
        response = await seed_client.post(
            "/asset", json=body(templates, filesize=1), headers=headers
        )
        assert response.status_code == 401, (headers.keys(), response.text)
        assert response.json()["code"] == 401
        assert response.json()["message"]
    # A plain API key in every header works too (no JWT needed).
    keys = {"X-API-Key": tenant.key, "Authorization": tenant.key, "AccessToken": tenant.key}
    ok = await seed_client.post("/asset", json=body(templates, filesize=1), headers=keys)
    assert ok.status_code == 200, ok.text


async def test_forbidden_templates_and_privileges(
    seed_client: httpx.AsyncClient,
    tenant: TenantCredentials,
    templates: dict[str, str],
    db: Database,
) -> None:
    headers = seed_headers(tenant)
    not_granted = await seed_client.post(
        "/asset",
        json=body(templates, filesize=1, securityTemplateIds=[templates["other"]]),
        headers=headers,
    )
    assert not_granted.status_code == 403
    assert not_granted.json()["error"] == "Forbidden"
    none = await seed_client.post(
        "/asset", json=body(templates, filesize=1, securityTemplateIds=[]), headers=headers
    )
    assert none.status_code == 403
    reader = user_token(scope="assets:read")
    read_only = await seed_client.post(
        "/asset", json=body(templates, filesize=1), headers=seed_headers(tenant, reader)
    )
    assert read_only.status_code == 403
    # Nothing was made by any of them.
    listed = await seed_client.get("/v1/assets", headers=tenant.headers)
    assert listed.json()["items"] == []
    key = await add_key(db, tenant, "assets:read")
    keyed = {"X-API-Key": key, "Authorization": key, "AccessToken": key}
    assert (
        await seed_client.post("/asset", json=body(templates), headers=keyed)
    ).status_code == 403


async def test_bad_input_is_a_clear_error_and_leaves_nothing(
    seed_client: httpx.AsyncClient, tenant: TenantCredentials, templates: dict[str, str]
) -> None:
    headers = seed_headers(tenant)
    valid = body(templates, filesize=1)
    cases: list[tuple[dict[str, Any], int]] = [
        ({k: v for k, v in valid.items() if k != "metadataTemplateId"}, 400),
        ({k: v for k, v in valid.items() if k != "filename"}, 400),
        ({k: v for k, v in valid.items() if k != "metadata"}, 400),
        ({k: v for k, v in valid.items() if k != "securityTemplateIds"}, 400),
        ({**valid, "filesize": 5 * 1024**3 + 1}, 400),
        ({**valid, "filesize": -1}, 400),
        ({**valid, "contentPath": "s3://bucket/key"}, 400),
        ({**valid, "unknown": 1}, 400),
        ({**valid, "metadata": [{"value": "no field id"}]}, 400),
        ({**valid, "metadata": valid["metadata"] + [{"fieldId": "title", "value": "x"}]}, 400),
        ({**valid, "metadataTemplateId": "00000000-0000-0000-0000-000000000000"}, 422),
        ({**valid, "filename": "evil\x00.txt"}, 400),
    ]
    for payload, status in cases:
        response = await seed_client.post("/asset", json=payload, headers=headers)
        assert response.status_code == status, (payload, response.text)
        assert set(response.json()) == {"code", "error", "message", "details"}
    wrong = await seed_client.post(
        "/asset",
        json={
            **valid,
            "metadata": [
                {"fieldId": "season", "value": "winter"},
                {"fieldId": "shotOn", "value": "yesterday"},
                {"fieldId": "nosuch", "value": "x"},
            ],
        },
        headers=headers,
    )
    assert wrong.status_code == 422, wrong.text
    # Every wrong field at once: the missing title, the bad season, date and unknown field.
    assert len(wrong.json()["details"]) >= 4
    not_json = await seed_client.post(
        "/asset", content=b"{", headers={**headers, "Content-Type": "application/json"}
    )
    assert not_json.status_code == 400
    listed = await seed_client.get("/v1/assets", headers=tenant.headers)
    assert listed.json()["items"] == []


async def test_other_tenants_objects_are_missing(
    seed_client: httpx.AsyncClient,
    tenant: TenantCredentials,
    db: Database,
    templates: dict[str, str],
) -> None:
    created = await seed_client.post(
        "/asset", json=body(templates, filesize=5), headers=seed_headers(tenant)
    )
    globex = await make_tenant(db, "globexx")
    theirs = seed_headers(globex, user_token("globexx"))
    for payload in (
        {"objectId": created.json()["objectId"]},
        {"uploadId": created.json()["uploadId"]},
        {"uploadId": created.json()["uploadId"], "action": "cancel"},
    ):
        response = await seed_client.post("/asset/complete", json=payload, headers=theirs)
        assert response.status_code == 404, payload
    version = await seed_client.post(
        "/asset",
        json=body(templates, filesize=5, originalFileId=created.json()["objectId"]),
        headers=theirs,
    )
    assert version.status_code in (404, 422)
