"""Garbage collection and the consistency check, over the real database and blob store."""

from __future__ import annotations

import hashlib
import threading
from datetime import timedelta
from typing import Any

import anyio
import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from assetd import maintenance
from assetd.assets.service import AssetService
from assetd.db.base import utcnow
from assetd.db.session import Database
from assetd.jobs.models import Job, JobState
from assetd.maintenance import check_consistency, collect_garbage, prune_jobs
from assetd.storage.base import BlobStorage, put_bytes, read_all
from assetd.storage.keys import blob_key
from assetd.storage.local import LocalBlobStorage
from tests.factories import TenantCredentials, upload

pytestmark = pytest.mark.anyio

HOUR = 3600


async def add_asset(
    client: httpx.AsyncClient, tenant: TenantCredentials, content: bytes, name: str = "f.bin"
) -> dict[str, Any]:
    response = await upload(client, tenant, content, name)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def purge(client: httpx.AsyncClient, tenant: TenantCredentials, asset_id: str) -> None:
    response = await client.delete(
        f"/v1/assets/{asset_id}", params={"purge": "true"}, headers=tenant.headers
    )
    assert response.status_code == 204, response.text


def key_of(tenant: TenantCredentials, content: bytes) -> str:
    return blob_key(tenant.id, hashlib.sha256(content).hexdigest())


def stored_keys(storage: LocalBlobStorage) -> set[str]:
    return {info.key for info in storage.list()}


async def scalar(db: Database, query: str) -> Any:
    async with db.engine.connect() as conn:
        return (await conn.exec_driver_sql(query)).scalar()


async def execute(db: Database, statement: str) -> None:
    """Tamper with rows directly, as a bug or a hand-edit would."""
    async with db.engine.begin() as conn:
        await conn.exec_driver_sql(statement)


class TestCollectGarbage:
    async def test_released_blob_is_deleted_only_after_the_grace_period(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCredentials,
        db: Database,
        storage: LocalBlobStorage,
    ) -> None:
        content = b"released soon " * 100
        asset = await add_asset(client, tenant, content)
        await purge(client, tenant, asset["id"])
        key = key_of(tenant, content)
        assert key in stored_keys(storage)

        report = await collect_garbage(db, storage, HOUR)
        assert report.released_blobs_deleted == 0
        assert report.bytes_freed == 0
        assert key in stored_keys(storage)
        assert await scalar(db, "SELECT count(*) FROM blobs") == 1

        report = await collect_garbage(db, storage, 0)
        assert report.released_blobs_deleted == 1
        assert report.bytes_freed == len(content)
        assert report.orphans == []
        assert stored_keys(storage) == set()
        assert await scalar(db, "SELECT count(*) FROM blobs") == 0

    async def test_referenced_blobs_are_kept(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCredentials,
        db: Database,
        storage: LocalBlobStorage,
    ) -> None:
        shared = b"two assets hold these bytes"
        first = await add_asset(client, tenant, shared, "a.bin")
        await add_asset(client, tenant, shared, "b.bin")
        trashed = await add_asset(client, tenant, b"in the trash, still referenced")
        response = await client.delete(f"/v1/assets/{trashed['id']}", headers=tenant.headers)
        assert response.status_code == 204
        await purge(client, tenant, first["id"])  # the other asset still holds `shared`
        before = stored_keys(storage)
        assert len(before) == 2

        report = await collect_garbage(db, storage, 0)
        assert (report.released_blobs_deleted, report.orphan_blobs_deleted) == (0, 0)
        assert report.staging_deleted == 0
        assert stored_keys(storage) == before
        assert (await check_consistency(db, storage, verify_hashes=True)).ok

    async def test_orphan_files_are_deleted_after_the_grace_period(
        self, tenant: TenantCredentials, db: Database, storage: LocalBlobStorage
    ) -> None:
        orphan = f"{tenant.id}/ab/{'c' * 62}"
        put_bytes(storage, orphan, b"x")
        put_bytes(storage, "stray", b"not a blob key shape")

        report = await collect_garbage(db, storage, HOUR)
        assert report.orphans == []
        assert stored_keys(storage) == {orphan, "stray"}

        report = await collect_garbage(db, storage, 0)
        assert sorted(report.orphans) == sorted([orphan, "stray"])
        assert report.orphan_blobs_deleted == 2
        assert report.bytes_freed == 1 + len(b"not a blob key shape")
        assert stored_keys(storage) == set()

    async def test_staging_leftovers_of_a_crashed_upload_are_deleted(
        self, db: Database, storage: LocalBlobStorage
    ) -> None:
        writer = storage.writer()  # a crash: written, never committed nor aborted
        try:
            writer.write(b"x" * 1000)
            assert len(list(storage.list_staging())) == 1

            report = await collect_garbage(db, storage, HOUR)
            assert report.staging_deleted == 0
            assert len(list(storage.list_staging())) == 1

            report = await collect_garbage(db, storage, 0)
            assert report.staging_deleted == 1
            assert list(storage.list_staging()) == []
            assert stored_keys(storage) == set()
        finally:
            writer.abort()  # closes the handle the "crashed" process held

    async def test_dry_run_reports_everything_and_deletes_nothing(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCredentials,
        db: Database,
        storage: LocalBlobStorage,
    ) -> None:
        content = b"released bytes"
        asset = await add_asset(client, tenant, content)
        await purge(client, tenant, asset["id"])
        orphan = f"{tenant.id}/00/{'1' * 62}"
        put_bytes(storage, orphan, b"orphan")
        writer = storage.writer()
        try:
            writer.write(b"staged")
            before = stored_keys(storage)

            dry = await collect_garbage(db, storage, 0, dry_run=True)
            assert (dry.released_blobs_deleted, dry.orphan_blobs_deleted) == (1, 1)
            assert dry.staging_deleted == 1
            assert dry.orphans == [orphan]
            # The writer is unbuffered: its staged bytes are in the file and count too.
            assert dry.bytes_freed == len(content) + len(b"orphan") + len(b"staged")
            assert stored_keys(storage) == before
            assert len(list(storage.list_staging())) == 1
            assert await scalar(db, "SELECT count(*) FROM blobs") == 1

            real = await collect_garbage(db, storage, 0)
            assert vars(real) == vars(dry)
            assert stored_keys(storage) == set()
            again = await collect_garbage(db, storage, 0)
            assert again.bytes_freed == 0
            assert again.orphans == []
        finally:
            writer.abort()

    async def test_upload_of_the_same_bytes_while_gc_deletes_them_succeeds(
        self, app: FastAPI, tenant: TenantCredentials, db: Database, storage: LocalBlobStorage
    ) -> None:
        """gc deletes a released blob's bytes under its row lock; an upload of the same bytes
        arriving meanwhile must wait and then publish its own copy (maintenance.py)."""
        content = b"bytes that come back " * 50
        slow = SlowDelete(storage)
        result: dict[str, httpx.Response] = {}
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            first = await add_asset(http, tenant, content)
            await purge(http, tenant, first["id"])

            async def upload_again() -> None:
                result["upload"] = await upload(http, tenant, content, "again.bin")

            try:
                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(collect_garbage, db, slow, 0)
                    assert await anyio.to_thread.run_sync(slow.entered.wait, 10.0)
                    tasks.start_soon(upload_again)
                    await anyio.sleep(0.5)  # let the upload reach the blob row gc holds
                    slow.release.set()
            finally:
                slow.release.set()

            response = result["upload"]
            assert response.status_code == 201, response.text
            download = await http.get(
                f"/v1/assets/{response.json()['id']}/content", headers=tenant.headers
            )
            assert download.content == content
        assert (await check_consistency(db, storage, verify_hashes=True)).ok


