"""Garbage collection and consistency checks over the database and the blob store."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import timedelta

import anyio.to_thread
import structlog

from assetd.assets.repository import BlobRepository
from assetd.db.base import utcnow
from assetd.db.session import Database
from assetd.jobs.repository import JobRepository
from assetd.storage.base import BlobNotFound, BlobStorage
from assetd.storage.keys import blob_key

log = structlog.get_logger()

# Finished jobs deleted per transaction.
PRUNE_BATCH = 1000


@dataclass
class GcReport:
    released_blobs_deleted: int = 0
    orphan_blobs_deleted: int = 0
    staging_deleted: int = 0
    upload_sessions_ended: int = 0
    jobs_pruned: int = 0
    bytes_freed: int = 0
    orphans: list[str] = field(default_factory=list)


@dataclass
class CheckReport:
    blobs_checked: int = 0
    missing: list[str] = field(default_factory=list)
    wrong_size: list[str] = field(default_factory=list)
    wrong_hash: list[str] = field(default_factory=list)
    wrong_refcount: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.wrong_size or self.wrong_hash or self.wrong_refcount)


async def collect_garbage(
    db: Database, storage: BlobStorage, grace_seconds: int, *, dry_run: bool = False
) -> GcReport:
    """Delete bytes nothing references, once they have been unreferenced for grace_seconds.

    The grace period protects uploads in flight: their bytes sit in staging, or are
    published just before their row commits.
    """
    report = GcReport()
    cutoff = utcnow() - timedelta(seconds=grace_seconds)
    while True:
        async with db.session() as session:
            repository = BlobRepository(session)
            released = await repository.released_before(cutoff)
            for blob in released:
                if not dry_run:
                    # Bytes first, row second, under the row lock: an upload of the same
                    # bytes waits for this and then publishes its own copy.
                    key = blob_key(blob.tenant_id, blob.sha256)
                    await anyio.to_thread.run_sync(storage.delete, key)
                    await repository.delete_row(blob)
                report.released_blobs_deleted += 1
                report.bytes_freed += blob.size_bytes
        if dry_run or len(released) == 0:
            break

    async with db.session(write=False) as session:
        known = await BlobRepository(session).all_keys()
    infos = await anyio.to_thread.run_sync(lambda: list(storage.list()))
    for info in infos:
        parts = info.key.split("/")
        if len(parts) == 3 and (parts[0], parts[1] + parts[2]) in known:
            continue
        if info.modified_at >= cutoff:
            continue
        report.orphans.append(info.key)
        report.orphan_blobs_deleted += 1
        report.bytes_freed += info.size_bytes
        if not dry_run:
            await anyio.to_thread.run_sync(storage.delete, info.key)

    staging = await anyio.to_thread.run_sync(lambda: list(storage.list_staging()))
    for info in staging:
        if info.modified_at < cutoff:
            report.staging_deleted += 1
            report.bytes_freed += info.size_bytes
            if not dry_run:
                await anyio.to_thread.run_sync(storage.delete_staging, info.key)
    log.info("gc.done", **{k: v for k, v in vars(report).items() if k != "orphans"})
    return report


async def prune_jobs(db: Database, retention_seconds: float, *, dry_run: bool = False) -> int:
    """Delete the done and failed jobs last changed more than retention_seconds ago (0: none).

    In batches, each its own transaction, so that SQLite's write lock is never held long.
    A dry run counts what would go.
    """
    if retention_seconds <= 0:
        return 0
    before = utcnow() - timedelta(seconds=retention_seconds)
    if dry_run:
        async with db.session(write=False) as session:
            return await JobRepository(session).count_finished_before(before)
    pruned = 0
    while True:
        async with db.session() as session:
            jobs = JobRepository(session)
            ids = await jobs.finished_before(before, PRUNE_BATCH)
            if ids:
                await jobs.delete_ids(ids)
        pruned += len(ids)
        if len(ids) < PRUNE_BATCH:
            log.info("gc.jobs_pruned", count=pruned)
            return pruned


async def check_consistency(
    db: Database, storage: BlobStorage, *, verify_hashes: bool = False
) -> CheckReport:
    """Every referenced blob exists with its size (and, if asked, its SHA-256)."""
    report = CheckReport()
    after = ""
    while True:
        async with db.session(write=False) as session:
            blobs = await BlobRepository(session).referenced(after)
        if not blobs:
            break
        after = blobs[-1].id
        for blob in blobs:
            report.blobs_checked += 1
            key = blob_key(blob.tenant_id, blob.sha256)
            try:
                size = await anyio.to_thread.run_sync(storage.size, key)
            except BlobNotFound:
                report.missing.append(key)
                continue
            if size != blob.size_bytes:
                report.wrong_size.append(key)
            elif verify_hashes:
                digest = await anyio.to_thread.run_sync(_sha256_of, storage, key)
                if digest != blob.sha256:
                    report.wrong_hash.append(key)

    async with db.session(write=False) as session:
        for tenant_id, sha in await BlobRepository(session).wrong_refcounts():
            report.wrong_refcount.append(blob_key(tenant_id, sha))
    return report


def _sha256_of(storage: BlobStorage, key: str) -> str:
    digest = hashlib.sha256()
    for chunk in storage.read(key):
        digest.update(chunk)
    return digest.hexdigest()
