"""Credentials: API keys (bearer and X-API-Key), scopes, expiry, revocation, JWTs."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import httpx
import jwt
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from assetd.app import create_app
from assetd.config import Settings
from assetd.db.session import Database
from tests.factories import TenantCredentials, add_key, bearer, upload

pytestmark = pytest.mark.anyio


class TestApiKeys:
    async def test_missing_credentials_is_401_problem(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/v1/assets")
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["www-authenticate"].startswith("Bearer")

    @pytest.mark.parametrize(
        "headers",
        [
            {"Authorization": "Bearer assetd_nope"},
            {"Authorization": "Basic dXNlcjpwYXNz"},
            {"Authorization": "Bearer "},
            {"X-API-Key": "wrong"},
            {"Authorization": "Bearer a.b.c"},
        ],
    )
    async def test_invalid_credentials_are_401(
        self, client: httpx.AsyncClient, headers: dict[str, str]
    ) -> None:
        response = await client.get("/v1/assets", headers=headers)
        assert response.status_code == 401

    async def test_x_api_key_header_works(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        response = await client.get("/v1/assets", headers={"X-API-Key": tenant.key})
        assert response.status_code == 200

    async def test_read_only_key_cannot_write_or_delete(
        self, client: httpx.AsyncClient, db: Database, tenant: TenantCredentials
    ) -> None:
        asset = (await upload(client, tenant, b"x", "a.txt")).json()
        reader = await add_key(db, tenant, "assets:read")
        assert (
            await client.get(f"/v1/assets/{asset['id']}", headers=bearer(reader))
        ).status_code == 200
        response = await client.post(
            "/v1/assets", files={"file": ("a", b"b")}, headers=bearer(reader)
        )
        assert response.status_code == 403
        assert "assets:write" in response.json()["detail"]
        response = await client.delete(f"/v1/assets/{asset['id']}", headers=bearer(reader))
        assert response.status_code == 403
        response = await client.get("/v1/keys", headers=bearer(reader))
        assert response.status_code == 403

    async def test_seed_scope_names_map_onto_native_scopes(
        self, client: httpx.AsyncClient, db: Database, tenant: TenantCredentials
    ) -> None:
        manager = await add_key(db, tenant, "media.asset_manage")
        response = await client.post(
            "/v1/assets", files={"file": ("a", b"b")}, headers=bearer(manager)
        )
        assert response.status_code == 201

    async def test_expired_key_is_401(
        self, client: httpx.AsyncClient, db: Database, tenant: TenantCredentials
    ) -> None:
        key = await add_key(
            db, tenant, "assets:read", expires_at=datetime.now(UTC) - timedelta(seconds=1)
        )
        assert (await client.get("/v1/assets", headers=bearer(key))).status_code == 401

    async def test_key_lifecycle_through_the_api(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        created = await client.post(
            "/v1/keys", json={"name": "ci", "scopes": ["assets:read"]}, headers=tenant.headers
        )
        assert created.status_code == 201, created.text
        secret = created.json()["key"]
        assert secret.startswith("assetd_")
        assert (await client.get("/v1/assets", headers=bearer(secret))).status_code == 200
        listing = (await client.get("/v1/keys", headers=tenant.headers)).json()
        assert "key" not in listing[0]
        assert secret not in str(listing)
        revoked = await client.delete(f"/v1/keys/{created.json()['id']}", headers=tenant.headers)
        assert revoked.status_code == 200
        assert revoked.json()["revokedAt"] is not None
        assert (await client.get("/v1/assets", headers=bearer(secret))).status_code == 401

    async def test_unknown_scope_is_rejected(
        self, client: httpx.AsyncClient, tenant: TenantCredentials
    ) -> None:
        response = await client.post("/v1/keys", json={"scopes": ["root"]}, headers=tenant.headers)
        assert response.status_code == 400

    async def test_other_tenants_key_cannot_be_revoked(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCredentials,
        other_tenant: TenantCredentials,
    ) -> None:
        created = (await client.post("/v1/keys", json={}, headers=tenant.headers)).json()
        response = await client.delete(f"/v1/keys/{created['id']}", headers=other_tenant.headers)
        assert response.status_code == 404


@pytest.fixture
async def jwt_app(db: Database, settings: Settings) -> FastAPI:
    configured = settings.model_copy(
        update={
            "jwt_hs256_secret": SecretStr("jwt-secret-jwt-secret-jwt-secret"),
            "jwt_audience": "assetd",
        }
    )
    return create_app(configured)


class TestJwt:
    def token(self, **claims: object) -> str:
        payload = {
            "sub": "u1",
            "tenant": "acme",
            "scope": "assets:read assets:write",
            "email": "ann@example.com",
            "aud": "assetd",
            "exp": int(time.time()) + 60,
            **claims,
        }
        return jwt.encode(payload, "jwt-secret-jwt-secret-jwt-secret", algorithm="HS256")

    async def test_valid_jwt_maps_tenant_scopes_and_user(
        self, jwt_app: FastAPI, tenant: TenantCredentials
    ) -> None:
        async with jwt_app.router.lifespan_context(jwt_app):
            transport = httpx.ASGITransport(app=jwt_app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                response = await client.post(
                    "/v1/assets", files={"file": ("a.txt", b"hi")}, headers=bearer(self.token())
                )
                assert response.status_code == 201, response.text
                assert response.json()["createdBy"] == "ann@example.com"
                for bad in (
                    self.token(exp=int(time.time()) - 10),
                    self.token(aud="other"),
                    self.token(tenant="nosuch"),
                    self.token()[:-2] + "xx",
                ):
                    assert (await client.get("/v1/assets", headers=bearer(bad))).status_code == 401
                no_write = self.token(scope="assets:read")
                response = await client.post(
                    "/v1/assets", files={"file": ("a.txt", b"hi")}, headers=bearer(no_write)
                )
                assert response.status_code == 403