class TestPruneJobs:
    async def test_only_finished_jobs_past_the_retention_go(
        self, db: Database, tenant: TenantCredentials, other_tenant: TenantCredentials
    ) -> None:
        now = utcnow()
        old, recent = now - timedelta(days=40), now - timedelta(days=1)
        rows = {
            "old done": (tenant.id, JobState.done, old),
            "old failed, other tenant": (other_tenant.id, JobState.failed, old),
            "old pending": (tenant.id, JobState.pending, old),
            "old running": (tenant.id, JobState.running, old),
            "recent done": (tenant.id, JobState.done, recent),
        }
        ids = {}
        async with db.session() as session:
            for name, (tenant_id, state, updated_at) in rows.items():
                job = Job(
                    tenant_id=tenant_id,
                    kind="webhook",
                    state=state,
                    max_attempts=3,
                    updated_at=updated_at,
                )
                session.add(job)
                await session.flush()
                ids[name] = job.id
        thirty_days = 30 * 86400

        assert await prune_jobs(db, thirty_days, dry_run=True) == 2
        assert await scalar(db, "SELECT count(*) FROM jobs") == 5
        assert await prune_jobs(db, 0) == 0  # retention 0: keep everything
        assert await prune_jobs(db, thirty_days) == 2

        async with db.session(write=False) as session:
            left = set((await session.execute(sa.select(Job.id))).scalars())
        assert left == {ids["old pending"], ids["old running"], ids["recent done"]}

    async def test_pruning_goes_in_batches(
        self, db: Database, tenant: TenantCredentials, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(maintenance, "PRUNE_BATCH", 3)
        old = utcnow() - timedelta(days=40)
        async with db.session() as session:
            session.add_all(
                Job(
                    tenant_id=tenant.id,
                    kind="x",
                    state=JobState.done,
                    max_attempts=1,
                    updated_at=old,
                )
                for _ in range(7)
            )

        assert await prune_jobs(db, 86400) == 7
        assert await scalar(db, "SELECT count(*) FROM jobs") == 0


class SlowDelete:
    """The blob store, with deletes that wait until the test lets them go on."""

    def __init__(self, storage: BlobStorage) -> None:
        self._storage = storage
        self.entered = threading.Event()
        self.release = threading.Event()

    def delete(self, key: str) -> None:
        self.entered.set()
        self.release.wait(10.0)
        self._storage.delete(key)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._storage, name)


