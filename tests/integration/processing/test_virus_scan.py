"""Virus scanning with a real clamd (Debian's clamav-daemon) loaded with one test signature.

The signature database holds only EICAR's MD5, so clamd starts in a second without the
(large, downloaded) official databases; the scan path is ClamAV's own.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from assetd.app import create_app
from assetd.assets.models import Version
from assetd.config import Settings
from assetd.db.session import Database
from assetd.processing import clamd
from tests.factories import TenantCredentials, upload

pytestmark = pytest.mark.anyio

# The standard antivirus test file: harmless, and every scanner reports it.
EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


@pytest.fixture(scope="module")
def clamd_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = shutil.which("clamd") or (
        "/usr/sbin/clamd" if Path("/usr/sbin/clamd").exists() else None
    )
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("clamd is missing: scripts/install --test installs clamav-daemon")
        pytest.skip("clamd is not installed")
    root = tmp_path_factory.mktemp("clamd")
    database = root / "db"
    database.mkdir()
    signature = f"{hashlib.md5(EICAR).hexdigest()}:{len(EICAR)}:Eicar-Test-Signature\n"
    (database / "test.hdb").write_text(signature)
    socket_path = root / "clamd.sock"
    config = root / "clamd.conf"
    config.write_text(
        f"LocalSocket {socket_path}\nDatabaseDirectory {database}\nForeground yes\n"
        f"TemporaryDirectory {root}\nLogFile {root / 'clamd.log'}\nPidFile {root / 'pid'}\n"
        "StreamMaxLength 100M\n"
    )
    process = subprocess.Popen(
        [binary, f"--config-file={config}"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    url = f"unix://{socket_path}"
    try:
        deadline = time.monotonic() + 60
        while not clamd.ping(url):
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, "clamd did not start"
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=20)
        if process.stderr is not None:
            process.stderr.close()


@pytest.fixture
async def scanning_client(
    db: Database, settings: Settings, clamd_url: str
) -> AsyncIterator[tuple[httpx.AsyncClient, FastAPI]]:
    app = create_app(settings.model_copy(update={"clamd_url": clamd_url}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http, app


async def settled(client: httpx.AsyncClient, tenant: TenantCredentials, asset_id: str) -> Any:
    deadline = time.monotonic() + 30
    while True:
        jobs = (await client.get(f"/v1/assets/{asset_id}/jobs", headers=tenant.headers)).json()
        scan = [job for job in jobs if job["kind"] == "scan"]
        if scan and scan[0]["state"] in ("done", "failed"):
            return scan[0]
        assert time.monotonic() < deadline, jobs
        await asyncio.sleep(0.05)


def test_the_client_speaks_clamds_protocol(clamd_url: str) -> None:
    verdict = clamd.scan(clamd_url, [EICAR[:10], EICAR[10:]])
    assert verdict.infected
    assert verdict.signature is not None
    assert verdict.signature.startswith("Eicar-Test-Signature")
    assert clamd.scan(clamd_url, [b"hello world"]) == clamd.Verdict(False)
    with pytest.raises(clamd.ClamdError):
        clamd.scan("unix:///nonexistent/clamd.sock", [b"x"])
    with pytest.raises(clamd.ClamdError):
        clamd.scan("http://example/", [b"x"])


async def test_infected_upload_is_quarantined_and_never_served(
    scanning_client: tuple[httpx.AsyncClient, FastAPI], tenant: TenantCredentials, db: Database
) -> None:
    client, _ = scanning_client
    response = await upload(client, tenant, EICAR, "eicar.txt")
    assert response.status_code == 201, response.text
    asset_id = response.json()["id"]
    job = await settled(client, tenant, asset_id)
    assert job["state"] == "done"
    content = await client.get(f"/v1/assets/{asset_id}/content", headers=tenant.headers)
    assert content.status_code == 403
    assert "quarantined" in content.json()["detail"]
    assert "Eicar" in content.json()["detail"]
    signed = await client.post(f"/v1/assets/{asset_id}/signed-url", headers=tenant.headers)
    assert signed.status_code == 403
    async with db.session(write=False) as session:
        version = (await session.execute(sa.select(Version))).scalar_one()
    assert version.scan_status == "infected"


async def test_clean_upload_is_served_once_scanned_and_waits_before(
    scanning_client: tuple[httpx.AsyncClient, FastAPI], tenant: TenantCredentials, db: Database
) -> None:
    client, _ = scanning_client
    response = await upload(client, tenant, b"just some text\n", "notes.txt")
    asset_id = response.json()["id"]
    job = await settled(client, tenant, asset_id)
    assert job["state"] == "done"
    content = await client.get(f"/v1/assets/{asset_id}/content", headers=tenant.headers)
    assert content.status_code == 200
    assert content.content == b"just some text\n"
    # A version whose scan has not run yet waits (503) rather than being served unscanned.
    async with db.session() as session:
        await session.execute(sa.update(Version).values(scan_status="pending"))
    waiting = await client.get(f"/v1/assets/{asset_id}/content", headers=tenant.headers)
    assert waiting.status_code == 503
