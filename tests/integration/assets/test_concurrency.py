"""Concurrent writers: identical bytes meet on one blob row; nothing is lost or doubled."""

from __future__ import annotations

import asyncio
import os

import httpx
import pytest

from assetd.maintenance import check_consistency
from assetd.storage.local import LocalBlobStorage
from tests.factories import TenantCredentials, upload

pytestmark = pytest.mark.anyio


async def test_parallel_uploads_of_identical_bytes_share_one_blob(
    client: httpx.AsyncClient, tenant: TenantCredentials, storage: LocalBlobStorage
) -> None:
    content = os.urandom(200_000)
    responses = await asyncio.gather(
        *(upload(client, tenant, content, f"same-{i}.bin") for i in range(8))
    )
    assert [r.status_code for r in responses] == [201] * 8
    assert len({r.json()["id"] for r in responses}) == 8
    assert len(list(storage.list())) == 1
    assert list(storage.list_staging()) == []
    info = (await client.get("/v1/tenant", headers=tenant.headers)).json()
    assert info["usedBytes"] == len(content)
    context = client._transport.app.state.context  # type: ignore[attr-defined]
    report = await check_consistency(context.db, storage, verify_hashes=True)
    assert report.ok, report


async def test_parallel_uploads_and_purges_keep_counts_consistent(
    client: httpx.AsyncClient, tenant: TenantCredentials, storage: LocalBlobStorage
) -> None:
    contents = [os.urandom(10_000) for _ in range(4)]
    first = await asyncio.gather(*(upload(client, tenant, c, "a.bin") for c in contents))
    ids = [r.json()["id"] for r in first]
    # Re-upload the same bytes while purging the originals.
    results = await asyncio.gather(
        *(upload(client, tenant, c, "b.bin") for c in contents),
        *(client.delete(f"/v1/assets/{i}?purge=true", headers=tenant.headers) for i in ids),
    )
    assert all(r.status_code in (201, 204) for r in results)
    context = client._transport.app.state.context  # type: ignore[attr-defined]
    report = await check_consistency(context.db, storage, verify_hashes=True)
    assert report.ok, report
    info = (await client.get("/v1/tenant", headers=tenant.headers)).json()
    assert info["usedBytes"] == sum(len(c) for c in contents)


async def test_parallel_patches_with_the_same_revision_let_exactly_one_win(
    client: httpx.AsyncClient, tenant: TenantCredentials
) -> None:
    asset = (await upload(client, tenant, b"x", "a.txt")).json()
    responses = await asyncio.gather(
        *(
            client.patch(
                f"/v1/assets/{asset['id']}",
                json={"name": f"n{i}"},
                headers={**tenant.headers, "If-Match": '"r1"'},
            )
            for i in range(6)
        )
    )
    codes = sorted(r.status_code for r in responses)
    assert codes == [200] + [412] * 5
