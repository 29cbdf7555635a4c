"""Helpers shared by the template tests: templates made through the API."""

from __future__ import annotations

from typing import Any

import httpx

from tests.factories import TenantCredentials

# One field of every kind; the grid has a column of every kind.
CATALOGUE_FIELDS: list[dict[str, Any]] = [
    {"name": "title", "label": "Title", "type": "string", "required": True},
    {"name": "color", "type": "vocabulary", "allowedValues": ["red", "green"]},
    {"name": "shotOn", "type": "date"},
    {"name": "keywords", "type": "multi"},
    {"name": "channels", "type": "multi", "allowedValues": ["web", "print"]},
    {
        "name": "prices",
        "type": "grid",
        "columns": [
            {
                "name": "market",
                "type": "vocabulary",
                "allowedValues": ["EU", "US"],
                "required": True,
            },
            {"name": "amount", "type": "number", "required": True},
            {"name": "validFrom", "type": "date"},
            {"name": "note", "type": "string"},
        ],
    },
]

VALID_METADATA: dict[str, Any] = {
    "title": "Apples",
    "color": "red",
    "shotOn": "2024-05-31T12:00:00Z",
    "keywords": ["fruit", "autumn"],
    "channels": ["web"],
    "prices": [
        {"market": "EU", "amount": 1.5, "validFrom": "2024-06-01"},
        {"market": "US", "amount": 2, "note": "launch"},
    ],
}


async def metadata_template(
    client: httpx.AsyncClient,
    tenant: TenantCredentials,
    name: str = "catalogue",
    fields: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    response = await client.post(
        "/v1/metadata-templates",
        json={"name": name, "fields": CATALOGUE_FIELDS if fields is None else fields},
        headers=tenant.headers,
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def security_template(
    client: httpx.AsyncClient,
    tenant: TenantCredentials,
    name: str,
    grants: dict[str, list[str]],
) -> str:
    response = await client.post(
        "/v1/security-templates",
        json={
            "name": name,
            "grants": [{"role": role, "actions": actions} for role, actions in grants.items()],
        },
        headers=tenant.headers,
    )
    assert response.status_code == 201, response.text
    template_id: str = response.json()["id"]
    return template_id


async def json_asset(
    client: httpx.AsyncClient, headers: dict[str, str], **body: Any
) -> httpx.Response:
    return await client.post("/v1/assets", json={"name": "a", **body}, headers=headers)
