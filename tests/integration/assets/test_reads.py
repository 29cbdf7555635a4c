"""The plain-row read paths (assetd.assets.reads) give the answers of the ORM paths."""

from __future__ import annotations

import dataclasses
import json
import random

import httpx
import pytest
from fastapi import FastAPI

from assetd.assets import reads
from assetd.assets.repository import VERSION_COLUMNS, content_row_statement
from assetd.assets.routes import row_to_read, to_read
from assetd.assets.service import AssetService, ListParams
from assetd.auth.dependencies import authenticate
from assetd.auth.principal import READ
from assetd.db.session import Database
from tests.factories import TenantCredentials, add_key, upload

pytestmark = pytest.mark.anyio


def test_row_classes_follow_the_statement_columns() -> None:
    # reads builds ServedAsset/ServedVersion from row positions: the orders must agree.
    statement = content_row_statement(current=True, include_trashed=True)
    names = [column.key for column in statement.selected_columns]
    asset_fields = [f.name for f in dataclasses.fields(reads.ServedAsset)]
    version_fields = [f.name for f in dataclasses.fields(reads.ServedVersion)]
    assert names == asset_fields + [f"v_{name}" for name in version_fields]
    assert [c.key for c in VERSION_COLUMNS] == [f"v_{name}" for name in version_fields]


async def test_search_reads_the_pages_of_the_service(
    app: FastAPI, client: httpx.AsyncClient, tenant: TenantCredentials, db: Database
) -> None:
    rng = random.Random(3)
    ids = []
    for i in range(7):
        meta = {
            "name": f"asset {i % 3} {i}",
            "access": "PUBLIC" if i % 2 else "PRIVATE",
            "tags": [f"t{i}"] if i % 3 else [],
            "metadata": {"n": i % 4, "label": f"x{i}"} if i != 5 else {},
        }
        response = await upload(
            client, tenant, rng.randbytes(100 + i), f"f{i}.bin", json.dumps(meta)
        )
        assert response.status_code == 201
        ids.append(response.json()["id"])
    trashed = await client.delete(f"/v1/assets/{ids[2]}", headers=tenant.headers)
    assert trashed.status_code == 204

    context = app.state.context
    admin = await authenticate(context, tenant.key)
    reader = await authenticate(context, await add_key(db, tenant, READ))
    cases = [
        ListParams(),
        ListParams(page_size=2),
        ListParams(page_size=2, page_number=2, with_total=True),
        ListParams(sort="name,createdAt:desc", page_size=3),
        ListParams(q="access:PUBLIC", sort="metadata.n:desc", page_size=2),
        ListParams(include_trashed=True, page_size=3, with_total=True),
        ListParams(only_trashed=True),
    ]
    for principal in (admin, reader):
        for params in cases:
            seen = 0
            while True:
                async with db.session(write=False) as session:
                    service = AssetService(session, context.sniffer)
                    expected = await service.search(principal, params)
                    page = await reads.search(db, service, principal, params)
                slug = principal.tenant.slug
                assert [row_to_read(context, slug, row) for row in page.items] == [
                    to_read(context, slug, asset) for asset in expected.items
                ], params
                assert page.next_cursor == expected.next_cursor
                assert page.total == expected.total
                seen += len(page.items)
                if page.next_cursor is None:
                    break
                params = dataclasses.replace(params, cursor=page.next_cursor)
            assert seen > 0