class TestCheckConsistency:
    @pytest.fixture
    async def contents(self, client: httpx.AsyncClient, tenant: TenantCredentials) -> list[bytes]:
        contents = [b"first blob " * 10, b"second blob " * 20]
        for index, content in enumerate(contents):
            await add_asset(client, tenant, content, f"{index}.bin")
        return contents

    async def test_healthy_store_is_ok(
        self, db: Database, storage: LocalBlobStorage, contents: list[bytes]
    ) -> None:
        report = await check_consistency(db, storage, verify_hashes=True)
        assert report.ok
        assert report.blobs_checked == 2

    async def test_missing_blob_is_reported(
        self,
        db: Database,
        storage: LocalBlobStorage,
        tenant: TenantCredentials,
        contents: list[bytes],
    ) -> None:
        key = key_of(tenant, contents[0])
        storage.delete(key)
        report = await check_consistency(db, storage)
        assert not report.ok
        assert report.missing == [key]
        assert (report.wrong_size, report.wrong_hash, report.wrong_refcount) == ([], [], [])

    async def test_wrong_size_is_reported(
        self,
        db: Database,
        storage: LocalBlobStorage,
        tenant: TenantCredentials,
        contents: list[bytes],
    ) -> None:
        key = key_of(tenant, contents[1])
        put_bytes(storage, key, contents[1] + b"!")
        report = await check_consistency(db, storage)
        assert not report.ok
        assert report.wrong_size == [key]
        assert report.missing == []

    async def test_wrong_hash_is_reported_only_when_verifying_hashes(
        self,
        db: Database,
        storage: LocalBlobStorage,
        tenant: TenantCredentials,
        contents: list[bytes],
    ) -> None:
        key = key_of(tenant, contents[0])
        tampered = bytearray(read_all(storage, key))
        tampered[5] ^= 0xFF
        put_bytes(storage, key, bytes(tampered))

        assert (await check_consistency(db, storage)).ok
        report = await check_consistency(db, storage, verify_hashes=True)
        assert not report.ok
        assert report.wrong_hash == [key]
        assert report.wrong_size == []

    async def test_wrong_refcount_is_reported(
        self,
        db: Database,
        storage: LocalBlobStorage,
        tenant: TenantCredentials,
        contents: list[bytes],
    ) -> None:
        key = key_of(tenant, contents[1])
        sha = hashlib.sha256(contents[1]).hexdigest()
        await execute(db, f"UPDATE blobs SET refcount = 5 WHERE sha256 = '{sha}'")
        report = await check_consistency(db, storage, verify_hashes=True)
        assert not report.ok
        assert report.wrong_refcount == [key]
        assert (report.missing, report.wrong_size, report.wrong_hash) == ([], [], [])


class TestCrashConsistency:
    async def test_bytes_published_before_a_failed_commit_are_invisible_and_collected(
        self,
        app: FastAPI,
        tenant: TenantCredentials,
        db: Database,
        storage: LocalBlobStorage,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        original = AssetService._stage_version

        async def attach_then_crash(*args: Any, **kwargs: Any) -> Any:
            await original(*args, **kwargs)  # the bytes are published under their key here
            raise RuntimeError("simulated crash before commit")

        monkeypatch.setattr(AssetService, "_stage_version", attach_then_crash)
        content = b"published but never committed " * 100
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            failed = await upload(http, tenant, content, "crash.bin")
            assert failed.status_code == 500
            assert failed.headers["content-type"] == "application/problem+json"
            key = key_of(tenant, content)
            assert stored_keys(storage) == {key}  # the crash hit the window under test
            assert list(storage.list_staging()) == []

            listed = await http.get(
                "/v1/assets", params={"trashed": "include"}, headers=tenant.headers
            )
            assert listed.json()["items"] == []
            assert await scalar(db, "SELECT count(*) FROM blobs") == 0
            assert await scalar(db, "SELECT count(*) FROM versions") == 0
            assert await scalar(db, f"SELECT used_bytes FROM tenants WHERE id = '{tenant.id}'") == 0
            assert (await check_consistency(db, storage)).ok

            # Young bytes may belong to an upload about to commit: the grace period keeps them.
            assert (await collect_garbage(db, storage, HOUR)).orphans == []
            report = await collect_garbage(db, storage, 0)
            assert report.orphans == [key]
            assert stored_keys(storage) == set()

            # The same bytes, uploaded again without a crash, are stored anew.
            monkeypatch.undo()
            retry = await upload(http, tenant, content, "crash.bin")
            assert retry.status_code == 201
            download = await http.get(
                f"/v1/assets/{retry.json()['id']}/content", headers=tenant.headers
            )
            assert download.content == content

    async def test_bytes_put_without_rows_are_invisible_and_collected(
        self,
        client: httpx.AsyncClient,
        tenant: TenantCredentials,
        db: Database,
        storage: LocalBlobStorage,
    ) -> None:
        content = b"no row ever pointed here"
        key = key_of(tenant, content)
        put_bytes(storage, key, content)
        listed = await client.get("/v1/assets", headers=tenant.headers)
        assert listed.json()["items"] == []
        assert (await check_consistency(db, storage)).ok
        assert (await collect_garbage(db, storage, 0)).orphans == [key]
        assert stored_keys(storage) == set()
